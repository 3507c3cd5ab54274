"""Wheelhouses built on this controller for servers whose Python is not the controller's.

The server's target is read in a container of each base image (Debian 13 with Python 3.13, Debian 12 with
Python 3.11.2), the wheelhouse is built here by code_sync's files/wheelhouse.py from the package index, and
the container installs it with pip --no-index, as a release's virtualenv is built."""

from __future__ import annotations

import json
import sys

import pytest


@pytest.fixture
def server(request, debian_container):
    return debian_container(request.param)


@pytest.mark.parametrize("server", ["trixie"], indirect=True)
def test_debian_13_installs_django_6_built_on_a_python_3_11_controller(server, wheelhouse, tmp_path):
    target = server.target()
    assert target["python_full_version"].startswith("3.13.")
    assert target["key"].startswith(f"cp{target['python_full_version']}-cp313-x86_64-glibc")
    requirements = "Django==6.0.*\ngunicorn\npsycopg[binary]==3.3.9\nredis==5.0.8\n"

    result, dest = wheelhouse(tmp_path, target, requirements)

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
def test_debian_12_gets_what_its_python_3_11_2_markers_ask_for(server, wheelhouse, tmp_path):
    target = server.target()
    assert target["python_full_version"] == "3.11.2"
    assert sys.version_info[:3] != (3, 11, 2)  # the controller's Python is another one

    # redis needs async-timeout where python_full_version < "3.11.3": on the server, not on this controller.
    result, dest = wheelhouse(tmp_path, target, "redis==5.0.8\n")

    assert result.returncode == 0, result.stderr
    assert any(w.startswith("async_timeout-") for w in json.loads(result.stdout)["wheels"])
    installed = server.install(dest)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    (tmp_path / "refused").mkdir()
    refused, _dest = wheelhouse(tmp_path / "refused", target, "Django==6.0.1\n")
    assert refused.returncode == 2
    assert "Django==6.0.1: no wheel for cp3.11.2-cp311-x86_64-glibc2.36 (Python 3.11.2," in refused.stderr
    assert "Fix: pin a version of django that supports this Python and platform" in refused.stderr
