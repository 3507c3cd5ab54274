"""The payload of greenlight.django.db_backup: its options, libpq environment, file names and the SQLite copy.

The SQLite functions run for real on files in a temporary directory; PostgreSQL runs in the molecule scenario
``backup``.
"""

import ast
import json
import os
import pwd
import sqlite3
import stat
import sys
import time
from types import SimpleNamespace

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _backup_payload as payload

ENTRY = pwd.getpwuid(os.geteuid())


def test_the_payload_imports_only_the_standard_library_and_parses_as_python_3_8():
    source = open(payload.__file__, encoding="utf-8").read()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert "ansible" not in imported and "ansible_collections" not in imported
    assert imported - {"django"} <= set(sys.stdlib_module_names) | {"__future__"}


def test_options_come_from_the_environment_variable_which_is_removed():
    environ = {payload.OPTIONS_ENV: json.dumps({"command": "dump", "run_as": "demo", "dir": "/b", "app_name": "demo",
                                                "lock_wait_timeout": 5, "pg_bin_dir": None})}  # fmt: skip
    options = payload.read_options(environ)
    assert payload.OPTIONS_ENV not in environ
    assert (options.command, options.run_as, options.dir, options.app_name) == ("dump", "demo", "/b", "demo")
    assert options.lock_wait_timeout == 5.0 and options.database == "default"
    assert options.pg_dump_options == [] and options.verify_restore is False and options.pg_bin_dir is None


@pytest.mark.parametrize("value", [None, "not json", json.dumps({"command": "copy", "run_as": "demo"}), "[]"])
def test_missing_or_bad_options_are_an_error_not_a_traceback(value):
    environ = {} if value is None else {payload.OPTIONS_ENV: value}
    with pytest.raises(payload.BackupError, match=payload.OPTIONS_ENV):
        payload.read_options(environ)


def test_main_prints_the_marked_result_line_last(monkeypatch, capsys):
    monkeypatch.delenv(payload.OPTIONS_ENV, raising=False)
    assert payload.main() == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    marker, _space, body = last.partition(" ")
    assert marker == payload.RESULT_MARKER
    assert json.loads(body)["ok"] is False


def test_libpq_environment_has_the_connection_and_nothing_of_the_callers_environment(monkeypatch):
    monkeypatch.setenv("LEAKY_VARIABLE", "x")
    settings = {"HOST": "db", "PORT": 5433, "NAME": "demo", "USER": "demo", "PASSWORD": "pw",
                "OPTIONS": {"sslmode": "require", "connect_timeout": 5, "service": ""}}  # fmt: skip
    env = payload.libpq_environment(settings, ENTRY)
    assert env["PGHOST"] == "db" and env["PGPORT"] == "5433" and env["PGDATABASE"] == "demo"
    assert env["PGUSER"] == "demo" and env["PGPASSWORD"] == "pw"
    assert env["PGSSLMODE"] == "require" and env["PGCONNECT_TIMEOUT"] == "5"
    assert "PGSERVICE" not in env and "LEAKY_VARIABLE" not in env
    assert env["HOME"] == ENTRY.pw_dir and env["PGAPPNAME"] == "greenlight-backup"
    assert payload.libpq_environment({}, ENTRY)["PGDATABASE"] == "postgres"


def test_a_failed_client_is_reported_with_its_last_lines_and_no_password():
    completed = SimpleNamespace(returncode=1, stderr=b"one\n\ntwo pw-123\nthree\n")
    error = payload.failure("pg_dump of database demo", completed, ["pw-123"])
    assert str(error) == "pg_dump of database demo failed (rc=1): one / two ******** / three"


def test_the_schemas_of_a_restore_come_from_the_relations_of_the_table_of_contents():
    toc = [
        "215; 1259 16386 TABLE public notes_note demo",
        "216; 1259 16390 SEQUENCE shop item_id_seq demo",
        "3350; 0 16386 TABLE DATA public notes_note demo",
        "3357; 0 0 SEQUENCE SET public notes_note_id_seq demo",
        "3201; 2606 16398 CONSTRAINT public notes_note notes_note_pkey demo",
    ]
    schemas = sorted({match.group(1) for match in map(payload.TOC_RELATION.match, toc) if match})
    assert schemas == ["public", "shop"]
    assert payload.sql_text_array(["public", "it's"]) == "ARRAY['public', 'it''s']::text[]"


def test_a_new_backup_is_named_after_app_release_and_time_and_never_overwrites(tmp_path, monkeypatch):
    release = tmp_path / "20260101T000000Z-abc"
    release.mkdir()
    monkeypatch.chdir(release)
    prefix = payload.backup_prefix(SimpleNamespace(app_name="demo"))
    assert prefix == "demo-20260101T000000Z-abc"
    first = payload.new_backup_path(str(tmp_path), prefix, ".dump")
    stamp = time.strftime("%Y%m%dT", time.gmtime())
    assert os.path.basename(first).startswith(f"demo-20260101T000000Z-abc-{stamp}") and first.endswith(".dump")
    open(first + ".partial", "w").close()
    second = payload.new_backup_path(str(tmp_path), prefix, ".dump")
    assert second != first and second.endswith(f"-{os.getpid()}.dump")


def test_the_backup_of_another_alias_carries_it_before_the_extension(tmp_path):
    """Several databases of one release backed up in one second get a file each."""
    default = payload.new_backup_path(str(tmp_path), "demo-r1", ".dump", "default")
    audit = payload.new_backup_path(str(tmp_path), "demo-r1", ".dump", "audit")
    assert "@" not in default and default.endswith("Z.dump")
    assert audit.endswith("Z@audit.dump") and audit[: -len("@audit.dump")] == default[: -len(".dump")]


def sqlite_database(path, rows):
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE IF NOT EXISTS note (id integer PRIMARY KEY, title text)")
    connection.executemany("INSERT INTO note (title) VALUES (?)", [(row,) for row in rows])
    connection.commit()
    connection.close()


def titles(path):
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute("SELECT title FROM note ORDER BY id")]
    finally:
        connection.close()


def sqlite_backup(tmp_path, monkeypatch, database) -> dict:
    """sqlite_dump of `database` into tmp_path/backups, from a release directory, under the module's umask."""
    release = tmp_path / "rel-1"
    release.mkdir()
    monkeypatch.chdir(release)
    backups = tmp_path / "backups"
    backups.mkdir()
    args = SimpleNamespace(app_name="demo", dir=str(backups), lock_wait_timeout=5.0)
    old_umask = os.umask(0o077)
    try:
        return payload.sqlite_dump(args, {"NAME": str(database)})
    finally:
        os.umask(old_umask)


def test_sqlite_dump_then_restore_brings_back_exactly_the_backed_up_rows(tmp_path, monkeypatch):
    backups, database = tmp_path / "backups", tmp_path / "db.sqlite3"
    sqlite_database(database, ["a", "b"])
    dumped = sqlite_backup(tmp_path, monkeypatch, database)
    assert dumped["engine"] == "sqlite" and dumped["database"] == str(database)
    assert os.listdir(backups) == [os.path.basename(dumped["file"])]  # no .partial left
    assert stat.S_IMODE(os.stat(dumped["file"]).st_mode) == 0o600
    assert dumped["size"] == os.path.getsize(dumped["file"])
    assert titles(dumped["file"]) == ["a", "b"]

    sqlite_database(database, ["late"])
    restored = payload.sqlite_restore(
        SimpleNamespace(file=dumped["file"], lock_wait_timeout=5.0), {"NAME": str(database)}
    )
    assert restored["database"] == str(database)
    assert titles(database) == ["a", "b"]


def test_a_sqlite_database_not_created_yet_backs_up_as_an_empty_one_that_restores_to_no_tables(tmp_path, monkeypatch):
    """A first deploy on SQLite: the file appears at the first migrate. The backup taken before it is an empty
    database, and restoring it after a failed migrate leaves no table behind."""
    database = tmp_path / "db.sqlite3"
    dumped = sqlite_backup(tmp_path, monkeypatch, database)
    assert dumped["empty_database"] is True and not database.exists()
    assert stat.S_IMODE(os.stat(dumped["file"]).st_mode) == 0o600
    sqlite_database(database, ["half", "migrated"])
    payload.sqlite_restore(SimpleNamespace(file=dumped["file"], lock_wait_timeout=5.0), {"NAME": str(database)})
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []
    finally:
        connection.close()


def test_a_sqlite_database_in_a_directory_that_does_not_exist_is_refused_with_the_fix(tmp_path):
    args = SimpleNamespace(app_name="demo", dir=str(tmp_path), lock_wait_timeout=5.0)
    with pytest.raises(payload.BackupError, match="nor its directory: fix NAME in DATABASES"):
        payload.sqlite_dump(args, {"NAME": str(tmp_path / "missing" / "db.sqlite3")})


@pytest.mark.parametrize("name", ["", ":memory:", "file:memdb?mode=memory"])
def test_sqlite_databases_that_are_not_files_are_refused(name):
    with pytest.raises(payload.BackupError, match="is not a file this role can back up"):
        payload.sqlite_path({"NAME": name})


def test_other_engines_are_refused_naming_the_engine_and_the_supported_ones(monkeypatch):
    engine = "django.db.backends.oracle"
    monkeypatch.setattr(payload, "database_settings", lambda alias, overrides: ("oracle", {"ENGINE": engine}))
    args = SimpleNamespace(database="default", database_overrides={}, command="dump")
    with pytest.raises(payload.BackupError) as raised:
        payload.run(args)
    assert f"{engine} (oracle) is not supported" in str(raised.value)
    assert "PostgreSQL, MySQL/MariaDB and SQLite" in str(raised.value)
    assert "Nothing was changed" in str(raised.value)


def test_the_mysql_option_file_is_private_quoted_and_the_only_place_of_the_password(tmp_path, monkeypatch):
    monkeypatch.setattr(payload.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(payload.os, "chown", lambda *args: None)
    password = 'p"a\\ss'
    assert payload.option_value(password) == '"p\\"a\\\\ss"'
    settings = {"NAME": "shop", "USER": "app", "PASSWORD": password, "HOST": "db.internal", "PORT": "3307"}
    options = payload.MysqlOptions(settings, ENTRY)
    try:
        with open(options.path, encoding="utf-8") as handle:
            text = handle.read()
        assert stat.S_IMODE(os.stat(options.path).st_mode) == 0o600
        assert f"password={payload.option_value(password)}" in text
        assert 'host="db.internal"' in text and "port=3307" in text
        assert options.arguments() == [f"--defaults-extra-file={options.path}"]
    finally:
        options.remove()
    assert not os.path.exists(options.directory)
