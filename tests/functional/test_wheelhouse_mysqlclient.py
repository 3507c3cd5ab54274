"""mysqlclient, the MySQL/MariaDB driver Django recommends, has no Linux wheels: how the wheelhouse gets it.

When the servers run the controller's Python, code_sync's files/wheelhouse.py builds it here (``pip wheel``),
which needs libmariadb-dev, pkg-config, a compiler and Python's headers on the controller
(scripts/ensure-host-packages.sh installs them); without them it stops with the fix. For another Python its
sdist goes to a server of that Python to be built there (code_sync_build_packages)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WHEELHOUSE_SCRIPT

DRIVER = "mysqlclient==2.2.7"

pytestmark = pytest.mark.skipif(
    not (shutil.which("mariadb_config") or shutil.which("mysql_config")),
    reason="libmariadb-dev is missing here: run scripts/ensure-host-packages.sh as root",
)


def build(tmp_path: Path, target: dict, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    (tmp_path / "target.json").write_text(json.dumps(target))
    (tmp_path / "requirements.txt").write_text(DRIVER + "\n")
    dest = tmp_path / "wheels"
    command = [sys.executable, str(WHEELHOUSE_SCRIPT), "build", "--target", str(tmp_path / "target.json")]
    command += ["--requirements", str(tmp_path / "requirements.txt"), "--dest", str(dest)]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, timeout=600, check=False
    )
    return result, dest


def controller_target() -> dict:
    out = subprocess.run([sys.executable, str(WHEELHOUSE_SCRIPT), "target"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_for_the_controllers_python_it_is_built_here_and_the_driver_connects_its_library(tmp_path):
    result, dest = build(tmp_path, controller_target())

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["fast_path"] is True
    assert [wheel for wheel in summary["wheels"] if wheel.startswith("mysqlclient-2.2.7-")], summary
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(dest), DRIVER],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import MySQLdb; print(MySQLdb.version_info[:3])"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout.strip() == "(2, 2, 7)", probe.stderr


def test_without_the_build_headers_it_stops_with_the_fix(tmp_path):
    empty = tmp_path / "no-pkgconfig"
    empty.mkdir()
    # pkg-config finds no libmariadb, and no wheel built earlier comes from pip's cache.
    result, _dest = build(tmp_path, controller_target(), PKG_CONFIG_LIBDIR=str(empty), PIP_NO_CACHE_DIR="1")

    assert result.returncode == 2
    assert "mysqlclient has no wheel for this Python and building it from source on this controller" in result.stderr
    assert "apt-get install libmariadb-dev (or default-libmysqlclient-dev) pkg-config gcc python3-dev" in result.stderr
    assert "PyMySQL" in result.stderr


def test_for_another_python_the_sdist_goes_to_a_server_to_be_built(tmp_path):
    target = controller_target()
    target["python_full_version"] = "3.11.2"  # Debian 12's Python: same ABI, another interpreter
    target["markers"] = {**target["markers"], "python_full_version": "3.11.2"}
    target["key"] = target["key"].replace(controller_target()["python_full_version"], "3.11.2")

    result, dest = build(tmp_path, target)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["fast_path"] is False
    assert summary["server_builds"] == ["mysqlclient-2.2.7.tar.gz"]
    assert (dest / ".build" / "mysqlclient-2.2.7.tar.gz").is_file()
