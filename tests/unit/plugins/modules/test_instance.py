"""greenlight.django.instance: runs in-process against a stand-in systemctl and a real HTTP server on a unix socket.

The stand-in keeps the unit's state in a file and logs every command, so the tests see what the module asked
systemd for and in which order; the health probe reaches a real server, and the pointer and the maintenance
flag are real files.
"""

import json
import os
import stat
import sys

import pytest
from ansible_collections.greenlight.django.plugins.modules import instance
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    serving,
    set_module_args,
)

UNIT = "greenlight-shop@current.service"
R1, R2 = "20260101T100000Z-aaaaaaaaaaaa", "20260102T100000Z-bbbbbbbbbbbb"

SYSTEMCTL = """#!{python}
import json, os, sys
state_file, log_file = os.environ["FAKE_SYSTEMD_STATE"], os.environ["FAKE_SYSTEMD_LOG"]
with open(state_file) as handle:
    state = json.load(handle)
args = sys.argv[1:]
with open(log_file, "a") as handle:
    handle.write(" ".join(args) + "\\n")
verb, unit = args[0], (args[1] if len(args) > 1 else "")
if verb == "is-active":
    for one in args[1:]:
        print("active" if state["active"].get(one) else "inactive")
    sys.exit(0 if any(state["active"].get(one) for one in args[1:]) else 3)
if verb == "is-enabled":
    print("enabled" if state["enabled"].get(unit) else "disabled")
    sys.exit(0 if state["enabled"].get(unit) else 1)
if verb == "show":
    # systemctl show --property=... UNIT: what the test set in state["show"]; rc from state["show_rc"]
    if state.get("show_rc", 0):
        print("Failed to get properties: Connection timed out", file=sys.stderr)
        sys.exit(state["show_rc"])
    for key, value in state["show"].items():
        print(key + "=" + value)
    sys.exit(0)
if verb == "daemon-reload" and state.get("reload_fails"):
    print("Failed to reload daemon: Access denied", file=sys.stderr)
    sys.exit(1)
units = [one for one in args[1:] if not one.startswith("-")]
if verb in ("start", "restart", "reload") and set(units) & set(state.get("broken", [])):
    print("Job for " + unit + " failed.", file=sys.stderr)
    sys.exit(1)
for one in units:
    if verb in ("start", "restart", "reload"):
        state["active"][one] = True
    elif verb == "stop":
        state["active"][one] = False
    elif verb in ("enable", "disable"):
        state["enabled"][one] = verb == "enable"
with open(state_file, "w") as handle:
    json.dump(state, handle)
"""

JOURNALCTL = """#!/bin/sh
echo "gunicorn[42]: Booting worker"
echo "gunicorn[42]: OperationalError: the database is down"
"""


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A stand-in systemd, an application root with two releases and current on R1, nginx's flag directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("systemctl", SYSTEMCTL.format(python=sys.executable)), ("journalctl", JOURNALCTL)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "active": {UNIT: True, "nginx": True},
                "enabled": {UNIT: True},
                # systemd up to date with the unit's files
                "show": {"LoadState": "loaded", "NeedDaemonReload": "no", "DropInPaths": ""},
            }
        )
    )
    log = tmp_path / "systemctl.log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", str(state))
    monkeypatch.setenv("FAKE_SYSTEMD_LOG", str(log))
    root = tmp_path / "shop"
    for release in (R1, R2):
        (root / "releases" / release).mkdir(parents=True)
        (root / "releases" / release / "REVISION").write_text("a" * 40 + "\n")
    os.symlink(f"releases/{R1}", root / "current")
    (tmp_path / "nginx").mkdir()
    # the unit search path: two directories of this test's own (the first one wins, as /etc over /lib)
    unit_dirs = (tmp_path / "etc-systemd", tmp_path / "lib-systemd")
    monkeypatch.setattr(instance, "UNIT_DIRS", tuple(str(path) for path in unit_dirs))

    class Host:
        flag = tmp_path / "nginx" / "maintenance.on"
        socket = str(tmp_path / "gunicorn.sock")

        @staticmethod
        def calls():
            return log.read_text().splitlines()

        @staticmethod
        def units():
            return json.loads(state.read_text())

        @staticmethod
        def set_units(**changes):
            data = json.loads(state.read_text())
            data.update(changes)
            state.write_text(json.dumps(data))

        @staticmethod
        def show(**properties):
            data = json.loads(state.read_text())
            data["show"].update(properties)
            state.write_text(json.dumps(data))

        @staticmethod
        def dropin(directory, name, text="[Service]\nEnvironment=A=1\n", where=0):
            path = unit_dirs[where] / directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path

    Host.root = root
    return Host


@pytest.fixture
def gunicorn(host):
    with serving(host.socket) as server:
        yield server


def run(args, check=False):
    with set_module_args(dict(args, _ansible_check_mode=check)), patched_exits():
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as raised:
            instance.main()
    return raised.value.result


def health(host, **more):
    return dict({"url": "http://127.0.0.1/healthz", "unix_socket": host.socket, "interval": 0.01}, **more)


def test_the_window_opens_in_one_call_the_page_on_and_nginx_reloaded_before_the_stop(host):
    result = run({"unit": UNIT, "state": "stopped", "maintenance": {"flag": str(host.flag), "state": "on"}})
    assert result["changed"] and result["was_active"]
    assert result["actions"] == ["maintenance page on", "nginx reloaded", "stopped"]
    assert host.flag.read_text() == "on\n"
    calls = host.calls()
    assert calls.index("reload nginx") < calls.index(f"stop {UNIT}")
    assert host.units()["active"][UNIT] is False
    # enabled left unset: a stop that a start follows does not disable the unit
    assert host.units()["enabled"][UNIT] is True


def test_the_window_closes_in_one_call_switch_start_health_then_page_off(host, gunicorn):
    host.flag.write_text("on\n")
    host.set_units(active={UNIT: False, "nginx": True})
    host.show(NeedDaemonReload="yes")  # the deploy rewrote the template
    result = run(
        {
            "unit": UNIT,
            "state": "started",
            "enabled": True,
            "daemon_reload": True,
            "pointer": {"app_root": str(host.root), "name": "current", "release": R2},
            "health": health(host, successes=3),
            "maintenance": {"flag": str(host.flag), "state": "off"},
        }
    )
    assert result["actions"] == [f"current points at {R2}", "started", "maintenance page off"]
    assert result["pointer_before"] == R1
    assert os.readlink(host.root / "current") == f"releases/{R2}"
    assert result["health"]["streak"] == 3
    assert not host.flag.exists()
    calls = host.calls()
    assert calls.index("daemon-reload") < calls.index(f"start {UNIT}")
    assert result["daemon_reloaded"] is True


def test_an_unhealthy_start_keeps_the_page_on_and_says_why_with_the_journal(host, gunicorn):
    gunicorn.status = 503
    host.flag.write_text("on\n")
    host.set_units(active={UNIT: False})
    result = run(
        {
            "unit": UNIT,
            "state": "started",
            "pointer": {"app_root": str(host.root), "name": "current", "release": R2},
            "health": health(host, timeout=0.3),
            "maintenance": {"flag": str(host.flag), "state": "off"},
            "journal_lines": 5,
        }
    )
    assert result["failed"] and result["step"] == "health"
    assert "did not answer http://127.0.0.1/healthz through unix:" in result["msg"]
    assert "HTTP 503" in result["msg"]
    assert "Last 5 journal lines of greenlight-shop@current.service" in result["msg"]
    assert "OperationalError: the database is down" in result["msg"]
    # what a caller needs to put things back
    assert result["pointer_before"] == R1 and f"current points at {R2}" in result["actions"]
    assert host.flag.exists()


def test_a_unit_that_does_not_start_is_reported_before_any_probe(host):
    host.set_units(active={UNIT: False}, broken=[UNIT])
    result = run({"unit": UNIT, "state": "started", "health": health(host), "journal_lines": 0})
    assert result["failed"] and result["step"] == "systemd"
    assert f"systemctl start {UNIT} failed: Job for {UNIT} failed." in result["msg"]
    assert "journal" not in result["msg"]


def test_a_running_instance_that_a_start_leaves_alone_needs_one_answer(host, gunicorn):
    result = run({"unit": UNIT, "state": "started", "enabled": True, "health": health(host)})
    assert not result["changed"] and result["actions"] == []
    assert result["health"]["probes"] == 1
    assert not any(call.startswith(("start", "restart")) for call in host.calls())


def test_a_missing_release_is_refused_before_the_unit_acts(host):
    result = run(
        {"unit": UNIT, "state": "restarted", "pointer": {"app_root": str(host.root), "name": "current", "release": "x"}}
    )
    assert result["failed"] and result["step"] == "pointer"
    assert "no REVISION file" in result["msg"]
    assert not any(call.startswith("restart") for call in host.calls())


def test_check_mode_says_what_would_change_and_changes_nothing(host):
    result = run(
        {
            "unit": UNIT,
            "state": "stopped",
            "enabled": False,
            "maintenance": {"flag": str(host.flag), "state": "on"},
        },
        check=True,
    )
    assert result["changed"] and result["actions"] == ["maintenance page on", "disabled", "stopped"]
    assert not host.flag.exists()
    assert host.units()["active"][UNIT] is True
    assert all(call.split()[0] in ("is-active", "is-enabled") for call in host.calls())


def test_wrong_health_arguments_fail_before_anything_changes(host):
    result = run({"unit": UNIT, "state": "stopped", "health": {"url": "127.0.0.1/healthz"}})
    assert result["failed"] and "health.url must be an http:// or https:// URL" in result["msg"]
    assert host.calls() == []


def reloads(host, **args):
    """daemon_reload: true on a restart: whether systemd was reloaded, by the result and by the commands."""
    result = run(dict({"unit": UNIT, "state": "restarted", "daemon_reload": True}, **args))
    assert result["actions"] == ["restarted"], result
    calls = host.calls()
    assert f"show --property=NeedDaemonReload,LoadState,DropInPaths {UNIT}" in calls
    assert result["daemon_reloaded"] is ("daemon-reload" in calls)
    if result["daemon_reloaded"]:
        assert calls.index("daemon-reload") < calls.index(f"restart {UNIT}")
    return result["daemon_reloaded"]


def test_daemon_reload_is_skipped_when_systemd_has_the_units_files_as_they_are(host):
    assert reloads(host) is False


def test_daemon_reload_runs_when_systemd_says_the_unit_changed_on_disk(host):
    host.show(NeedDaemonReload="yes")
    assert reloads(host) is True


def test_daemon_reload_runs_for_a_unit_systemd_has_not_loaded(host):
    host.show(LoadState="not-found")
    assert reloads(host) is True


def test_daemon_reload_runs_when_systemd_cannot_say(host):
    host.set_units(show_rc=1)
    assert reloads(host) is True


def test_daemon_reload_runs_for_a_drop_in_directory_systemd_does_not_list_yet(host):
    # systemd 252 (Debian 12) reports NeedDaemonReload=no for a drop-in directory created since the last reload
    host.dropin("greenlight-shop@.service.d", "10-limits.conf")
    assert reloads(host) is True


def test_daemon_reload_is_skipped_for_drop_ins_systemd_lists_or_ignores(host):
    listed = host.dropin("greenlight-.service.d", "10-limits.conf")
    host.show(DropInPaths=str(listed))
    # the same name further down the search path is overridden; a masked one and a non-.conf file do not count
    host.dropin("greenlight-shop@current.service.d", "10-limits.conf", where=1)
    host.dropin("service.d", "20-masked.conf", where=1)
    (listed.parent.parent / "service.d").mkdir()
    os.symlink(os.devnull, listed.parent.parent / "service.d" / "20-masked.conf")
    host.dropin("greenlight-shop@.service.d", "README")
    assert reloads(host) is False


def test_a_failed_daemon_reload_stops_before_the_unit_acts(host):
    host.show(NeedDaemonReload="yes")
    host.set_units(reload_fails=True)
    result = run({"unit": UNIT, "state": "restarted", "daemon_reload": True, "journal_lines": 0})
    assert result["failed"] and result["step"] == "systemd" and not result["daemon_reloaded"]
    assert "systemctl daemon-reload failed" in result["msg"]
    assert not any(call.startswith("restart") for call in host.calls())


def test_the_drop_in_directories_are_the_ones_systemd_reads():
    assert instance.dropin_dirs("greenlight-shop-eu@current.service") == [
        "greenlight-shop-eu@current.service.d",
        "greenlight-shop-eu@.service.d",
        "greenlight-shop-.service.d",
        "greenlight-.service.d",
        "service.d",
    ]
    assert instance.dropin_dirs("nginx.service") == ["nginx.service.d", "service.d"]


WORKER, BEAT = "greenlight-shop-worker-1@current.service", "greenlight-shop-beat-1@current.service"


def test_the_processes_stop_with_the_unit_in_one_systemctl_stop(host):
    host.set_units(active={UNIT: True, WORKER: True, BEAT: False, "nginx": True})
    result = run({"unit": UNIT, "state": "stopped", "processes": [WORKER, BEAT]})
    assert f"stop {UNIT} {WORKER}" in host.calls()
    assert not host.units()["active"][WORKER]
    assert result["processes"] == {WORKER: "inactive", BEAT: "inactive"}
    assert result["actions"] == ["stopped", f"stopped {WORKER}"]


def test_a_start_starts_the_processes_that_do_not_run_with_the_unit(host, gunicorn):
    host.set_units(active={UNIT: False, WORKER: True, BEAT: False, "nginx": True})
    result = run({"unit": UNIT, "state": "started", "processes": [WORKER, BEAT], "health": health(host)})
    assert f"start {UNIT} {BEAT}" in host.calls()
    assert result["processes"] == {WORKER: "active", BEAT: "active"}


def test_a_restart_restarts_the_processes_too(host, gunicorn):
    host.set_units(active={UNIT: True, WORKER: True, "nginx": True})
    run({"unit": UNIT, "state": "restarted", "processes": [WORKER], "health": health(host)})
    assert f"restart {UNIT} {WORKER}" in host.calls()


def test_check_mode_leaves_the_processes_as_they_are(host):
    host.set_units(active={UNIT: True, WORKER: True, "nginx": True})
    result = run({"unit": UNIT, "state": "stopped", "processes": [WORKER]}, check=True)
    assert host.units()["active"][WORKER]
    assert result["changed"] and f"stopped {WORKER}" in result["actions"]


@pytest.mark.parametrize(
    ("state", "unit_active", "running", "plan"),
    [
        ("stopped", True, ["w"], [("stop", ["u", "w"])]),
        ("stopped", False, [], []),
        ("started", True, ["w"], [("start", ["b"])]),
        ("started", True, ["w", "b"], []),
        ("restarted", False, [], [("restart", ["u", "w", "b"])]),
        ("reloaded", True, ["w"], [("reload", ["u"]), ("restart", ["w", "b"])]),
    ],
)
def test_unit_plan(state, unit_active, running, plan):
    assert instance.unit_plan("u", state, unit_active, ["w", "b"], running) == plan


def test_states_by_unit_reads_one_line_per_unit():
    assert instance.states_by_unit(["a", "b"], "active\nfailed\n") == {"a": "active", "b": "failed"}
    assert instance.states_by_unit(["a", "b"], "active\n") == {"a": "active", "b": "unknown"}
