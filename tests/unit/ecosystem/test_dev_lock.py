"""requirements/dev.lock pins every development tool and what it pulls in, with hashes.

`make setup` installs the lock and nothing else, so a fresh machine gets exactly the versions CI had; `make lint`
runs scripts/check_lock.py so that dev.txt and the lock cannot drift apart.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CHECK = REPO / "scripts" / "check_lock.py"
LOCK = REPO / "requirements" / "dev.lock"


def check(tmp_path: Path, txt: str, lock: str) -> subprocess.CompletedProcess:
    (tmp_path / "dev.txt").write_text(txt)
    (tmp_path / "dev.lock").write_text(lock)
    argv = [sys.executable, str(CHECK), str(tmp_path / "dev.txt"), str(tmp_path / "dev.lock")]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_the_repository_lock_is_in_step_with_dev_txt(tmp_path):
    result = check(tmp_path, (REPO / "requirements" / "dev.txt").read_text(), LOCK.read_text())
    assert result.returncode == 0, result.stderr


def test_the_lock_pins_the_transitive_packages_that_broke_a_fresh_machine():
    pins = {line.split("==")[0].lower() for line in LOCK.read_text().splitlines() if "==" in line}
    assert {"cryptography", "ansible-core", "ansible-runner", "jinja2", "pyyaml"} <= pins


def test_a_bumped_tool_without_a_new_lock_is_refused_with_the_fix(tmp_path):
    lock = "ruff==0.17.5 \\\n    --hash=sha256:aa\n"
    result = check(tmp_path, "ruff==0.17.6\n", lock)
    assert result.returncode == 1
    assert "ruff==0.17.6 is in dev.txt but the lock pins ruff==0.17.5" in result.stderr
    assert "make lock" in result.stderr


def test_a_tool_missing_from_the_lock_and_a_pin_without_hash_are_refused(tmp_path):
    result = check(tmp_path, "ruff==0.17.5\nuv==0.13.9\n", "ruff==0.17.5\n")
    assert result.returncode == 1
    assert "uv==0.13.9 is in dev.txt but not in the lock" in result.stderr
    assert "ruff is pinned without a hash" in result.stderr


def test_extras_and_ranges_are_read_like_pip_reads_them(tmp_path):
    lock = "molecule-plugins==26.10.12 \\\n    --hash=sha256:aa\n"
    result = check(tmp_path, "molecule-plugins[docker]>=26\n", lock)
    assert result.returncode == 0, result.stderr
