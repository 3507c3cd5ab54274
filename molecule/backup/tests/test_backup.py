"""greenlight.django.backup on PostgreSQL and SQLite: what a backup holds, when one is taken, the restore.

Converge backed up the v1 database (migrations of v2 were pending) and
migrated to v2; prepare kept a reference copy of the v1 database. The tests
run in file order.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "migrate" / "tests"))
from greenlight_steps import Database, run_step  # noqa: E402

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

BACKUPS = "/srv/demo/backups"
SQLITE_DB = "/srv/demo/shared/db/demo.sqlite3"
SQLITE_REFERENCE = "/root/demo_v1_reference.sqlite3"


def engine(host) -> str:
    return "sqlite" if host.backend.get_hostname().endswith("-sqlite") else "postgresql"


def backups(host) -> list[str]:
    """Backup files, oldest first, as 'mode user name'."""
    out = host.run(f"find {BACKUPS} -maxdepth 1 -type f -printf '%T@ %m %u %f\\n' | sort -n | cut -d' ' -f2-")
    return [line for line in out.stdout.splitlines() if line]


def names(host) -> list[str]:
    return [line.split()[-1] for line in backups(host)]


def sqlite_dump(host, path: str) -> str:
    result = host.run("sqlite3 %s .dump", path)
    assert result.rc == 0, result.stderr
    return result.stdout


def run_on(host, step: str, extra_vars: dict):
    return run_step(step, extra_vars, limit=host.backend.get_hostname())


# --- what converge left -------------------------------------------------------


def test_one_backup_was_taken_root_only_and_named_after_app_release_and_time(host):
    directory = host.file(BACKUPS)
    assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o700)
    files = backups(host)
    # check, converge and idempotence ran: one backup, from the run that found 0002/0003 pending.
    assert len(files) == 1, files
    mode, user, name = files[0].split()
    assert (mode, user) == ("600", "root")
    release_id = host.run("readlink /srv/demo/versions/v2").stdout.strip().rsplit("/", 1)[-1]
    extension = ".dump" if engine(host) == "postgresql" else ".sqlite3"
    assert name.startswith(f"demo-{release_id}-") and name.endswith(extension), name


def test_the_backup_restored_into_a_fresh_database_has_exactly_the_v1_rows(host):
    name = names(host)[0]
    if engine(host) == "postgresql":
        db = Database(host)
        host.run("runuser -u postgres -- dropdb --if-exists demo_fresh")
        created = host.run("runuser -u postgres -- createdb demo_fresh")
        assert created.rc == 0, created.stderr
        restored = host.run(
            f"runuser -u postgres -- pg_restore --no-owner --exit-on-error -d demo_fresh < {BACKUPS}/{name}"
        )
        assert restored.rc == 0, restored.stderr
        assert db.data("demo_fresh") == db.data("demo_v1_reference")
        assert db.schema("demo_fresh") == db.schema("demo_v1_reference")
        assert int(db.query("SELECT count(*) FROM notes_note", "demo_fresh")) == 40
        host.run("runuser -u postgres -- dropdb demo_fresh")
    else:
        assert host.run("sqlite3 %s 'PRAGMA integrity_check'", f"{BACKUPS}/{name}").stdout.strip() == "ok"
        assert sqlite_dump(host, f"{BACKUPS}/{name}") == sqlite_dump(host, SQLITE_REFERENCE)
        assert host.run("sqlite3 %s 'SELECT count(*) FROM notes_note'", f"{BACKUPS}/{name}").stdout.strip() == "40"


def test_converge_migrated_the_live_database_to_v2(host):
    if engine(host) == "postgresql":
        applied = Database(host).migrations()
    else:
        applied = host.run("sqlite3 %s \"SELECT app || '.' || name FROM django_migrations\"", SQLITE_DB).stdout
    assert "notes.0003_backfill_tag" in applied


# --- when a backup is taken -----------------------------------------------------


def test_nothing_pending_takes_no_backup(host):
    before = names(host)
    run = run_on(host, "backup.yml", {"backup_release_path": "/srv/demo/versions/v2"})
    assert run.rc == 0, run
    assert run.report() == {"backup_file": "", "backup_taken": False}
    assert run.changed() == 0
    assert names(host) == before


def test_a_caller_that_knows_migrations_are_pending_gets_a_backup_and_keep_n_removes_the_oldest(host):
    first = names(host)[0]
    taken = []
    for _attempt in range(2):
        run = run_on(host, "backup.yml", {"backup_pending": True, "backup_keep": 2})
        assert run.rc == 0, run
        report = run.report()
        assert report["backup_taken"] is True
        taken.append(report["backup_file"].rsplit("/", 1)[-1])
    assert names(host) == taken  # the two newest stay, the converge backup is gone
    assert first not in names(host)
    assert all(line.startswith("600 root ") for line in backups(host))


def test_backup_when_never_and_backup_pending_false_take_none(host):
    before = names(host)
    for extra in (
        {"backup_when": "never"},
        {"backup_pending": False},
        {"backup_when": "never", "backup_pending": True},
    ):
        run = run_on(host, "backup.yml", extra)
        assert run.rc == 0, run
        assert run.report()["backup_taken"] is False, extra
    assert names(host) == before


def test_verify_restore_checks_the_backup_in_a_scratch_database_and_drops_it(host):
    if engine(host) != "postgresql":
        pytest.skip("backup_verify_restore is a PostgreSQL option")
    run = run_on(host, "backup.yml", {"backup_when": "always", "backup_verify_restore": True})
    assert run.rc == 0, run
    assert run.report()["backup_taken"] is True
    leftovers = Database(host).query("SELECT count(*) FROM pg_database WHERE datname LIKE '%glverify%'", "postgres")
    assert leftovers == "0"


def test_backup_database_overrides_the_settings_and_a_failure_shows_no_password(host):
    if engine(host) != "postgresql":
        pytest.skip("a password is a PostgreSQL setting")
    before = names(host)
    wrong = "Wrong-Password-Leak-Check-91ab"
    run = run_on(host, "backup.yml", {"backup_when": "always", "backup_database": {"PASSWORD": wrong}})
    assert run.rc != 0
    message = "\n".join(run.failure_messages())
    assert "backup of demo failed" in message
    assert 'password authentication failed for user "demo"' in message
    assert wrong not in run.output
    assert names(host) == before
    assert host.run("ls -A %s | grep -c partial", BACKUPS).stdout.strip() == "0"
    assert host.run("find /tmp -name '*.json' -newer %s", f"{BACKUPS}/{before[-1]}").stdout.strip() == ""


# --- the restore entry point ----------------------------------------------------


def test_restore_brings_back_exactly_the_backup_and_drops_what_came_after(host):
    run = run_on(host, "backup.yml", {"backup_when": "always"})
    assert run.rc == 0, run
    backup = run.report()["backup_file"]
    if engine(host) == "postgresql":
        db = Database(host)
        before = db.snapshot()
        db.query("INSERT INTO notes_note (title, body, created_at, tag) VALUES ('late', 'late', now(), 'x')")
        db.query("CREATE TABLE notes_extra (id serial PRIMARY KEY, note text); ALTER TABLE notes_extra OWNER TO demo")
        db.query("ALTER TABLE notes_note ADD COLUMN extra int")
    else:
        before = sqlite_dump(host, backup)
        changed = host.run(
            "runuser -u demo -- sqlite3 %s %s",
            SQLITE_DB,
            "INSERT INTO notes_note (title, body, created_at, tag) VALUES ('late', 'late', '2024-01-01', 'x'); "
            "CREATE TABLE notes_extra (id integer PRIMARY KEY, note text);",
        )
        assert changed.rc == 0, changed.stderr

    run = run_on(host, "restore.yml", {"backup_restore_file": backup})
    assert run.rc == 0, run
    assert run.changed() >= 1

    if engine(host) == "postgresql":
        assert db.snapshot() == before
        assert "notes_extra" not in db.query("SELECT string_agg(tablename, ',') FROM pg_tables")
    else:
        assert sqlite_dump(host, SQLITE_DB) == before
        assert "notes_extra" not in sqlite_dump(host, SQLITE_DB)
        live = host.file(SQLITE_DB)
        assert (live.user, live.group) == ("demo", "demo")
        assert host.run("sqlite3 %s 'PRAGMA integrity_check'", SQLITE_DB).stdout.strip() == "ok"


def test_a_restore_that_fails_half_way_changes_nothing(host):
    if engine(host) != "postgresql":
        pytest.skip("the restore runs in one PostgreSQL transaction")
    db = Database(host)
    # A backup whose last statements (the privileges) name a role that is gone by the time of the restore:
    # the drops, the tables and the rows are restored first, then the GRANT fails.
    db.query("CREATE ROLE greenlight_reader")
    db.query("CREATE TABLE notes_shared (id int); ALTER TABLE notes_shared OWNER TO demo")
    db.query("GRANT SELECT ON notes_shared TO greenlight_reader")
    run = run_on(host, "backup.yml", {"backup_when": "always"})
    assert run.rc == 0, run
    backup = run.report()["backup_file"]
    db.query("REVOKE ALL ON notes_shared FROM greenlight_reader; DROP ROLE greenlight_reader")
    db.query("INSERT INTO notes_note (title, body, created_at, tag) VALUES ('after', 'after', now(), 'x')")
    db.query("CREATE TABLE notes_after (id int); ALTER TABLE notes_after OWNER TO demo")
    before = db.snapshot()
    try:
        run = run_on(host, "restore.yml", {"backup_restore_file": backup})
        assert run.rc != 0
        message = "\n".join(run.failure_messages())
        assert "rolled back, nothing changed" in message
        assert 'role "greenlight_reader" does not exist' in message
        assert db.snapshot() == before
    finally:
        db.query("DROP TABLE IF EXISTS notes_shared, notes_after")


def test_restore_refuses_a_file_that_is_not_a_backup_of_this_engine(host):
    wrong = "/srv/demo/backups/demo-x.sqlite3" if engine(host) == "postgresql" else "/srv/demo/backups/demo-x.dump"
    host.run("install -m 0600 /dev/null %s", wrong)
    try:
        run = run_on(host, "restore.yml", {"backup_restore_file": wrong})
    finally:
        host.run("rm -f %s", wrong)
    assert run.rc != 0
    assert "is not a" in "\n".join(run.failure_messages())
