"""Fail when CHANGELOG.rst is not current.

CHANGELOG.rst is built by antsibull-changelog from changelogs/changelog.yaml
(``make changelog`` folds the fragments of changelogs/fragments/ into the
release named in galaxy.yml). It is current when

* the version in galaxy.yml is a release in changelogs/changelog.yaml, and
* CHANGELOG.rst is exactly what ``antsibull-changelog generate`` writes from
  changelogs/changelog.yaml (nobody edited it by hand, nobody forgot it).

Fragments not yet folded into a release are normal between releases; they are
counted, not refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
INPUTS = ("galaxy.yml", "changelogs/config.yaml", "changelogs/changelog.yaml")


def generated_changelog() -> str:
    with tempfile.TemporaryDirectory() as work:
        for name in INPUTS:
            (Path(work) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, Path(work) / name)
        subprocess.run(
            [str(Path(sys.executable).with_name("antsibull-changelog")), "generate"],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return (Path(work) / "CHANGELOG.rst").read_text()


def main() -> int:
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    releases = (yaml.safe_load((REPO / "changelogs" / "changelog.yaml").read_text()) or {}).get("releases") or {}
    found = []
    if version not in releases:
        found.append(f"galaxy.yml version {version} has no release in changelogs/changelog.yaml: run make changelog")
    current = REPO / "CHANGELOG.rst"
    if not current.exists() or current.read_text() != generated_changelog():
        found.append("CHANGELOG.rst is not what changelogs/changelog.yaml gives: run make changelog")
    pending = sorted(p.name for p in (REPO / "changelogs" / "fragments").glob("*.y*ml"))
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"changelog: {len(releases)} releases, {len(pending)} fragments not released yet, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
