"""The deploy playbooks on MariaDB, checked the way a user sees it.

Tests run in file order and build on each other: v1 (converge) serves from MariaDB; v2 deploys with a
backup (a 0600 .sql file) and its migrations; v5 fails half way - on MariaDB its first migration stays
applied until the recovery restores the backup - and v2 keeps serving; a rollback reverses v2's migrations
and serves v1; last, v2 deploys blue-green.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
from playbook_run import demo_playbook, out  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")

PROJECT = Path(__file__).resolve().parents[3]
APP = "/srv/demo"
SQL = "mariadb -N -B demo -e"


def deploy(version: str, *extra: str, playbook: str = "deploy.yml"):
    """Run the playbook from the checkout against the scenario's container."""
    return demo_playbook(playbook, version, *extra)


def served_version(host) -> str:
    return host.check_output("curl -s --max-time 5 http://127.0.0.1/version").strip()


def sql(host, statement: str) -> str:
    return host.check_output(f'{SQL} "{statement}"')


def applied(host) -> str:
    return sql(host, "SELECT GROUP_CONCAT(name ORDER BY name) FROM django_migrations WHERE app = 'notes'")


def note_columns(host) -> list[str]:
    return sql(
        host,
        "SELECT GROUP_CONCAT(column_name ORDER BY column_name) FROM information_schema.columns"
        " WHERE table_schema = 'demo' AND table_name = 'notes_note'",
    ).split(",")


def data_checksum(host) -> str:
    """Rows, columns and applied migrations of the demo database: what a failed deploy must give back."""
    rows = sql(host, "CHECKSUM TABLE notes_note")
    return f"{rows}/{note_columns(host)}/{applied(host)}"


def write_note(host, title: str) -> None:
    sql(host, f"INSERT INTO notes_note (title, body, created_at) VALUES ('{title}', 'b', NOW())")


def test_v1_serves_from_mariadb_through_the_mysqlclient_driver(host):
    assert served_version(host) == "v1"
    assert host.check_output("curl -s http://127.0.0.1/healthz").strip() == "ok v1"
    assert applied(host) == "0001_initial"
    freeze = host.check_output(f"{APP}/current/.venv/bin/python -m pip list --format=freeze").split()
    assert "mysqlclient==2.2.7" in freeze


def test_v2_is_backed_up_privately_then_migrated(host):
    write_note(host, "before-v2")
    result = deploy("v2")
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v2"
    assert applied(host) == "0001_initial,0002_note_tag,0003_backfill_tag"
    assert "tag" in note_columns(host)
    backups = host.check_output(f"ls {APP}/backups").split()
    dumps = [name for name in backups if name.endswith(".sql")]
    assert dumps, backups
    dump = host.file(f"{APP}/backups/{dumps[-1]}")
    assert dump.mode == 0o600 and dump.user == "root"
    assert "before-v2" in dump.content_string and "-- Dump completed" in dump.content_string
    assert "Leak-Check-mariadb-db-password" not in dump.content_string


def test_v5_fails_half_way_and_the_backup_brings_back_the_schema(host):
    write_note(host, "before-v5")
    before = data_checksum(host)
    result = deploy("v5")
    assert result.returncode != 0
    text = out(result)
    assert "database restored from" in text, text
    # v5's 0004 (adds rating) was applied before 0005 failed: only the restore removes it on MariaDB.
    assert "rating" not in note_columns(host)
    assert data_checksum(host) == before
    assert served_version(host) == "v2"
    assert host.check_output("curl -s -o /dev/null -w %{http_code} http://127.0.0.1/healthz") == "200"


def test_rollback_reverses_v2s_migrations_and_serves_v1(host):
    rows = sql(host, "SELECT COUNT(*) FROM notes_note")
    result = deploy(
        "v2",
        "-e",
        "greenlight_rollback_database=reverse",
        "-e",
        "greenlight_rollback_confirm=true",
        playbook="rollback.yml",
    )
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v1"
    assert applied(host) == "0001_initial"
    assert "tag" not in note_columns(host)
    assert sql(host, "SELECT COUNT(*) FROM notes_note") == rows


def test_v2_deploys_blue_green_on_mariadb(host):
    result = deploy("v2", playbook="deploy_blue_green.yml")
    assert result.returncode == 0, out(result)
    assert served_version(host) == "v2"
    assert applied(host) == "0001_initial,0002_note_tag,0003_backfill_tag"
