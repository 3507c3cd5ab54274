"""The application's other processes through the simple deploy, checked the way a user sees them.

Tests run in file order: v1 (converge) serves with a Celery worker and beat; v2 goes out while the worker is in
the middle of a slow task and three tasks wait behind it, and each runs exactly once - the slow one finished by
v1's worker before the window's migrations, the waiting ones by v2's worker; a rollback takes the worker back to
v1's code; bad process declarations are refused before anything changes.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
from playbook_run import demo_playbook, out, summary  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")

PROJECT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PSQL = "sudo -u postgres psql -XAtq -d demo -c"
WORKER, BEAT = "greenlight-demo-worker-1@current", "greenlight-demo-beat-1@current"


def send(host, task: str, *args) -> None:
    """Queue a task through the broker, as the application would (celery call, the serving release's Celery)."""
    arguments = shlex.quote(json.dumps(args))
    host.check_output(
        "cd /srv/demo/current && set -a && . /srv/demo/shared/.env && set +a && "
        f"sudo --preserve-env -u demo .venv/bin/celery -A demo call {task} --args {arguments}"
    )


def notes(host, title: str) -> list[str]:
    """The body (the version of the code that wrote it) of every note with this title."""
    found = host.check_output(f"{PSQL} \"SELECT body FROM notes_note WHERE title = '{title}' ORDER BY id\"")
    return found.split()


def wait_for(host, title: str, seconds: float = 60) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = notes(host, title)
        if found:
            return found
        time.sleep(0.5)
    return []


def main_pid(host, unit: str) -> str:
    return host.check_output(f"systemctl show --property=MainPID --value {unit}")


def test_v1_runs_a_worker_and_beat_as_the_application_user(host):
    for unit in (WORKER, BEAT):
        assert host.service(unit).is_running, host.run(f"journalctl -u {unit} --no-pager -n 30").stdout
        assert host.service(unit).is_enabled
        assert host.check_output(f"ps -o user= -p {main_pid(host, unit)}") == "demo"
    send(host, "notes.tasks.record", "ping-v1")
    assert wait_for(host, "ping-v1") == ["v1"]
    # beat sends a tick every 2 s, and the worker runs it
    deadline = time.monotonic() + 20
    while "succeeded" not in host.run(f"journalctl -u {WORKER} --no-pager | grep notes.tasks.tick").stdout:
        assert time.monotonic() < deadline, host.run(f"journalctl -u {WORKER} -u {BEAT} --no-pager -n 40").stdout
        time.sleep(1)


def test_simple_deploy_finishes_the_task_in_hand_and_runs_each_queued_task_once(host, capsys):
    send(host, "notes.tasks.slow", "inflight", 10)
    assert wait_for(host, "inflight begin", 30) == ["v1"]
    for n in range(3):
        send(host, "notes.tasks.record", f"queued-{n}")
    result = demo_playbook("deploy.yml", "v2")
    assert result.returncode == 0, out(result)
    assert host.check_output("curl -s --max-time 5 http://127.0.0.1/version") == "v2"
    # The task in hand was finished by v1's worker (its warm shutdown), before v2's migrations, and not again.
    assert notes(host, "inflight end") == ["v1"]
    assert notes(host, "inflight begin") == ["v1"]
    # The queued ones waited for v2's worker (or were done before the stop), each exactly once.
    for n in range(3):
        assert len(wait_for(host, f"queued-{n}")) == 1
    time.sleep(3)  # a task run twice would show up now
    for n in range(3):
        assert len(notes(host, f"queued-{n}")) == 1, f"queued-{n}"
    send(host, "notes.tasks.record", "ping-v2")
    assert wait_for(host, "ping-v2") == ["v2"]
    report = summary()
    assert report["processes"] == {
        host.backend.host: ["beat-1@current: active (running)", "worker-1@current: active (running)"]
    }
    with capsys.disabled():  # the number goes to the scenario's log, also when the test passes
        print(f"\ndowntime window with a worker finishing a 10 s task: {report['downtime_window_seconds']} s")


def test_rollback_takes_the_worker_back_to_the_previous_release(host):
    result = demo_playbook("rollback.yml", "v2")
    assert result.returncode == 0, out(result)
    send(host, "notes.tasks.record", "ping-rollback")
    assert wait_for(host, "ping-rollback") == ["v1"]
    assert host.service(BEAT).is_running


def test_bad_process_declarations_are_refused_before_anything_changes(host):
    pids = {unit: main_pid(host, unit) for unit in (WORKER, BEAT)}
    bad = {
        "wsgi_processes": {
            "worker": {"hosts": "all"},
            "beat": {"command": "celery -A demo beat", "singleton": True, "count": 2},
            "mail": {"command": "python manage.py send_mail_forever", "stop_timeout": "soon"},
        }
    }
    result = demo_playbook("deploy.yml", "v2", "-e", json.dumps(bad))
    assert result.returncode != 0
    text = out(result)
    assert "worker has no command" in text
    assert "beat is a singleton" in text
    assert "mail's stop_timeout must be a number of seconds" in text
    assert "Nothing was changed" in text
    assert {unit: main_pid(host, unit) for unit in (WORKER, BEAT)} == pids
    assert host.check_output("curl -s --max-time 5 http://127.0.0.1/version") == "v1"
