"""The migrate payload's small functions: its options, lock key, locks, plans and messages.

Django is not installed here: the plans are computed from small stand-ins for Django's loader and executor
(only what the functions read). Real migrations run in molecule/migrate.
"""

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _migrate_payload as payload


def options(**values):
    return payload.read_options(json.dumps(dict({"app_name": "demo"}, **values)))


def test_options_come_from_json_with_the_runners_defaults():
    read = options(expect=["notes.0002_note_tag"])
    assert (read.app_name, read.phase, read.expect, read.unapply, read.dry_run, read.database) == (
        "demo",
        "all",
        ["notes.0002_note_tag"],
        [],
        False,
        "default",
    )
    assert (read.lock_timeout, read.statement_timeout, read.advisory_lock_timeout) == (5.0, 0.0, 60.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "the options in GREENLIGHT_MIGRATE_OPTIONS are not JSON"),
        ("[]", "the options in GREENLIGHT_MIGRATE_OPTIONS are not a JSON object"),
        ("{}", "the options in GREENLIGHT_MIGRATE_OPTIONS name no app_name"),
        ('{"app_name": "demo", "phase": "sideways"}', "the phase 'sideways' is not one of all, before_switch"),
        ('{"app_name": "demo", "lock_timeout": "soon"}', "the options in GREENLIGHT_MIGRATE_OPTIONS are not valid"),
    ],
)
def test_bad_options_are_refused(text, message):
    with pytest.raises(payload.MigrateError, match=message):
        payload.read_options(text)


def test_the_lock_key_is_the_same_on_every_host_and_a_signed_64_bit_integer():
    key = payload.advisory_lock_key("demo")
    assert key == payload.advisory_lock_key("demo") != payload.advisory_lock_key("demo2")
    # As documented (docs/roles/migrate.md): the first 8 bytes of sha256("greenlight.django.migrate:<app>").
    assert key == int.from_bytes(hashlib.sha256(b"greenlight.django.migrate:demo").digest()[:8], "big", signed=True)
    assert -(2**63) <= key < 2**63


def test_the_settings_module_comes_from_the_environment_then_manage_py(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    assert payload.settings_module(str(tmp_path)) is None
    (tmp_path / "manage.py").write_text('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")\n')
    assert payload.settings_module(str(tmp_path)) == "demo.settings"
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "other.settings")
    assert payload.settings_module(str(tmp_path)) == "other.settings"


def test_a_sqlite_database_held_by_another_migrate_is_refused_after_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(payload, "POLL_SECONDS", 0.01)
    database = tmp_path / "db.sqlite3"
    with payload.sqlite_lock(str(database), 0.1) as name:
        assert name == "none (the SQLite database does not exist yet)"
    database.write_bytes(b"")
    with open(database, "rb") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(payload.MigrateError) as refused, payload.sqlite_lock(str(database), 0.05):
            pass
    assert str(refused.value).startswith(f"another migrate holds the migrate lock (flock on {database})")
    assert "raise migrate_advisory_lock_timeout" in str(refused.value)
    with payload.sqlite_lock(str(database), 0.05) as name:
        assert name == f"flock on {database}"


class Graph:
    def __init__(self, nodes, leaves=()):
        self.nodes = set(nodes)
        self.leaves = list(leaves)

    def leaf_nodes(self):
        return self.leaves

    def forwards_plan(self, key):
        return [node for node in sorted(self.nodes) if node[0] == key[0] and node[1] <= key[1]]


def migration(app, name, *reversible):
    operations = [
        SimpleNamespace(reversible=flag, describe=lambda n=number: f"operation {n}")
        for number, flag in enumerate(reversible)
    ]
    return SimpleNamespace(app_label=app, name=name, operations=operations)


def executor(plan, nodes=(), leaves=(), applied=(), conflicts=None):
    loader = SimpleNamespace(
        graph=Graph(nodes, leaves),
        applied_migrations=dict.fromkeys(applied),
        check_consistent_history=lambda connection: None,
        detect_conflicts=lambda: conflicts or {},
    )
    return SimpleNamespace(loader=loader, connection=None, migration_plan=lambda targets: plan)


def test_before_switch_migrates_each_app_to_its_last_expected_migration():
    loader = SimpleNamespace(graph=Graph((), leaves=[("notes", "0006"), ("tags", "0002")]))
    expected = ["notes.0004_a", "tags.0001_b", "notes.0005_c"]
    assert payload.targets_for("before_switch", expected, loader) == [("notes", "0005_c"), ("tags", "0001_b")]
    assert payload.targets_for("after_switch", expected, loader) == [("notes", "0006"), ("tags", "0002")]


def test_the_plan_under_the_lock_is_what_was_inspected_or_it_is_refused():
    plan = [(migration("notes", "0004_a"), False), (migration("notes", "0005_b"), False)]
    assert payload.checked_plan(executor(plan), [], ["notes.0004_a", "notes.0005_b"]) == [
        "notes.0004_a",
        "notes.0005_b",
    ]
    with pytest.raises(payload.MigrateError, match="notes.0005_b would be applied but were not inspected") as refused:
        payload.checked_plan(executor(plan), [], ["notes.0004_a"])
    assert "(inspected: notes.0004_a). Run the role again" in str(refused.value)
    with pytest.raises(payload.MigrateError, match="the plan would unapply notes.0004_a: the database is ahead"):
        payload.checked_plan(executor([(migration("notes", "0004_a"), True)]), [], [])
    with pytest.raises(payload.MigrateError, match=r"conflicting migrations \(notes: 0004_a, 0004_b\); merge them"):
        payload.checked_plan(executor([], conflicts={"notes": ["0004_a", "0004_b"]}), [], [])


def test_each_app_goes_back_to_its_newest_migration_that_stays():
    nodes = [("notes", "0001_initial"), ("notes", "0002_tag"), ("notes", "0003_rating"), ("extra", "0001_initial")]
    loader = executor([], nodes=nodes, applied=nodes).loader
    unapply = ["notes.0003_rating", "extra.0001_initial"]
    assert payload.reverse_targets(loader, unapply) == [("extra", None), ("notes", "0002_tag")]


def test_a_backward_plan_is_refused_unless_exactly_those_and_all_reversible():
    nodes = [("notes", "0003_rating"), ("notes", "0004_drop")]
    reversible = [(migration("notes", "0004_drop", True), True), (migration("notes", "0003_rating", True, True), True)]
    unapply = ["notes.0003_rating", "notes.0004_drop"]
    assert payload.checked_reverse_plan(executor(reversible, nodes=nodes), [], unapply) == [
        "notes.0004_drop",
        "notes.0003_rating",
    ]
    with pytest.raises(payload.MigrateError, match="notes.0009_new cannot be unapplied with this release's code"):
        payload.checked_reverse_plan(executor(reversible, nodes=nodes), [], ["notes.0009_new"])
    with pytest.raises(payload.MigrateError, match="would unapply notes.0004_drop, notes.0003_rating; nothing was"):
        payload.checked_reverse_plan(executor(reversible, nodes=nodes), [], ["notes.0004_drop"])
    irreversible = [(migration("notes", "0004_drop", True, False), True), (migration("notes", "0003_rating"), True)]
    with pytest.raises(payload.MigrateError) as refused:
        payload.checked_reverse_plan(executor(irreversible, nodes=nodes), [], unapply)
    assert str(refused.value).startswith("these operations cannot be reversed: notes.0004_drop (operation 1);")
    assert "greenlight_rollback_database=keep" in str(refused.value)


class DatabaseError(Exception):
    pass


def wrapped(sqlstate):
    """A Django DatabaseError whose cause is the driver's error carrying the SQLSTATE (psycopg 3)."""
    driver = DatabaseError("canceling statement")
    driver.sqlstate = sqlstate
    error = DatabaseError("canceling statement")
    error.__cause__ = driver
    return error


def test_timeouts_are_explained_with_what_to_do():
    args = options(lock_timeout=1, statement_timeout=30)
    result = {"failed_migration": "notes.0004_note_headline"}
    assert payload.explain(wrapped("55P03"), result, args).startswith(
        "notes.0004_note_headline waited more than 1 s for a table lock that another session holds"
    )
    assert "ran longer than migrate_statement_timeout (30 s)" in payload.explain(wrapped("57014"), result, args)
    assert payload.explain(RuntimeError("boom"), {}, args) == "a migration failed: RuntimeError: boom"


def test_mysql_errors_and_half_applied_migrations_are_explained():
    args = options(lock_timeout=2, statement_timeout=30)
    result = {"failed_migration": "notes.0004_half"}
    assert "waited more than 2 s for a table lock" in payload.explain(
        RuntimeError(1205, "Lock wait timeout exceeded"), result, args
    )
    assert "ran longer than migrate_statement_timeout" in payload.explain(RuntimeError(1969, "timeout"), result, args)
    result["partial"] = {
        "migration": "notes.0004_half",
        "applied_operations": ["Add field rating to note"],
        "failed_operation": "Raw SQL operation",
        "rolled_back": False,
    }
    message = payload.explain(RuntimeError(1146, "no table"), result, args)
    assert "these operations were applied and stay: Add field rating to note; it failed at: Raw SQL operation" in (
        message
    )
    result["partial"]["rolled_back"] = True
    assert "stay" not in payload.explain(RuntimeError(1146, "no table"), result, args)


def test_the_mysql_lock_name_fits_get_lock_and_is_the_same_on_every_host():
    name = payload.mysql_lock_name("demo")
    assert name == payload.mysql_lock_name("demo") != payload.mysql_lock_name("shop")
    assert name.startswith("greenlight-migrate-") and len(name) <= 64


def run_payload_source(env):
    return subprocess.run(
        [sys.executable, "-"],
        input=open(payload.__file__).read(),
        env=dict(env, PATH=os.environ["PATH"]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_payload_reads_its_options_from_the_environment_and_reports_on_its_last_line():
    done = run_payload_source({payload.OPTIONS_ENV: '{"phase": "all"}'})
    assert done.returncode == 1
    marker, _space, text = done.stdout.strip().splitlines()[-1].partition(" ")
    assert marker == payload.RESULT_MARKER
    assert json.loads(text) == {
        "ok": False,
        "phase": None,
        "plan": [],
        "applied": [],
        "unapplied": [],
        "failed_migration": None,
        "error": "the options in GREENLIGHT_MIGRATE_OPTIONS name no app_name",
    }
