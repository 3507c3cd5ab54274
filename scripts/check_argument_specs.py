"""Fail when a role's defaults and its meta/argument_specs.yml drift apart.

Rules, for every role under roles/:
* meta/argument_specs.yml exists and has a ``main`` entry point;
* every variable in defaults/main.yml is an option of ``main``;
* every option of ``main`` is in defaults/main.yml, unless it is
  ``required: true`` (a required input has no sensible default);
* every option of every other entry point is an option of ``main`` too, with
  the same type, so one description serves all entry points;
* no entry point holds a template (``{{``) anywhere: argument validation
  renders the whole spec before it checks the required options, so a default
  such as ``/srv/{{ wsgi_app_name }}`` turns a missing ``wsgi_app_name`` into
  a templating error instead of "missing required arguments". Defaults that
  depend on another input live in defaults/main.yml only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"


def load(path: Path) -> dict:
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def problems_of(role: Path) -> list[str]:
    spec_file = role / "meta" / "argument_specs.yml"
    if not spec_file.exists():
        return [f"{role.name}: meta/argument_specs.yml is missing"]
    specs = load(spec_file).get("argument_specs") or {}
    main = (specs.get("main") or {}).get("options") or {}
    if not specs.get("main"):
        return [f"{role.name}: argument_specs.yml has no 'main' entry point"]
    defaults = load(role / "defaults" / "main.yml")
    found = []
    for name in sorted(set(defaults) - set(main)):
        found.append(f"{role.name}: {name} is in defaults/main.yml but not in argument_specs (main)")
    for name, option in sorted(main.items()):
        if name not in defaults and not option.get("required"):
            found.append(f"{role.name}: {name} is in argument_specs but has no default and is not required")
    for entry, spec in sorted(specs.items()):
        if entry == "main":
            continue
        for name, option in sorted(((spec or {}).get("options") or {}).items()):
            if name not in main:
                found.append(f"{role.name}: {name} (entry point {entry}) is not an option of main")
            elif option.get("type", "str") != main[name].get("type", "str"):
                found.append(f"{role.name}: {name} has another type in entry point {entry} than in main")
    for entry, spec in sorted(specs.items()):
        for name, option in sorted(((spec or {}).get("options") or {}).items()):
            if "{{" in yaml.safe_dump(option):
                found.append(
                    f"{role.name}: {name} (entry point {entry}) holds a template; argument validation would render"
                    " it before checking the required options - keep such a default in defaults/main.yml only"
                )
    return found


def main() -> int:
    roles = sorted(p for p in ROLES.iterdir() if p.is_dir()) if ROLES.exists() else []
    found = [problem for role in roles for problem in problems_of(role)]
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"argument specs: {len(roles)} roles checked, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
