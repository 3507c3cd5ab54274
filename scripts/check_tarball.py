"""Fail when the built collection tarball carries development-only files."""

from __future__ import annotations

import sys
import tarfile

FORBIDDEN_TOP = {"tests", "molecule", "bench", ".ci", ".config", "scripts", "build", ".venv", "requirements"}
REQUIRED = {
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "CHANGELOG.rst",
    "meta/runtime.yml",
    "meta/execution-environment.yml",
}


def main(path: str) -> int:
    with tarfile.open(path) as tar:
        names = {name.removeprefix("./") for name in tar.getnames()}
    bad = sorted(n for n in names if n.split("/", 1)[0] in FORBIDDEN_TOP)
    missing = sorted(REQUIRED - names)
    for name in bad[:20]:
        print(f"{path}: must not contain {name}", file=sys.stderr)
    for name in missing:
        print(f"{path}: lacks {name}", file=sys.stderr)
    print(f"tarball: {len(names)} entries, {len(bad)} forbidden, {len(missing)} missing")
    return 1 if bad or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
