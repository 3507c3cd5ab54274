"""Two app hosts and a database host: code to all, migrations once, switch host by host.

Tests run in file order: v1 (converge) serves on both hosts; v2 goes out
blue-green with greenlight_serial: 1; then a release that cannot start on the
second host switches no host; then one whose switch fails on the second host,
after the first switched, puts the first back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
from playbook_run import demo_playbook, out  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("app")

PROJECT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
APPS = ["greenlight-multi-app1", "greenlight-multi-app2"]
DB = "greenlight-multi-db"


def docker_exec(container: str, *argv: str) -> str:
    argv = ["docker", "exec", container, *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def sql(query: str) -> str:
    return docker_exec(DB, "sudo", "-u", "postgres", "psql", "-XAtq", "-d", "demo", "-c", query)


def task_results(text: str, task: str) -> list[str]:
    """The per-host result lines (ok/changed/failed/skipping) of the task named `task` in ansible's output."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("TASK ["):
            inside = line.split(" : ", 1)[-1].startswith(task + "]")
        elif inside and line.split(":", 1)[0] in ("ok", "changed", "failed", "fatal", "skipping"):
            lines.append(line.split(" =>", 1)[0].strip())
    return lines


def served(container: str) -> str:
    return docker_exec(container, "curl", "-s", "--max-time", "5", "http://127.0.0.1/version")


def backups(container: str) -> list[str]:
    return docker_exec(container, "sh", "-c", "ls /srv/demo/backups 2>/dev/null || true").split()


def test_v1_serves_on_both_hosts_from_the_shared_database():
    assert [served(app) for app in APPS] == ["v1", "v1"]
    # The window backed up on the backup host (backup_host: the second), apart from migrate on the first.
    assert len(backups(APPS[1])) == 1 and backups(APPS[1])[0].endswith(".dump"), backups(APPS[1])
    assert backups(APPS[0]) == []
    # The application database lives on the database host only.
    assert sql("SELECT count(*) FROM django_migrations WHERE app = 'notes'") == "1"
    for app in APPS:
        local = docker_exec(app, "sudo", "-u", "postgres", "psql", "-XAtq", "-c", "SELECT datname FROM pg_database")
        assert "demo" not in local.split()


def test_each_host_runs_the_release_with_its_own_python():
    # One controller (Python 3.11.7), two server Pythons: each host got the wheelhouse of its own.
    script = "import sys, django, psycopg; print(sys.version_info[:2], django.get_version(), psycopg.pq.__impl__)"
    versions = [docker_exec(app, "/srv/demo/current/.venv/bin/python", "-c", script) for app in APPS]
    assert versions == ["(3, 11) 5.2.19 binary", "(3, 13) 5.2.19 binary"]


def test_v2_blue_green_migrates_once_and_switches_host_by_host():
    docker_exec(
        APPS[1], "curl", "-sf", "--max-time", "5", "-X", "POST", "-d", "title=before-v2", "http://127.0.0.1/notes/new"
    )
    result = demo_playbook("deploy_blue_green.yml", "v2")
    assert result.returncode == 0, out(result)
    assert [served(app) for app in APPS] == ["v2", "v2"]

    summary = json.loads((EPHEMERAL / "summary.json").read_text())
    assert summary["migrations_applied"] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    assert sql("SELECT count(*) FROM notes_note WHERE title = 'before-v2' AND tag = 'legacy'") == "1"
    # Once: only the migrate host migrated, and only the backup host took the backup.
    assert task_results(result.stdout, "run | Apply notes.0002_note_tag, notes.0003_backfill_tag") == [
        f"changed: [{APPS[0]}]"
    ], out(result)
    assert len(backups(APPS[1])) == 2 and backups(APPS[0]) == []

    # greenlight_serial: 1 -> one batch per host, app1 first, each checked before the next.
    text = result.stdout
    first = text.index(f"(item={APPS[0]})")
    second = text.index(f"(item={APPS[1]})")
    assert first < second, out(result)


def test_a_release_that_cannot_start_on_one_host_switches_no_host():
    # The idle colour cannot start on app2 only: a drop-in there makes its unit fail before gunicorn runs.
    active = docker_exec(APPS[1], "readlink", "/etc/nginx/greenlight/demo/active.conf")
    idle = "green" if "blue" in active else "blue"
    dropin = f"/etc/systemd/system/greenlight-demo@{idle}.service.d/broken.conf"
    docker_exec(
        APPS[1],
        "sh",
        "-c",
        f"mkdir -p $(dirname {dropin}) && printf '[Service]\\nExecStartPre=/bin/false\\n' > {dropin}",
    )
    try:
        before = [docker_exec(app, "readlink", "/etc/nginx/greenlight/demo/active.conf") for app in APPS]
        # A new revision with v2's migrations: it passes inspection and fails only when it starts.
        v2b = EPHEMERAL / "demo" / "v2b"
        shutil.rmtree(v2b, ignore_errors=True)
        shutil.copytree(EPHEMERAL / "demo" / "v2", v2b, symlinks=True)
        with (v2b / "manage.py").open("a") as handle:
            handle.write("# v2b\n")
        result = demo_playbook("deploy_blue_green.yml", "v2b", "-e", "wsgi_health_timeout=5")
        assert result.returncode != 0
        assert "no host switched" in out(result), out(result)
        assert [docker_exec(app, "readlink", "/etc/nginx/greenlight/demo/active.conf") for app in APPS] == before
        assert [served(app) for app in APPS] == ["v2", "v2"]
    finally:
        docker_exec(APPS[1], "sh", "-c", f"rm -rf $(dirname {dropin}) && systemctl daemon-reload")


def test_a_switch_that_fails_on_a_later_batch_puts_the_switched_hosts_back():
    # nginx on app2 gets a configuration `nginx -t` refuses just before the switch (a hook): app1 switches
    # (batch 1), app2 cannot (batch 2).
    broken = "/etc/nginx/conf.d/zz-multi-broken.conf"
    hook = EPHEMERAL / "break_nginx_on_app2.yml"
    hook.write_text(
        "- name: Break nginx on the second host only\n"
        "  ansible.builtin.copy:\n"
        f"    dest: {broken}\n"
        "    content: this is not an nginx directive\n"
        "    mode: '0644'\n"
        f"  when: inventory_hostname == '{APPS[1]}'\n"
    )
    try:
        before = [docker_exec(app, "readlink", "/etc/nginx/greenlight/demo/active.conf") for app in APPS]
        result = demo_playbook(
            "deploy_blue_green.yml", "v2b", "-e", json.dumps({"greenlight_hooks": {"before_switch": str(hook)}})
        )
        assert result.returncode != 0
        text = out(result)
        assert f"the switch failed part of the way: {APPS[0]} went back to" in text, text
        # app1 had switched: it is back on the old colour, which runs again; both serve v2, not v2b.
        assert [docker_exec(app, "readlink", "/etc/nginx/greenlight/demo/active.conf") for app in APPS] == before
        assert [served(app) for app in APPS] == ["v2", "v2"]
        old = before[0].rsplit("-", 1)[-1].removesuffix(".conf")
        assert docker_exec(APPS[0], "systemctl", "is-active", f"greenlight-demo@{old}") == "active"
    finally:
        docker_exec(APPS[1], "rm", "-f", broken)
