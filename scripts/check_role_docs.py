"""Fail when a role's page in docs/roles/ and its meta/argument_specs.yml drift apart.

The argument specs are the reference (``ansible-doc -t role`` renders them);
the pages explain the roles to people. For every role under roles/:

* docs/roles/<role>.md exists and is titled ``# Role `greenlight.django.<role>```;
* its variables table (rows ``| `name` | default | meaning |``) lists exactly the
  options of the role's entry points, no more and no less;
* a required option reads ``(required)`` as its default, and only those do;
* a literal default of defaults/main.yml (no template) is the default shown;
* every choice of an option is named in its row;
* every entry point other than ``main`` is named as ``tasks_from: <name>``.

Then ``ansible-doc`` must render every role (all its entry points) and every
module of the collection, as users read them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ROLES = REPO / "roles"
DOCS = REPO / "docs" / "roles"
MODULES = REPO / "plugins" / "modules"
ROW = re.compile(r"^\|\s*(`[a-z0-9_]+`(?:\s*/\s*`[a-z0-9_]+`)*)\s*\|([^|]*)\|(.*)\|\s*$")


def load(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def documented_rows(page: str, role: str) -> dict[str, tuple[str, str]]:
    """Variable name -> (default cell, meaning cell) of the page's tables."""
    rows = {}
    for line in page.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        for name in re.findall(r"`([a-z0-9_]+)`", match.group(1)):
            if name.startswith(f"{role}_"):
                rows[name] = (match.group(2).strip(), match.group(3).strip())
    return rows


def shown(value) -> str | None:
    """How a literal default is written in a page, or None when it is not literal."""
    if isinstance(value, str) and "{{" in value:
        return None
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    if isinstance(value, (list, dict)):
        if any("{{" in str(item) for item in (value.values() if isinstance(value, dict) else value)):
            return None
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip()
    return str(value)


def options_of(specs: dict) -> dict[str, dict]:
    options = {}
    for spec in specs.values():
        for name, option in ((spec or {}).get("options") or {}).items():
            options.setdefault(name, option or {})
    return options


def problems_of(role: Path) -> list[str]:
    page_path = DOCS / f"{role.name}.md"
    if not page_path.exists():
        return [f"{role.name}: docs/roles/{role.name}.md is missing"]
    page = page_path.read_text()
    where = f"docs/roles/{role.name}.md"
    found = []
    if not page.startswith(f"# Role `greenlight.django.{role.name}`"):
        found.append(f"{where}: the title must be # Role `greenlight.django.{role.name}`")
    specs = load(role / "meta" / "argument_specs.yml").get("argument_specs") or {}
    options = options_of(specs)
    defaults = load(role / "defaults" / "main.yml")
    rows = documented_rows(page, role.name)
    for name in sorted(set(options) - set(rows)):
        found.append(f"{where}: {name} is an option in argument_specs.yml but not in the variables table")
    for name in sorted(set(rows) - set(options)):
        found.append(f"{where}: {name} is in the variables table but not an option in argument_specs.yml")
    for name in sorted(set(options) & set(rows)):
        option, (default_cell, meaning) = options[name], rows[name]
        if bool(option.get("required")) != ("(required)" in default_cell):
            state = "required" if option.get("required") else "not required"
            found.append(f"{where}: {name} is {state} in argument_specs.yml; its default reads {default_cell!r}")
        literal = shown(defaults[name]) if name in defaults else None
        if literal is not None and default_cell.strip("`") != literal:
            found.append(f"{where}: {name} defaults to {literal} in defaults/main.yml; the page says {default_cell}")
        for choice in option.get("choices") or []:
            if f"`{shown(choice)}`" not in meaning:
                found.append(f"{where}: {name} can be `{shown(choice)}`; its row does not say so")
    for entry in sorted(set(specs) - {"main"}):
        if f"tasks_from: {entry}" not in page:
            found.append(f"{where}: entry point {entry} is not described (tasks_from: {entry})")
    return found


def ansible_doc(kind: str, names: list[str]) -> dict:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-doc")), "--json", "-t", kind, *names],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {}


def ansible_doc_problems(roles: list[Path]) -> list[str]:
    """What ansible-doc cannot show: a role or entry point, a module's options, examples or return values."""
    found = []
    shown_roles = ansible_doc("role", [f"greenlight.django.{role.name}" for role in roles])
    for role in roles:
        specs = load(role / "meta" / "argument_specs.yml").get("argument_specs") or {}
        entry_points = (shown_roles.get(f"greenlight.django.{role.name}") or {}).get("entry_points") or {}
        for entry in sorted(set(specs) - set(entry_points)):
            found.append(f"ansible-doc -t role greenlight.django.{role.name}: entry point {entry} is not shown")
    modules = sorted(p.stem for p in MODULES.glob("*.py") if p.stem != "__init__")
    shown_modules = ansible_doc("module", [f"greenlight.django.{name}" for name in modules])
    for name in modules:
        doc = shown_modules.get(f"greenlight.django.{name}") or {}
        for part in ("doc", "examples", "return"):
            if not doc.get(part):
                found.append(f"ansible-doc greenlight.django.{name}: no {part}")
    return found


def main() -> int:
    roles = sorted(p for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists())
    found = [problem for role in roles for problem in problems_of(role)]
    orphans = sorted(p.name for p in DOCS.glob("*.md") if not (ROLES / p.stem).is_dir())
    found += [f"docs/roles/{name}: no role of that name" for name in orphans]
    found += ansible_doc_problems(roles)
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"role docs: {len(roles)} pages checked against argument_specs.yml and ansible-doc, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
