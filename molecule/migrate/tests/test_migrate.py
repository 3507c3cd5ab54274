"""greenlight.django.migrate against PostgreSQL: refusals, locks, a failed migration restored, phases.

The tests run in file order and share one database: converge left it at demo
v2; each refusal must leave it exactly there; the v5 test leaves it there
again by restoring its backup; the v6 test moves it on last.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import testinfra.utils.ansible_runner
from greenlight_steps import advisory_lock_key, run_step

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

V2_MIGRATIONS = ["notes.0001_initial", "notes.0002_note_tag", "notes.0003_backfill_tag"]
# The database password and the Django secret key of the scenario (molecule.yml).
LEAK_MARKERS = ("Leak-Check-7c41e9-db-password", "Leak-Check-7c41e9-secret-key")
HOLDER = "greenlight-test-holder"


def notes_migrations(db) -> list[str]:
    return [name for name in db.migrations() if name.startswith("notes.")]


def release(version: str) -> str:
    return f"/srv/demo/versions/{version}"


# --- converge ---------------------------------------------------------------


def test_converge_applied_v2_once_and_took_one_private_backup(host, db):
    assert notes_migrations(db) == V2_MIGRATIONS
    assert len(db.migrations()) == len(set(db.migrations()))
    assert db.query("SELECT count(*) FROM notes_note WHERE tag IS NULL") == "0"  # 0003 backfilled every note
    backups = host.file("/srv/demo/backups")
    assert (backups.user, backups.group, backups.mode) == ("root", "root", 0o700)
    files = host.run("find /srv/demo/backups -type f -printf '%m %u %f\\n'").stdout.split("\n")
    files = [line for line in files if line]
    # check, converge and idempotence ran: one backup, taken while 0002/0003 were pending.
    assert len(files) == 1, files
    mode, user, name = files[0].split()
    assert (mode, user) == ("600", "root")
    assert name.startswith("demo-") and name.endswith(".dump")


def test_a_second_run_applies_nothing_and_takes_no_backup(host):
    before = host.run("ls /srv/demo/backups").stdout
    run = run_step("migrate.yml", {"migrate_release_path": release("v2")})
    assert run.rc == 0, run
    assert run.report() == {"migrate_plan": [], "migrate_applied": []}
    assert run.changed() == 0
    assert host.run("ls /srv/demo/backups").stdout == before


# --- refusals ---------------------------------------------------------------


def test_a_release_that_is_not_there_is_named_with_the_fix(db):
    before = db.snapshot()
    run = run_step("migrate.yml", {"migrate_release_path": release("v9")})
    assert run.rc != 0
    message = "\n".join(run.failure_messages())
    assert "/srv/demo/versions/v9/.venv/bin/python" in message and "No such file or directory" in message
    assert "run code_sync first" in message and "Nothing was applied" in message
    assert db.snapshot() == before


def test_v3_is_refused_in_simple_mode_naming_the_model_change(db):
    before = db.snapshot()
    run = run_step("migrate.yml", {"migrate_release_path": release("v3")})
    assert run.rc != 0
    message = "\n".join(run.failure_messages())
    assert "refused to migrate demo" in message
    assert "Add field priority to note" in message
    assert "makemigrations` in development" in message
    assert "nothing was applied" in message
    assert db.snapshot() == before


def test_v3_is_refused_in_blue_green_mode_too(db):
    before = db.migrations()
    run = run_step("migrate.yml", {"migrate_release_path": release("v3"), "migrate_mode": "blue_green"})
    assert run.rc != 0
    assert "Add field priority to note" in "\n".join(run.failure_messages())
    assert db.migrations() == before


def test_v4_is_refused_in_blue_green_mode_naming_each_operation(db):
    before = db.snapshot()
    run = run_step(
        "migrate.yml",
        {"migrate_release_path": release("v4"), "migrate_mode": "blue_green", "migrate_phase": "before_switch"},
    )
    assert run.rc != 0
    message = "\n".join(run.failure_messages())
    assert "Not backward compatible with the release that is still serving" in message
    assert "notes.0004_remove_note_body_rename_title_headline: Remove field body from note" in message
    assert "Rename field title on note to headline" in message
    assert "expand and contract" in message
    assert 'greenlight_phase = "after_switch"' in message
    assert db.snapshot() == before


def test_v4_passes_the_preflight_in_simple_mode_and_check_mode_applies_nothing(db):
    before = db.snapshot()
    run = run_step("migrate.yml", {"migrate_release_path": release("v4")}, check=True)
    assert run.rc == 0, run
    assert run.report() == {
        "migrate_plan": ["notes.0004_remove_note_body_rename_title_headline"],
        "migrate_applied": [],
    }
    assert db.snapshot() == before


# --- the migration ledger ---------------------------------------------------


def ledger_events(db) -> str:
    return db.query("SELECT string_agg(name || ':' || event, ',' ORDER BY id) FROM greenlight_migration_ledger")


def test_a_migration_applied_by_hand_on_the_server_is_refused_until_accepted(host, db):
    # converge's first migrate took the baseline (v1, migrated by hand in prepare) and recorded v2.
    assert "0001_initial:baseline" in ledger_events(db) and "0003_backfill_tag:applied" in ledger_events(db)
    # On the server, by hand, the migration that a later release has under the same name.
    by_hand = host.run("/srv/demo/bin/manage %s migrate --noinput notes 0004_note_rating", release("v5"))
    assert by_hand.rc == 0, by_hand.stderr
    try:
        before = db.snapshot()
        run = run_step("migrate.yml", {"migrate_release_path": release("v5")})
        assert run.rc != 0
        message = "\n".join(run.failure_messages())
        assert "nothing was applied" in message
        assert "notes.0004_note_rating (applied 20" in message
        assert "applied to the database outside a deploy" in message
        assert "greenlight.django.ledger_repair" in message
        assert db.snapshot() == before  # 0005 not applied, nothing recorded
        # Reviewed: accepted with the playbook an AWX job template runs (its survey gives text), recorded with
        # who and why; the inspection then passes (check mode: nothing is applied).
        answers = {
            "greenlight_app_name": "demo",
            "greenlight_ledger_accept": "notes.0004_note_rating",
            "greenlight_ledger_reason": "reviewed: v5's 0004 is what ran",
            "awx_user_name": "alice",
            "migrate_release_path": release("v5"),
        }
        repair = run_step("ledger_repair.yml", answers)
        assert repair.rc == 0, repair.output[-3000:]
        accepted = "SELECT recorded_by || '|' || reason FROM greenlight_migration_ledger WHERE event = 'accepted'"
        assert db.query(accepted) == "alice|reviewed: v5's 0004 is what ran"
        assert run_step("migrate.yml", {"migrate_release_path": release("v5")}, check=True).rc == 0
    finally:
        back = host.run("/srv/demo/bin/manage %s migrate --noinput notes 0003_backfill_tag", release("v5"))
        assert back.rc == 0, back.stderr


# --- locks ------------------------------------------------------------------


def hold_in_background(host, db, sql: str, what: str) -> None:
    """Start a psql session (bounded to 60 s) that holds a lock; wait until it does."""
    command = f"PGAPPNAME={HOLDER} timeout 60 runuser -u postgres -- psql -XAtq -d demo -c {sql!r}"
    host.run("setsid sh -c %s >/dev/null 2>&1 < /dev/null &", command)
    for _attempt in range(100):
        held = f"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE {what}"  # noqa: S608
        if db.query(held) != "0":
            return
        time.sleep(0.1)
    raise AssertionError(f"the background session never took its lock ({what})")


def release_holders(db) -> None:
    db.query(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{HOLDER}'")  # noqa: S608


def test_a_migrate_lock_held_elsewhere_stops_the_run_with_a_clear_message(host, db):
    key = advisory_lock_key("demo")
    before = db.migrations()
    hold_in_background(
        host,
        db,
        f"SELECT pg_advisory_lock({key}); SELECT pg_sleep(50);",
        f"a.application_name = '{HOLDER}' AND l.locktype = 'advisory' AND l.granted",
    )
    try:
        run = run_step(
            "migrate.yml",
            {
                "migrate_release_path": release("v6"),
                "migrate_mode": "blue_green",
                "migrate_phase": "before_switch",
                "migrate_advisory_lock_timeout": 2,
            },
        )
    finally:
        release_holders(db)
    assert run.rc != 0
    message = "\n".join(run.failure_messages())
    assert "another migrate of demo holds the migrate lock" in message
    assert f"advisory lock {key}, held by PostgreSQL backend pid" in message
    assert "Nothing was applied; the schema is unchanged." in message
    assert db.migrations() == before


def test_a_blocked_alter_table_fails_fast_on_lock_timeout(host, db):
    before = db.snapshot()
    hold_in_background(
        host,
        db,
        "BEGIN; LOCK TABLE notes_note IN ACCESS SHARE MODE; SELECT pg_sleep(50);",
        f"a.application_name = '{HOLDER}' AND l.relation = 'notes_note'::regclass AND l.granted",
    )
    try:
        run = run_step(
            "migrate.yml",
            {
                "migrate_release_path": release("v6"),
                "migrate_mode": "blue_green",
                "migrate_phase": "before_switch",
                "migrate_lock_timeout": 1,
            },
        )
    finally:
        release_holders(db)
    assert run.rc != 0
    message = "\n".join(run.failure_messages())
    assert "notes.0004_note_headline waited more than 1 s for a table lock" in message
    assert "(lock_timeout)" in message
    assert run.seconds < 45, "the migration waited for the lock holder instead of failing fast"
    assert db.snapshot() == before


# --- a migration that fails half way, and the restore -------------------------


def test_v5_fails_half_way_and_the_restore_brings_back_exactly_the_backup(host, db, container):
    before = db.snapshot()
    backups_before = set(host.run("ls /srv/demo/backups").stdout.split())
    sampler = start_process_sampler(container)
    try:
        run = run_step("failed_deploy.yml", {"backup_when": "always"}, verbosity=3)
    finally:
        samples = stop_process_sampler(container, sampler)
    assert run.rc == 0, run.output[-5000:]
    # The migration really failed half way: 0004 was applied (and its column existed) before the restore.
    assert "Applied before the failure: notes.0004_note_rating" in run.output
    assert "demo v5: this data migration fails on purpose" in run.output
    assert "body,created_at,id,rating,tag,title" in run.output
    # The ledger recorded 0004 with it (same transaction), and the restore took both back: ledger and
    # django_migrations agree again (the ledger's rows are in the data compared below).
    assert "0004_note_rating:applied" in run.output
    assert "0004_note_rating:applied" not in ledger_events(db)
    # A new backup was taken, private, and the restore brought back exactly what it holds.
    new = set(host.run("ls /srv/demo/backups").stdout.split()) - backups_before
    assert len(new) == 1
    assert host.file(f"/srv/demo/backups/{new.pop()}").mode == 0o600
    after = db.snapshot()
    assert after["migrations"] == before["migrations"]
    assert after["schema"] == before["schema"]
    assert after["data"] == before["data"]
    assert "rating" not in db.columns()
    # Secrets appear neither in the -vvv output nor on any command line seen during the run.
    for secret in LEAK_MARKERS:
        assert secret not in run.output
        assert secret not in samples
    # The sampler did see the work: pg_dump (started by db_backup), the inspection and the migrate (the
    # release's python, named in ps).
    assert "pg_dump --format=custom" in samples
    assert "/.venv/bin/python - greenlight-migrate demo" in samples


def start_process_sampler(container: str) -> subprocess.Popen:
    """ps -eo args in a loop inside the container, until told to stop (at most about 3 minutes)."""
    script = (
        "rm -f /root/ps-sampler.stop; i=0; "
        "while [ ! -e /root/ps-sampler.stop ] && [ $i -lt 6000 ]; do ps -eo args; i=$((i+1)); sleep 0.02; done"
    )
    return subprocess.Popen(
        ["docker", "exec", container, "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def stop_process_sampler(container: str, sampler: subprocess.Popen) -> str:
    subprocess.run(["docker", "exec", container, "touch", "/root/ps-sampler.stop"], check=False, timeout=30)
    output, _stderr = sampler.communicate(timeout=60)
    return output


# --- expand before the switch, contract after it --------------------------------


def test_v6_applies_expand_before_the_switch_once_even_from_two_runs_and_contract_after_it(db):
    common = {"migrate_release_path": release("v6"), "migrate_mode": "blue_green"}
    # Two deploys migrate at the same time: one applies, the other finds nothing left (under the lock).
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda _n: run_step("migrate.yml", {**common, "migrate_phase": "before_switch"}), [1, 2]))
    assert [run.rc for run in runs] == [0, 0], runs
    applied = sorted((run.report()["migrate_applied"] for run in runs), key=len)
    assert applied == [[], ["notes.0004_note_headline", "notes.0005_backfill_headline"]]
    assert db.migrations().count("notes.0004_note_headline") == 1
    assert "title" in db.columns() and "headline" in db.columns()

    run = run_step("migrate.yml", {**common, "migrate_phase": "after_switch"})
    assert run.rc == 0, run
    assert run.report()["migrate_applied"] == ["notes.0006_remove_note_title"]
    assert "title" not in db.columns()

    run = run_step("migrate.yml", {**common, "migrate_phase": "after_switch"})
    assert run.rc == 0, run
    assert run.report()["migrate_applied"] == []
    assert run.changed() == 0
