"""greenlight.django.deploy_record: runs in-process on an application tree made in a temporary directory, its
health probe against an HTTP server on loopback."""

import http.server
import os
import socket
import threading

import pytest
from ansible_collections.greenlight.django.plugins.modules import deploy_record
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)


def run(args, check=False):
    args = dict(args, _ansible_check_mode=check)
    with set_module_args(args), patched_exits():
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            deploy_record.main()
    return raised.value.result


class Healthy(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - the name http.server calls
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Healthy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/healthz"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def app(tmp_path):
    root = tmp_path / "srv" / "shop"
    (root / "releases" / "r1").mkdir(parents=True)
    (root / "releases" / "r2").mkdir(parents=True)
    (root / "shared").mkdir()
    (root / "shared" / ".env").write_text("SECRET=x\n")
    os.chmod(root / "shared" / ".env", 0o600)
    os.symlink("releases/r2", root / "current")
    nginx = tmp_path / "nginx" / "greenlight" / "shop"
    nginx.mkdir(parents=True)
    (nginx / "upstream-current.conf").write_text("server unix:/run/shop.sock;\n")
    os.symlink("upstream-current.conf", nginx / "active.conf")
    units = tmp_path / "systemd"
    units.mkdir()
    (units / "greenlight-shop@.service").write_text("[Service]\n")
    return root


def args(app, **more):
    tmp = app.parent.parent
    return dict(
        app_root=str(app),
        digest="d1",
        paths=[
            str(app / "shared" / ".env"),
            str(tmp / "nginx" / "greenlight" / "shop"),
            str(tmp / "systemd" / "greenlight-shop@*"),
        ],
        **more,
    )


def check(app, digest="d1"):
    return run(dict(app_root=str(app), state="checked", digest=digest, lock=str(app / "deploy.lock")))


def test_a_host_as_the_deploy_left_it_is_unchanged(app, server):
    result = run(args(app, state="recorded", health={"url": server}))
    assert result["changed"] is True and result["release"] == "r2"
    record = app / "deployed.json"
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert run(args(app, state="recorded", health={"url": server}))["changed"] is False
    result = check(app)
    assert result["unchanged"] is True and result["differences"] == [] and result["release"] == "r2"
    assert result["changed"] is False


def test_no_record_means_every_step(app):
    result = check(app)
    assert result["unchanged"] is False
    assert result["differences"] == ["no deploy was recorded on this host"]


def test_other_inputs_are_a_difference(app):
    run(args(app, state="recorded"))
    assert check(app, digest="d2")["differences"] == ["the deploy's inputs changed (source, variables or collection)"]


def test_a_held_lock_is_a_difference(app):
    run(args(app, state="recorded"))
    (app / "deploy.lock").mkdir()
    assert check(app)["differences"] == [f"the deploy lock {app / 'deploy.lock'} is held"]


def test_edited_files_modes_links_and_new_files_are_differences(app):
    run(args(app, state="recorded"))
    tmp = app.parent.parent
    env = app / "shared" / ".env"
    os.chmod(env, 0o644)
    assert check(app)["differences"] == [f"{env} changed"]
    os.chmod(env, 0o600)
    nginx = tmp / "nginx" / "greenlight" / "shop"
    (nginx / "maintenance.on").write_text("")
    assert check(app)["differences"] == [f"{nginx} changed"]
    os.unlink(nginx / "maintenance.on")
    dropin = tmp / "systemd" / "greenlight-shop@current.service.d"
    dropin.mkdir()
    assert check(app)["differences"] == [f"{dropin} is new"]
    dropin.rmdir()
    (tmp / "systemd" / "greenlight-shop@.service").unlink()
    assert check(app)["differences"] == [f"{tmp / 'systemd' / 'greenlight-shop@.service'} is missing"]


def test_a_moved_pointer_is_a_difference(app):
    run(args(app, state="recorded"))
    os.unlink(app / "current")
    os.symlink("releases/r1", app / "current")
    os.symlink("releases/r2", app / "blue")
    assert check(app)["differences"] == [
        "the pointer blue names releases/r2 (the last deploy left none)",
        "the pointer current names releases/r1 (the last deploy left releases/r2)",
    ]


def test_a_failing_health_probe_is_a_difference(app):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/healthz"
    run(args(app, state="recorded", health={"url": closed}))
    differences = check(app)["differences"]
    assert len(differences) == 1 and differences[0].startswith(f"the health probe of {closed} did not pass (no answer")


def test_an_unhealthy_answer_is_a_difference(app, server):
    run(args(app, state="recorded", health={"url": server}))
    Healthy.status = 503
    try:
        differences = check(app)["differences"]
    finally:
        Healthy.status = 200
    assert differences == [f"the health probe of {server} did not pass (HTTP 503 ok)"]


def test_check_mode_records_nothing(app):
    result = run(args(app, state="recorded"), check=True)
    assert result["changed"] is True
    assert not (app / "deployed.json").exists()


def test_a_record_of_another_format_means_every_step(app):
    (app / "deployed.json").write_text('{"format": 0}')
    assert check(app)["differences"] == [f"the record {app / 'deployed.json'} is of another version"]


def test_active_units_are_read_from_systemctl(monkeypatch):
    class Module:
        def run_command(self, argv):
            assert argv[-2:] == ["greenlight-shop@*", "nginx.service"]
            return (
                0,
                "greenlight-shop@current.service loaded active running gunicorn\nnginx.service loaded active running\n",
                "",
            )

    assert deploy_record.active_units(Module(), ["greenlight-shop@*", "nginx.service"]) == [
        "greenlight-shop@current.service",
        "nginx.service",
    ]
    assert deploy_record.active_units(Module(), []) == []


def test_the_applied_migrations_are_compared_once_everything_else_holds(app, monkeypatch):
    read = iter([({"default": "h1"}, ""), ({"default": "h1"}, ""), ({"default": "h2"}, ""), (None, "no answer")])
    monkeypatch.setattr(deploy_record, "applied_migrations", lambda *args: next(read))
    run(args(app, state="recorded", migrations={"databases": ["default"]}))
    assert check(app)["unchanged"] is True
    assert check(app)["differences"] == ["the database has other migrations applied"]
    assert check(app)["differences"] == ["no answer"]
    # Not read at all while something else differs.
    assert check(app, digest="d2")["differences"] == ["the deploy's inputs changed (source, variables or collection)"]


def test_a_recorded_command_that_fails_now_is_a_difference(app, tmp_path):
    flag = tmp_path / "broken"
    command = ["sh", "-c", f'if [ -e "{flag}" ]; then echo "emerg: duplicate default server" >&2; exit 1; fi']
    run(args(app, state="recorded", commands=[command]))
    assert check(app)["unchanged"] is True
    flag.write_text("")
    assert check(app)["differences"] == [f"{' '.join(command)} fails: emerg: duplicate default server"]
