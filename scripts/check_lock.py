"""Fail when requirements/dev.lock no longer matches requirements/dev.txt.

dev.txt names the tools the project develops with; dev.lock (written by
`make lock`) pins every package they pull in, with hashes, and is what
`make setup` installs. An edit of dev.txt without `make lock` would leave a
fresh machine with other versions than the ones dev.txt names: this check
reads both files and reports each requirement that the lock does not satisfy,
and each pin that carries no hash.

Usage: python scripts/check_lock.py requirements/dev.txt requirements/dev.lock
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def read_requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def read_lock(path: Path) -> tuple[dict[str, str], list[str]]:
    """The pins of a hash-locked requirements file and the names of pins without a hash."""
    pins: dict[str, str] = {}
    unhashed: list[str] = []
    current = None
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = match.group(2)
            if "--hash=" not in line:
                unhashed.append(current)
        elif current and "--hash=" in line and current in unhashed:
            unhashed.remove(current)
    return pins, unhashed


def problems(requirements: list[Requirement], pins: dict[str, str], unhashed: list[str]) -> list[str]:
    found = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            found.append(f"{requirement} is in dev.txt but not in the lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            found.append(f"{requirement} is in dev.txt but the lock pins {name}=={pins[name]}")
    found += [f"{name} is pinned without a hash" for name in unhashed]
    return found


def main(argv: list[str]) -> int:
    txt, lock = Path(argv[1]), Path(argv[2])
    pins, unhashed = read_lock(lock)
    found = problems(read_requirements(txt), pins, unhashed)
    for problem in found:
        print(f"{lock}: {problem}", file=sys.stderr)
    if found:
        print(f"Run 'make lock' to resolve {txt} again, then commit {lock}.", file=sys.stderr)
        return 1
    print(f"{lock}: {len(pins)} pins with hashes, in step with {txt}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
