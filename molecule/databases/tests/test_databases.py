"""Several databases, checked the way a user sees them: the site's answers, each database's tables and rows.

Tests run in file order and build on each other. The demo's multidb versions write an audit Event (app audit,
routed to the alias audit) for every note created; the alias replica gets no migration from the router.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources"))
from playbook_run import EPHEMERAL, demo_playbook, out, summary  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("all")

APP = "/srv/demo"
PASSWORD = "demo-db-password"
SECRET_KEY = "molecule-only-secret-key-with-enough-entropy-0123456789-abcdefghij"


def environment(app: str, audit_password: str = PASSWORD) -> dict[str, str]:
    """The application's environment: default and audit its own databases, replica the shared demo_replica."""
    return {
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": f"postgres://demo:{PASSWORD}@127.0.0.1:5432/{app}",
        "DJANGO_DATABASES": "audit,replica",
        "DATABASE_URL_AUDIT": f"postgres://demo:{audit_password}@127.0.0.1:5432/{app}_audit",
        "DATABASE_URL_REPLICA": f"postgres://demo:{PASSWORD}@127.0.0.1:5432/demo_replica",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,bg.local",
    }


def deploy(version: str, *, app: str = "demo", playbook: str = "deploy.yml", **environment_changes: str):
    extra = {"greenlight_app_name": app, "greenlight_environment": environment(app, **environment_changes)}
    if app != "demo":
        extra["greenlight_server_name"] = f"{app}.local"
        extra["greenlight_wsgi_application"] = "demo.wsgi:application"
    else:
        extra["traffic_default_server"] = True
    return demo_playbook(playbook, version, "-e", json.dumps(extra))


def sql(host, database: str, statement: str) -> str:
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {database} -c {json.dumps(statement)}")


def tables(host, database: str) -> list[str]:
    return sql(host, database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()


def applied(host, database: str, app: str) -> list[str]:
    return sql(host, database, f"SELECT name FROM django_migrations WHERE app = '{app}' ORDER BY name").split()


def columns(host, database: str, table: str) -> list[str]:
    return sql(
        host, database, f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY 1"
    ).split()


def served(host, path: str = "/version", site: str = "127.0.0.1") -> str:
    return host.check_output(f"curl -s --max-time 5 -H 'Host: {site}' http://127.0.0.1{path}").strip()


def create_note(host, title: str, site: str = "127.0.0.1") -> str:
    body = json.dumps({"title": title, "body": "b"})
    return host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 -H 'Host: {site}' -H 'Content-Type: application/json'"
        f" -d '{body}' http://127.0.0.1/notes/new"
    )


def by_alias(run_summary: dict) -> dict[str, dict]:
    return {entry["alias"]: entry for entry in run_summary.get("databases", [])}


def test_first_deploy_migrates_each_database_and_leaves_the_replica_alone(host):
    result = deploy("multidb")
    assert result.returncode == 0, out(result)
    report = summary(EPHEMERAL / "summary-demo.json")
    assert report["outcome"] == "deployed"
    databases = by_alias(report)
    assert list(databases) == ["default", "audit", "replica"], report
    assert "notes.0003_backfill_tag" in databases["default"]["migrations_applied"]
    assert "audit.0001_initial" in databases["audit"]["migrations_applied"]
    assert "routers allow no migration" in databases["replica"]["left_alone"]
    # Each database with something pending got its own private backup; the replica none.
    assert databases["default"]["backup_file"].endswith(".dump") and "@" not in databases["default"]["backup_file"]
    assert databases["audit"]["backup_file"].endswith("@audit.dump")
    for alias in ("default", "audit"):
        backup = host.file(databases[alias]["backup_file"])
        assert backup.is_file and backup.mode == 0o600
    # The audit table lives only in the audit database; the replica has no table at all.
    assert "audit_event" in tables(host, "demo_audit") and "notes_note" not in tables(host, "demo_audit")
    assert "notes_note" in tables(host, "demo") and "audit_event" not in tables(host, "demo")
    assert tables(host, "demo_replica") == []
    # The site writes to both: a note in demo, its event in demo_audit.
    assert served(host) == "multidb"
    assert create_note(host, "first") == "201"
    assert sql(host, "demo_audit", "SELECT count(*) FROM audit_event WHERE kind = 'note_created'") == "1"


def test_a_release_with_a_migration_on_each_database_migrates_both(host):
    result = deploy("multidb2")
    assert result.returncode == 0, out(result)
    databases = by_alias(summary(EPHEMERAL / "summary-demo.json"))
    # On default, audit.0002 is recorded and changes nothing (the router keeps audit off it).
    assert sorted(databases["default"]["migrations_applied"]) == ["audit.0002_event_source", "notes.0004_note_audited"]
    assert "audit.0002_event_source" in databases["audit"]["migrations_applied"]
    assert "audited" in columns(host, "demo", "notes_note")
    assert "source" in columns(host, "demo_audit", "audit_event")
    assert served(host) == "multidb2"


def test_a_failure_on_the_second_database_restores_both(host):
    untagged = sql(host, "demo", "SELECT count(*) FROM notes_note WHERE tag IS NULL")
    assert int(untagged) > 0
    result = deploy("multidb3")
    assert result.returncode != 0, out(result)
    report = summary(EPHEMERAL / "summary-demo.json")
    assert report["outcome"] == "failed"
    assert "(database audit)" in report["error"] and "the audit backfill failed" in report["error"], report["error"]
    restored = [step for step in report["recovery"] if step.startswith("database restored from ")]
    assert len(restored) == 2 and any(step.endswith("@audit.dump") for step in restored), report["recovery"]
    # default had applied notes.0005 (it tags the untagged notes) before audit failed: the restore took it back.
    assert "0005_tag_untagged" not in applied(host, "demo", "notes")
    assert sql(host, "demo", "SELECT count(*) FROM notes_note WHERE tag IS NULL") == untagged
    assert "0003_fill_source" not in applied(host, "demo_audit", "audit")
    assert served(host) == "multidb2"
    assert create_note(host, "after the failed deploy") == "201"


def test_an_alias_that_does_not_answer_is_refused_by_name_before_anything_changes(host):
    backups = host.check_output(f"ls {APP}/backups")
    result = deploy("multidb3", audit_password="not-the-password")
    assert result.returncode != 0, out(result)
    report = summary(EPHEMERAL / "summary-demo.json")
    assert report["outcome"] == "refused", report
    assert "database audit" in report["error"] and "password" in report["error"].lower(), report["error"]
    assert host.check_output(f"ls {APP}/backups") == backups
    assert served(host) == "multidb2"


def test_rollback_restores_each_database_from_its_own_backup(host):
    result = demo_playbook(
        "rollback.yml",
        "multidb2",
        "-e",
        json.dumps(
            {
                "greenlight_app_name": "demo",
                "greenlight_rollback_database": "restore",
                "greenlight_rollback_confirm": True,
            }
        ),
    )
    assert result.returncode == 0, out(result)
    report = summary(EPHEMERAL / "summary-demo.json")
    assert report["database"].count("restored from") == 1 and "@audit.dump" in report["database"], report
    # Both databases are back where they were before multidb2: no audited column, no source column.
    assert "0004_note_audited" not in applied(host, "demo", "notes")
    assert "audited" not in columns(host, "demo", "notes_note")
    assert "0002_event_source" not in applied(host, "demo_audit", "audit")
    assert "source" not in columns(host, "demo_audit", "audit_event")
    assert served(host) == "multidb"
    assert create_note(host, "after the rollback") == "201"


def test_blue_green_deploys_both_databases_of_another_application(host):
    result = deploy("multidb", app="bg", playbook="deploy_blue_green.yml")
    assert result.returncode == 0, out(result)
    report = summary(EPHEMERAL / "summary-bg.json")
    databases = by_alias(report)
    assert "notes.0001_initial" in databases["default"]["migrations_applied"], report
    assert "audit.0001_initial" in databases["audit"]["migrations_applied"], report
    assert "left_alone" in databases["replica"]
    assert "audit_event" in tables(host, "bg_audit") and "notes_note" in tables(host, "bg")
    assert served(host, site="bg.local") == "multidb"
    assert create_note(host, "bg", site="bg.local") == "201"
    assert sql(host, "bg_audit", "SELECT count(*) FROM audit_event") == "1"
