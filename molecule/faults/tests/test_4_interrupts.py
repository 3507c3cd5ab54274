"""Interrupted deploys: ansible-playbook is killed (SIGKILL to its process group) at each phase.

After each kill: the site is served by one complete release (or, inside the
simple deploy's window, shows the maintenance page), the notes are all there,
and a run without greenlight_lock_break reports the lock left behind. The
next run, with -e greenlight_lock_break=true, starts from the state the kill
left and is itself killed at the next phase, so each run is seen to get past
the point where the one before it died; the last run finishes the deploy.

Kill points: hooks that stall (after prepare, between migrate and switch,
after switch), and PostgreSQL locks that hold the backup (pg_dump waits for a
table lock) or the migration (its ALTER TABLE waits for a row lock) while
the test kills the controller. What the killed run left running on the server
goes on by itself: the run refused by the lock names it, and the next run,
which breaks the lock, stops the backup still waiting for its table lock
(greenlight_lock_break_wait: 2) and says so. The migrate gives up by
itself after its lock timeout; the test waits for that.

The simple deploy (demo, v1 -> v2) and the blue-green deploy (demo_bg,
v1 -> v6) are interrupted at the same time, each in its own thread: two
applications on one host share nothing but the host. Between the last kill
before the switch and the kill after it, a blue-green run meets an nginx
configuration that fails `nginx -t` at the switch.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest
from faults_lib import (
    BLUE_GREEN,
    HOOKS,
    SIMPLE,
    App,
    Background,
    active_colour,
    at_hook,
    background_psql,
    end_sessions,
    healthy,
    migrations,
    pointer,
    psql,
    run,
    run_until_killed,
    serves,
    sessions,
    sh,
    user_data,
    wait_for,
    write_note,
)

GATE = "greenlight-faults-gate"
BACKUP_GATE = "greenlight-faults-backup-gate"
BROKEN_NGINX = "/etc/nginx/conf.d/zz-faults-broken.conf"
BREAK = {"greenlight_lock_break": True, "greenlight_lock_break_wait": 2}
STATE: dict[str, str] = {}


def kill_in_backup(app: App) -> tuple[dict, Callable[[Background], bool], Callable[[], None]]:
    """pg_dump waits for a table lock held by the test: the deploy is killed while it waits.

    The gate stays: the killed run's pg_dump is still waiting when the next runs come (see kill_in_migrate)."""
    # The application's database user must be able to read it, as pg_dump runs as that user.
    psql("CREATE TABLE IF NOT EXISTS faults_gate (id int); ALTER TABLE faults_gate OWNER TO demo", app.database)
    background_psql(
        "BEGIN; LOCK TABLE faults_gate IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(240);", app.database, BACKUP_GATE, 240
    )
    wait_for("the gate lock", lambda: sessions(app.database, BACKUP_GATE, "state = 'active'") > 0)

    def waiting(_background: Background) -> bool:
        return sessions(app.database, "greenlight-backup", "wait_event_type = 'Lock'") > 0

    def afterwards() -> None:
        STATE[f"{app.name}-backup-left"] = "yes"

    return {}, waiting, afterwards


def backup_left_running(app: App) -> bool:
    """A pg_dump of this application still runs on the server: its parent is a release's Python (the command
    line of /proc tells, where a process's working directory needs rights a container's root lacks)."""
    parents = sh(
        "for pid in $(pgrep -x pg_dump); do"
        " tr '\\0' ' ' < /proc/$(ps -o ppid= -p $pid | tr -d ' ')/cmdline; echo; done",
        check=False,
    )
    return any(line.startswith(f"{app.root}/releases/") for line in parents.splitlines())


def open_the_backup_gate_once_the_lock_break_stopped_the_backup(app: App) -> None:
    """The killed run's pg_dump waits behind the gate until the next run's lock break stops it; then the gate
    opens, so that the next run's own backup goes through."""
    if STATE.get(f"{app.name}-backup-left") and not backup_left_running(app):
        del STATE[f"{app.name}-backup-left"]
        end_sessions(BACKUP_GATE, app.database)
        psql("DROP TABLE IF EXISTS faults_gate", app.database)
        STATE[f"{app.name}-backup-stopped"] = "yes"


def kill_in_migrate(app: App) -> tuple[dict, Callable[[Background], bool], Callable[[], None]]:
    """The migration's ALTER TABLE waits for a row lock held by the test: the deploy is killed meanwhile.

    Left alone, the migrate gives up after migrate_lock_timeout (5 s) and applies nothing.
    """
    background_psql("BEGIN; SELECT id FROM notes_note FOR UPDATE; SELECT pg_sleep(120);", app.database, GATE)
    wait_for("the row lock", lambda: sessions(app.database, GATE, "state = 'active'") > 0)

    def waiting(_background: Background) -> bool:
        open_the_backup_gate_once_the_lock_break_stopped_the_backup(app)
        return sessions(app.database, "greenlight-migrate%", "wait_event_type = 'Lock'") > 0

    def afterwards() -> None:
        wait_for("the migrate left running to give up", lambda: sessions(app.database, "greenlight-migrate%") == 0)
        end_sessions(GATE, app.database)

    return {}, waiting, afterwards


def kill_at_hook(point: str):
    def arrange(_app: App):
        extra_vars, condition = at_hook(point)
        return extra_vars, condition, lambda: None

    return arrange


ARRANGE = {
    "after-prepare": kill_at_hook("after_prepare"),
    "during-backup": kill_in_backup,
    "during-migrate": kill_in_migrate,
    "between-migrate-and-switch": kill_at_hook("before_switch"),
    "after-switch": kill_at_hook("after_switch"),
}


# The simple deploy takes demo from v1 to v2, the blue-green deploy demo_bg from v1 to v6 (expand before the
# switch, the contract 0006 after it). Both run at the same time: they share nothing but the host.
TARGET = {SIMPLE: "v2", BLUE_GREEN: "v6"}
# What the site serves after each kill.
SEES = {
    "after-prepare": {SIMPLE: "v1", BLUE_GREEN: "v1"},
    "during-backup": {SIMPLE: "maintenance", BLUE_GREEN: "v1"},
    "during-migrate": {SIMPLE: "maintenance", BLUE_GREEN: "v1"},
    "between-migrate-and-switch": {SIMPLE: "maintenance", BLUE_GREEN: "v1"},
    "after-switch": {SIMPLE: "v2", BLUE_GREEN: "v6"},
}
BEFORE_THE_SWITCH = ["after-prepare", "during-backup", "during-migrate", "between-migrate-and-switch"]


def both(step: Callable[[App], None]) -> None:
    """Run step for both applications at once; fail with every application's error."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {app: pool.submit(step, app) for app in TARGET}
    errors = [f"{app.name}: {future.exception()!r}" for app, future in futures.items() if future.exception()]
    assert not errors, "\n\n".join(errors)


def interrupt(app: App, point: str) -> None:
    extra_vars, condition, afterwards = ARRANGE[point](app)
    if STATE.get(f"{app.name}-started"):
        extra_vars = {**extra_vars, **BREAK}
    STATE[f"{app.name}-started"] = "yes"
    try:
        killed = run_until_killed(app, TARGET[app], condition, extra_vars=extra_vars)
    finally:
        afterwards()
    print(f"{app.name} killed {point} after {killed.seconds:.1f} s")
    if STATE.pop(f"{app.name}-backup-stopped", None):
        # This run broke the lock of the run killed during its backup: it stopped that run's pg_dump and said so.
        assert re.search(r"stopped \d+ \S*pg_dump ", killed.output), killed
    # What the user sees: one complete release, or the maintenance page inside the simple deploy's window.
    assert serves(app) == SEES[point][app]
    assert user_data(app) == STATE[f"{app.name}-data"]
    for name in ("current", "blue", "green"):
        release = pointer(app, name)
        if release:
            path = f"{app.root}/releases/{release}"
            assert sh(f"test -s {path}/REVISION -a -x {path}/.venv/bin/python && echo complete") == "complete"
    # The lock left behind is reported, naming the run that held it, and how to clear it.
    refused = run(app, TARGET[app])
    assert refused.rc != 0
    assert "holds the lock" in refused.output and "unknown holder" not in refused.output, refused
    assert re.search(r"since 20\S+ \(held by \S+@\S+, playbook \"Deploy a Django release", refused.output), refused
    assert "-e greenlight_lock_break=true" in refused.output
    if point == "during-backup":
        assert backup_left_running(app)
        assert re.search(r"Still running from its releases on \S+: .*pid \d+ \S*pg_dump ", refused.output), refused
    assert serves(app) == SEES[point][app]


@pytest.mark.parametrize("point", BEFORE_THE_SWITCH)
def test_both_deploys_killed_before_the_switch(point: str):
    if point == BEFORE_THE_SWITCH[0]:
        for app in TARGET:
            write_note(app, "before-interrupts")
            STATE[f"{app.name}-data"] = user_data(app)
    both(lambda app: interrupt(app, point))


def test_a_blue_green_switch_that_nginx_refuses_leaves_the_old_colour_serving():
    """The run after the last kill meets an nginx configuration that fails `nginx -t` at the switch."""
    hooks = {"greenlight_hooks": {"before_switch": str(HOOKS / "break_nginx.yml")}}
    try:
        result = run(BLUE_GREEN, "v6", extra_vars={**hooks, **BREAK})
    finally:
        sh(f"rm -f {BROKEN_NGINX}")
    print(f"blue-green switch refused by nginx -t: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc != 0
    assert "nginx -t failed" in result.output and "this_is_no_directive" in result.output
    assert "upstream-blue.conf again" in result.output
    assert active_colour(BLUE_GREEN) == "blue"
    assert serves(BLUE_GREEN) == "v1"
    assert healthy(BLUE_GREEN)
    assert user_data(BLUE_GREEN) == STATE["demo_bg-data"]
    # The expand migrations stay: the old code works with them.
    assert "notes.0005_backfill_headline" in migrations(BLUE_GREEN)
    report = BLUE_GREEN.summary()
    assert report["outcome"] == "failed" and report["serving"] == "blue"
    assert sh("systemctl is-active greenlight-demo_bg@green || true") != "active"
    assert sh("test -e /srv/demo_bg/deploy.lock && echo held || echo free") == "free"


def test_both_deploys_killed_after_the_switch():
    both(lambda app: interrupt(app, "after-switch"))


def finish(app: App) -> None:
    result = run(app, TARGET[app], extra_vars=BREAK)
    print(f"{app.name} run again: rc={result.rc} in {result.seconds:.1f} s")
    assert result.rc == 0, result
    assert serves(app) == TARGET[app]
    assert healthy(app)
    assert user_data(app) == STATE[f"{app.name}-data"]
    assert app.summary()["outcome"] == "deployed"
    assert sh(f"test -e {app.root}/deploy.lock && echo held || echo free") == "free"
    if app is SIMPLE:
        assert "notes.0003_backfill_tag" in migrations(app)
        assert sh("test -e /etc/nginx/greenlight/demo/maintenance.on && echo on || echo off") == "off"
    else:
        # The contract migration (after_switch), which the killed run never reached, is applied now.
        assert "notes.0006_remove_note_title" in migrations(app)
        columns = psql(
            "SELECT string_agg(column_name, ',') FROM information_schema.columns WHERE table_name = 'notes_note'",
            app.database,
        )
        assert "title" not in columns.split(",")


def test_both_deploys_run_again_finish():
    both(finish)
