"""The code the wsgi and traffic roles run on a server to reach gunicorn on its address.

Real sockets and files in a temporary directory: the health probe against a small HTTP server on a unix
socket, the collision finder against unit and nginx files as the roles write them, and the traffic role's
check of which old upstream addresses still accept connections.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import socket
from pathlib import Path

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _health as health
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import serving

ROLES = Path(__file__).resolve().parents[3] / "roles"


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


listen_collisions = load(ROLES / "wsgi" / "files" / "listen_collisions.py")
still_served = load(ROLES / "traffic" / "files" / "still_served.py")


@pytest.fixture
def gunicorn_socket(tmp_path):
    path = str(tmp_path / "gunicorn.sock")
    with serving(path):
        yield path


def test_the_probe_reaches_gunicorn_over_its_unix_socket(gunicorn_socket):
    healthy, summary = health.wait("http://127.0.0.1/healthz", 2, 5, 0.01, "", gunicorn_socket)
    assert healthy
    assert summary["streak"] == 2 and summary["last"] == "HTTP 200 ok host=127.0.0.1"
    assert summary["unix_socket"] == gunicorn_socket


def test_the_probe_sends_the_host_it_is_given(gunicorn_socket):
    healthy, seen = health.probe("http://127.0.0.1/healthz", "shop.example", gunicorn_socket, 2)
    assert healthy and seen == "HTTP 200 ok host=shop.example"


def test_the_probe_reports_a_missing_socket_and_a_wrong_path(gunicorn_socket, tmp_path):
    healthy, summary = health.wait("http://127.0.0.1/healthz", 1, 0.3, 0.05, "", str(tmp_path / "none.sock"))
    assert not healthy and summary["last"].startswith("no answer")
    healthy, seen = health.probe("http://127.0.0.1/other", "", gunicorn_socket, 2)
    assert not healthy and seen.startswith("HTTP 404")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def collisions(tmp_path, app: str, *wanted: str) -> list[dict]:
    units, nginx = tmp_path / "systemd", tmp_path / "nginx"
    units.mkdir(exist_ok=True)
    nginx.mkdir(exist_ok=True)
    argv = ["--app", app, "--unit-dir", str(units), "--nginx-dir", str(nginx), *wanted]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert listen_collisions.main(argv) == 0
    return json.loads(out.getvalue())


def test_collisions_are_found_in_other_units_and_upstreams_only(tmp_path):
    write(
        tmp_path / "systemd" / "greenlight-shop@.service",
        "[Service]\nEnvironment=GREENLIGHT_WSGI_BIND_current=unix:/run/greenlight-shop/current.sock\n"
        "Environment=GREENLIGHT_WSGI_BIND_blue=127.0.0.1:8001\n",
    )
    write(
        tmp_path / "nginx" / "blog" / "upstream-green.conf", "upstream x {\n    server 0.0.0.0:8002 max_fails=0;\n}\n"
    )
    write(tmp_path / "nginx" / "demo" / "upstream-current.conf", "upstream y {\n    server 127.0.0.1:8000;\n}\n")
    found = collisions(
        tmp_path,
        "demo",
        "current=127.0.0.1:8000",  # demo's own upstream: no collision
        "blue=localhost:8001",  # shop's unit, localhost is 127.0.0.1
        "green=127.0.0.1:8002",  # blog's upstream on every address
    )
    assert [(item["instance"], item["app"]) for item in found] == [("blue", "shop"), ("green", "blog")]
    assert found[0]["declared_in"].endswith("greenlight-shop@.service")
    assert collisions(tmp_path, "demo", "current=unix:/run/greenlight-shop/current.sock")[0]["app"] == "shop"
    assert collisions(tmp_path, "demo", "current=unix:/run/greenlight-demo/current.sock") == []


def test_the_drop_ins_of_the_first_version_count_too(tmp_path):
    write(
        tmp_path / "systemd" / "greenlight-old-app@current.service.d" / "greenlight-bind.conf",
        "[Service]\nEnvironment=GREENLIGHT_WSGI_BIND=127.0.0.1:8000\n",
    )
    assert [item["app"] for item in collisions(tmp_path, "demo", "current=127.0.0.1:8000")] == ["old-app"]


def test_an_old_upstream_address_is_kept_while_it_accepts_connections(tmp_path, gunicorn_socket, capsys):
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    port = listening.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    conf = tmp_path / "upstream-blue.conf"
    conf.write_text(
        f"upstream a {{\n    server 127.0.0.1:{port} max_fails=0;\n    server 127.0.0.1:{dead_port} max_fails=0;\n"
        f"    server unix:{gunicorn_socket} max_fails=0;\n}}\n"
    )
    try:
        assert still_served.main([str(conf), "unix:/run/greenlight-demo/blue.sock"]) == 0
        assert json.loads(capsys.readouterr().out) == [f"127.0.0.1:{port}", f"unix:{gunicorn_socket}"]
        assert still_served.main([str(conf), f"127.0.0.1:{port}"]) == 0
        assert json.loads(capsys.readouterr().out) == [f"unix:{gunicorn_socket}"]
        assert still_served.main([str(tmp_path / "missing.conf"), "unix:/x"]) == 0
        assert json.loads(capsys.readouterr().out) == []
    finally:
        listening.close()
