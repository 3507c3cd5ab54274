"""Wheelhouses built on this controller for servers whose Python is not the controller's.

The server's target is read in a container of each base image (Debian 13 with Python 3.13, Debian 12 with
Python 3.11.2), the wheelhouse is built here by code_sync's files/wheelhouse.py from the package index, and
the container installs it with pip --no-index, as a release's virtualenv is built."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "code_sync" / "files" / "wheelhouse.py"


class Server:
    def __init__(self, image: str, suite: str):
        self.name = f"greenlight-pytest-wh-{suite}-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", self.name, image, "sleep", "900"],
            check=True,
            capture_output=True,
        )

    def run(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "exec", "-i", self.name, *argv], input=stdin, capture_output=True, text=True, check=False
        )

    def target(self) -> dict:
        out = self.run("python3", "-", "target", stdin=SCRIPT.read_text())
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def install(self, wheelhouse: Path) -> subprocess.CompletedProcess:
        subprocess.run(["docker", "cp", f"{wheelhouse}/.", f"{self.name}:/wheels"], check=True)
        self.run("python3", "-m", "venv", "/venv")
        return self.run(
            *["/venv/bin/pip", "install", "--disable-pip-version-check", "--no-index", "--find-links", "/wheels"],
            *["--requirement", "/wheels/requirements.txt"],
        )

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)


@pytest.fixture
def server(request, debian_image):
    made = Server(debian_image(request.param), request.param)
    yield made
    made.remove()


def build(tmp_path: Path, target: dict, requirements: str) -> tuple[subprocess.CompletedProcess, Path]:
    (tmp_path / "target.json").write_text(json.dumps(target))
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    (dest / "requirements.txt").write_text(requirements)
    args = ["build", "--target", tmp_path / "target.json", "--requirements", dest / "requirements.txt"]
    result = subprocess.run(
        [sys.executable, SCRIPT, *args, "--dest", dest], capture_output=True, text=True, check=False
    )
    return result, dest


@pytest.mark.parametrize("server", ["trixie"], indirect=True)
def test_debian_13_installs_django_6_built_on_a_python_3_11_controller(server, tmp_path):
    target = server.target()
    assert target["python_full_version"].startswith("3.13.")
    assert target["key"].startswith(f"cp{target['python_full_version']}-cp313-x86_64-glibc")
    requirements = "Django==6.0.*\ngunicorn\npsycopg[binary]==3.3.9\nredis==5.0.8\n"

    result, dest = build(tmp_path, target, requirements)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["fast_path"] is False
    assert summary["server_builds"] == []
    assert any(w.startswith("django-6.0.") for w in summary["wheels"])
    assert any(w.startswith("psycopg_binary-3.3.9-cp313-cp313-") for w in summary["wheels"])
    assert not any(w.startswith("async_timeout") for w in summary["wheels"])  # not needed on 3.13
    installed = server.install(dest)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    out = server.run("/venv/bin/python", "-c", "import django, psycopg, redis; print(django.get_version())")
    assert out.stdout.startswith("6.0."), out.stderr


@pytest.mark.parametrize("server", ["bookworm"], indirect=True)
def test_debian_12_gets_what_its_python_3_11_2_markers_ask_for(server, tmp_path):
    target = server.target()
    assert target["python_full_version"] == "3.11.2"
    assert sys.version_info[:3] != (3, 11, 2)  # the controller's Python is another one

    # redis needs async-timeout where python_full_version < "3.11.3": on the server, not on this controller.
    result, dest = build(tmp_path, target, "redis==5.0.8\n")

    assert result.returncode == 0, result.stderr
    assert any(w.startswith("async_timeout-") for w in json.loads(result.stdout)["wheels"])
    installed = server.install(dest)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    (tmp_path / "refused").mkdir()
    refused, _dest = build(tmp_path / "refused", target, "Django==6.0.1\n")
    assert refused.returncode == 2
    assert "Django==6.0.1: no wheel for cp3.11.2-cp311-x86_64-glibc2.36 (Python 3.11.2," in refused.stderr
    assert "Fix: pin a version of django that supports this Python and platform" in refused.stderr
