"""The backup and migrate payloads against a real MariaDB server (Debian's package, in a container).

What a user would notice is asserted: the rows and tables the database holds after a restore, the columns a
half-failed migration left, the password absent from every command line the clients saw, the messages that
say what to do.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _app_runtime, _ledger, _migrate_payload
from conftest import REPO

pytestmark = pytest.mark.usefixtures("mariadb")

BACKUP_PAYLOAD = REPO / "plugins" / "module_utils" / "_backup_payload.py"
BUILDER = REPO / "examples" / "demo" / "build.py"

# A migration that fails at its third operation: on MariaDB the first two stay applied.
HALF_FAILING = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0003_backfill_tag")]
    operations = [
        migrations.AddField("note", "rating", models.IntegerField(null=True)),
        migrations.AddField("note", "score", models.IntegerField(null=True)),
        migrations.RunSQL("UPDATE notes_note_does_not_exist SET x = 1", migrations.RunSQL.noop),
    ]
"""


@pytest.fixture
def project(tmp_path, mariadb, mysql_python):
    """Demo v2 on a fresh MariaDB database: (project dir, environment, database name)."""
    directory = tmp_path / "v2"
    subprocess.run(["python3", str(BUILDER), "v2", str(directory)], check=True, capture_output=True)
    database = mariadb.create_database("demo")
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "demo.settings",
        "DJANGO_SECRET_KEY": "functional-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DATABASE_URL": mariadb.url(database),
    }
    return directory, env, database


def run_payload(python: Path, program: str, variable: str, options: dict, cwd: Path, env: dict) -> tuple[int, dict]:
    completed = subprocess.run(
        [str(python), "-"],
        input=program,
        cwd=cwd,
        env={**env, variable: json.dumps(options)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    last = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else ""
    assert last.startswith("GREENLIGHT-"), completed.stdout + completed.stderr
    return completed.returncode, json.loads(last.split(" ", 1)[1])


def migrate(python, directory, env, expect, **options) -> tuple[int, dict]:
    options = {"app_name": "demo", "expect": expect, **options}
    # As greenlight.django.migrate runs it: the payload with the migration ledger's module loaded first.
    program = _app_runtime.payload_program(_migrate_payload, _ledger)
    return run_payload(python, program, "GREENLIGHT_MIGRATE_OPTIONS", options, directory, env)


def backup(python, directory, env, **options) -> tuple[int, dict]:
    options = {"run_as": "root", "app_name": "demo", **options}
    return run_payload(python, BACKUP_PAYLOAD.read_text(), "GREENLIGHT_BACKUP_OPTIONS", options, directory, env)


def wait_for(mariadb, query: str, seconds: float = 30) -> None:
    """Wait (bounded) until the query returns a row that is not NULL or 0: a session of the test holds its lock."""
    deadline = time.monotonic() + seconds
    while mariadb.sql(query) in ("", "NULL", "0"):
        assert time.monotonic() < deadline, f"never true: {query}"
        time.sleep(0.2)


def end_sessions(mariadb, query: str) -> None:
    """End, on the server, the sessions whose ids the query returns (killing docker exec leaves them running)."""
    for session in mariadb.sql(query).split():
        if session.isdigit():
            subprocess.run(["docker", "exec", mariadb.container, "mariadb", "-e", f"KILL {session}"], check=False)


def full_plan(python: Path, directory: Path, env: dict) -> list[str]:
    """Every migration of the project not yet applied, in plan order (manage.py showmigrations --plan)."""
    shown = subprocess.run(
        [str(python), "manage.py", "showmigrations", "--plan"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split()[-1] for line in shown.stdout.splitlines() if line.startswith("[ ]")]


def note_columns(mariadb, database: str) -> list[str]:
    """The columns of the demo's notes table, as the server has them."""
    query = "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = "
    return mariadb.sql(query + "'notes_note'", database).split()


def recording_clients(directory: Path) -> tuple[Path, Path]:
    """A bin directory whose mariadb-dump and mariadb log their argv and environment, then run the real ones."""
    bin_dir, log = directory / "bin", directory / "clients.log"
    bin_dir.mkdir()
    for name in ("mariadb-dump", "mariadb"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\n{{ echo "$0 $*"; env; }} >> {log}\nexec /usr/bin/{name} "$@"\n')
        script.chmod(0o755)
    return bin_dir, log


def test_a_backup_is_consistent_private_verified_and_restores_exactly_the_backed_up_rows(
    tmp_path, mariadb, mysql_python, project
):
    directory, env, database = project
    rc, result = migrate(mysql_python, directory, env, full_plan(mysql_python, directory, env))
    assert rc == 0, result
    mariadb.sql("INSERT INTO notes_note (title, body, created_at, tag) VALUES ('kept', 'b', NOW(), 't')", database)
    bin_dir, log = recording_clients(tmp_path)
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)

    rc, dumped = backup(
        mysql_python, directory, env, command="dump", dir=str(backups), verify_restore=True, mysql_bin_dir=str(bin_dir)
    )

    assert rc == 0, dumped
    path = Path(dumped["file"])
    assert path.name.startswith("demo-v2-") and path.suffix == ".sql"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"'kept'" in path.read_bytes()
    assert [p.name for p in backups.iterdir()] == [path.name]  # no .partial left, nothing else
    seen = log.read_text()
    assert "--single-transaction" in seen and "--defaults-extra-file=" in seen
    assert mariadb.password not in seen  # neither on a command line nor in an environment
    assert "_glverify_" in seen  # the scratch database it loaded the dump into ...
    assert "_glverify_" not in mariadb.sql("SHOW DATABASES")  # ... is gone

    mariadb.sql("DELETE FROM notes_note; CREATE TABLE made_after_backup (id INT)", database)
    rc, restored = backup(mysql_python, directory, env, command="restore", file=str(path))

    assert rc == 0, restored
    assert mariadb.sql("SELECT title FROM notes_note", database) == "kept"
    assert "made_after_backup" not in mariadb.sql("SHOW TABLES", database)
    assert "notes.0003_backfill_tag" in mariadb.sql("SELECT CONCAT(app, '.', name) FROM django_migrations", database)


def test_a_wrong_password_a_silent_server_and_a_missing_client_each_say_what_to_do(
    tmp_path, mariadb, mysql_python, project
):
    directory, env, database = project
    backups = tmp_path / "backups"
    backups.mkdir()

    wrong = {**env, "DATABASE_URL": mariadb.url(database).replace(mariadb.password, "not-the-password")}
    rc, result = backup(mysql_python, directory, wrong, command="dump", dir=str(backups))
    assert rc == 1 and "refused the user or password" in result["error"], result
    assert "not-the-password" not in result["error"]

    silent = {**env, "DATABASE_URL": f"mysql://u:p@127.0.0.1:1/{database}"}
    rc, result = backup(mysql_python, directory, silent, command="dump", dir=str(backups))
    assert rc == 1 and "does not answer" in result["error"], result

    rc, result = backup(mysql_python, directory, env, command="dump", dir=str(backups), mysql_bin_dir=str(tmp_path))
    assert rc == 1 and "is not installed" in result["error"] and "mariadb-client" in result["error"], result
    assert list(backups.iterdir()) == []

    rc, result = migrate(mysql_python, directory, silent, full_plan(mysql_python, directory, env))
    assert rc == 1 and "does not answer" in result["error"] and "Nothing was applied" in result["error"], result


def test_a_migrate_waits_for_the_named_lock_another_migrate_holds_then_gives_up(mariadb, mysql_python, project):
    directory, env, database = project
    plan = full_plan(mysql_python, directory, env)
    assert "notes.0003_backfill_tag" in plan
    name = "greenlight-migrate-" + __import__("hashlib").sha256(b"greenlight.django.migrate:demo").hexdigest()[:32]
    holder = subprocess.Popen(
        ["docker", "exec", mariadb.container, "mariadb", "-e", f"SELECT GET_LOCK('{name}', 0), SLEEP(60)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(mariadb, f"SELECT IS_USED_LOCK('{name}')")
        started = time.monotonic()
        rc, result = migrate(mysql_python, directory, env, plan, advisory_lock_timeout=2)
        waited = time.monotonic() - started
    finally:
        end_sessions(mariadb, f"SELECT IS_USED_LOCK('{name}')")
        holder.kill()
        holder.wait()
    assert rc == 1 and "holds the migrate lock (MySQL named lock" in result["error"], result
    assert waited >= 2
    assert mariadb.sql("SHOW TABLES", database) == ""  # nothing applied

    rc, result = migrate(mysql_python, directory, env, plan)
    assert rc == 0 and result["applied"] == plan and result["lock"] == f"MySQL named lock {name}", result


def test_a_migration_blocked_by_a_long_transaction_fails_after_the_lock_timeout(mariadb, mysql_python, project):
    directory, env, database = project
    rc, result = migrate(mysql_python, directory, env, full_plan(mysql_python, directory, env))
    assert rc == 0, result
    (directory / "notes" / "migrations" / "0004_half.py").write_text(HALF_FAILING)
    reader = subprocess.Popen(
        [
            "docker",
            "exec",
            mariadb.container,
            "mariadb",
            database,
            "-e",
            "BEGIN; SELECT COUNT(*) FROM notes_note; SELECT SLEEP(60); COMMIT",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(mariadb, "SELECT COUNT(*) FROM information_schema.processlist WHERE info = 'SELECT SLEEP(60)'")
        rc, result = migrate(mysql_python, directory, env, ["notes.0004_half"], lock_timeout=1)
    finally:
        end_sessions(mariadb, "SELECT id FROM information_schema.processlist WHERE info = 'SELECT SLEEP(60)'")
        reader.kill()
        reader.wait()
    assert rc == 1 and "waited more than 1 s for a table lock" in result["error"], result
    columns = note_columns(mariadb, database)
    assert "rating" not in columns


def test_a_half_failed_migration_reports_exactly_the_operations_that_stay_applied(mariadb, mysql_python, project):
    directory, env, database = project
    rc, result = migrate(mysql_python, directory, env, full_plan(mysql_python, directory, env))
    assert rc == 0, result
    (directory / "notes" / "migrations" / "0004_half.py").write_text(HALF_FAILING)

    rc, result = migrate(mysql_python, directory, env, ["notes.0004_half"])

    assert rc == 1
    assert result["failed_migration"] == "notes.0004_half"
    assert result["partial"]["applied_operations"] == ["Add field rating to note", "Add field score to note"]
    assert result["partial"]["failed_operation"] == "Raw SQL operation"
    assert result["partial"]["rolled_back"] is False
    assert (
        "these operations were applied and stay: Add field rating to note; Add field score to note" in result["error"]
    )
    columns = note_columns(mariadb, database)
    assert "rating" in columns and "score" in columns  # what the report says is what the database holds
    assert "0004_half" not in mariadb.sql("SELECT name FROM django_migrations", database)


TWO_COLUMNS = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0003_backfill_tag")]
    operations = [
        migrations.AddField("note", "rating", models.IntegerField(null=True)),
        migrations.AddField("note", "score", models.IntegerField(null=True)),
    ]
"""
UNIQUE_TITLE = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0004_two_columns")]
    operations = [migrations.AlterField("note", "title", models.CharField(max_length=200, unique=True))]
"""


def migration_status(python: Path, directory: Path, env: dict, **args) -> tuple[int, dict]:
    """The migration_status module, run as Ansible runs it (a JSON file of arguments)."""
    arguments = {
        "project_path": str(directory),
        "python": str(python),
        "environment": {key: value for key, value in env.items() if key != "PATH"},
        **args,
    }
    arguments_file = directory / "module-args.json"
    arguments_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments}))
    completed = subprocess.run(
        [sys.executable, str(REPO / "plugins" / "modules" / "migration_status.py"), str(arguments_file)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "build" / "collections")},
        timeout=300,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout)


def test_migration_status_marks_mixed_migrations_risky_and_checks_the_rows_on_mariadb(mariadb, mysql_python, project):
    directory, env, database = project
    rc, result = migrate(mysql_python, directory, env, full_plan(mysql_python, directory, env))
    assert rc == 0, result
    mariadb.sql(
        "INSERT INTO notes_note (title, body, created_at) VALUES ('same', '', NOW()), ('same', '', NOW()), "
        "('other', '', NOW())",
        database,
    )
    (directory / "notes" / "migrations" / "0004_two_columns.py").write_text(TWO_COLUMNS)
    (directory / "notes" / "migrations" / "0005_unique_title.py").write_text(UNIQUE_TITLE)

    rc, status = migration_status(mysql_python, directory, env, fail_on=["risky", "data_violations"])

    assert rc == 1 and status["failed"] is True
    assert status["database"]["vendor"] == "mysql"
    assert status["risky"] == ["notes.0004_two_columns"]
    pending = {item["name"]: item for item in status["pending"]}
    assert pending["0004_two_columns"]["risky"].startswith("mixes 2 schema operations in one migration")
    assert pending["0005_unique_title"]["risky"] is None
    assert len(status["data_violations"]) == 1 and "2 rows" in status["data_violations"][0], status
    assert "notes.0004_two_columns mixes 2 schema operations" in status["msg"]
    assert "DDL is not transactional on MySQL/MariaDB" in status["msg"]
    # The inspection only read the database.
    assert "rating" not in note_columns(mariadb, database)
    assert "0004_two_columns" not in mariadb.sql("SELECT name FROM django_migrations", database)
