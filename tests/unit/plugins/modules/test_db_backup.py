"""greenlight.django.db_backup: options, the payload call, results and messages.

Only ``run_payload`` is patched: these tests check exactly what the module would run (interpreter, source,
working directory, environment) and how it turns the payload's answer into a result or a failure. The payload
itself runs against real PostgreSQL and SQLite databases in the molecule scenario ``backup``.
"""

import json
import os
import pwd
import stat
from pathlib import Path
from unittest import mock

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _backup
from ansible_collections.greenlight.django.plugins.module_utils import _backup_payload as payload
from ansible_collections.greenlight.django.plugins.modules import db_backup
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)

USER = pwd.getpwuid(os.geteuid()).pw_name
PASSWORD = "Db-Pass-7f3a"
SECRET_KEY = "django-secret-key-19c2"


@pytest.fixture
def app(tmp_path):
    """A release (manage.py, .venv/bin/python) behind a current pointer, and shared/.env."""
    release = tmp_path / "releases" / "20260101T000000Z-abc"
    (release / ".venv" / "bin").mkdir(parents=True)
    python = release / ".venv" / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    (release / "manage.py").write_text("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'demo.settings')\n")
    (tmp_path / "current").symlink_to(release)
    (tmp_path / "shared").mkdir()
    env_file = tmp_path / "shared" / ".env"
    env_file.write_text(f"DATABASE_URL=postgres://demo:{PASSWORD}@db/demo\nSECRET_KEY={SECRET_KEY}\n")
    return tmp_path


def dump_args(app, **extra):
    args = {
        "project_path": str(app / "current"),
        "env_files": [str(app / "shared" / ".env")],
        "run_as": USER,
        "dir": str(app / "backups"),
        "app_name": "demo",
    }
    args.update(extra)
    return args


def answer(report, rc=None, stderr=""):
    """What the payload prints: some noise, then the marked result line."""
    line = f"{payload.RESULT_MARKER} {json.dumps(report)}"
    return (0 if report.get("ok") else 1) if rc is None else rc, f"noise\n{line}\n", stderr


def run(args, returned=(0, "", ""), check=False):
    """Run main(); return (kind, result, run_payload mock)."""
    args = dict(args, _ansible_check_mode=check)
    with set_module_args(args), patched_exits():
        with mock.patch.object(_backup, "run_payload", return_value=returned) as run_payload:
            try:
                db_backup.main()
            except AnsibleExitJson as exc:
                return "exit", exc.result, run_payload
            except AnsibleFailJson as exc:
                return "fail", exc.result, run_payload
    raise AssertionError("the module neither exited nor failed")


def test_a_dump_runs_the_payload_in_the_release_with_the_options_in_its_environment(app):
    release = (app / "current").resolve()
    written = app / "backups" / "demo-20260101T000000Z-abc-20260102T000000Z.dump"
    report = {"ok": True, "file": str(written), "engine": "postgresql", "database": "demo", "size": 2048,
              "toc_entries": 42, "verified_restore": True, "seconds": 1.5}  # fmt: skip
    args = dump_args(
        app,
        database="replica",
        database_overrides={"USER": "backup", "PASSWORD": "Override-Pass-88"},
        verify_restore=True,
        pg_dump_options=["--compress=1"],
        lock_wait_timeout=30,
        environment={"DJANGO_LOG_LEVEL": "WARNING"},
    )
    kind, result, run_payload = run(args, answer(report))
    assert kind == "exit", result
    (_module, python, source, cwd, env), kwargs = run_payload.call_args
    assert python == str(release / ".venv" / "bin" / "python")
    assert source == Path(payload.__file__).read_text()
    assert cwd == str(release)  # the pointer resolved: the release id names the file
    assert kwargs == {"timeout": None}
    # The application's environment from shared/.env, the settings from manage.py, the venv first on PATH.
    assert env["DATABASE_URL"] == f"postgres://demo:{PASSWORD}@db/demo"
    assert env["SECRET_KEY"] == SECRET_KEY and env["DJANGO_LOG_LEVEL"] == "WARNING"
    assert env["DJANGO_SETTINGS_MODULE"] == "demo.settings"
    assert env["PATH"].startswith(str(release / ".venv" / "bin") + ":")
    assert json.loads(env[payload.OPTIONS_ENV]) == {
        "command": "dump",
        "database": "replica",
        "database_overrides": {"USER": "backup", "PASSWORD": "Override-Pass-88"},
        "run_as": USER,
        "lock_wait_timeout": 30.0,
        "pg_bin_dir": None,
        "mysql_bin_dir": None,
        "dir": str(app / "backups"),
        "app_name": "demo",
        "verify_restore": True,
        "pg_dump_options": ["--compress=1"],
        "mysql_dump_options": [],
    }
    assert result["changed"] is True
    assert result["path"] == str(written)
    assert (result["size"], result["duration_seconds"], result["vendor"]) == (2048, 1.5, "postgresql")
    assert (result["database"], result["toc_entries"], result["verified_restore"]) == ("demo", 42, True)
    # The backup directory did not exist: the module created it, private.
    assert stat.S_IMODE((app / "backups").stat().st_mode) == 0o700


def test_keep_removes_the_oldest_backups_of_this_application_only_after_the_new_one_is_written(app):
    backups = app / "backups"
    backups.mkdir(mode=0o700)
    old = [backups / f"demo-20250{n}01T000000Z-abc-20250{n}01T000000Z.dump" for n in range(1, 5)]
    for age, path in enumerate(reversed(old)):
        path.write_text("x")
        os.utime(path, (1_700_000_000 - age * 1000,) * 2)
    other = backups / "other-20250101T000000Z-abc-20250101T000000Z.dump"
    other.write_text("x")
    os.utime(other, (1_600_000_000,) * 2)
    written = backups / "demo-20260101T000000Z-abc-20260102T000000Z.dump"
    written.write_text("x")  # what the payload wrote, the newest
    report = {"ok": True, "file": str(written), "engine": "postgresql", "database": "demo"}
    kind, result, _run_payload = run(dump_args(app, keep=3), answer(report))
    assert kind == "exit", result
    assert sorted(result["removed"]) == sorted(str(path) for path in old[:2])
    assert sorted(path.name for path in backups.iterdir()) == sorted(
        [written.name, old[2].name, old[3].name, other.name]
    )


def test_a_failed_dump_removes_no_older_backup(app):
    backups = app / "backups"
    backups.mkdir(mode=0o700)
    old = backups / "demo-20250101T000000Z-abc-20250101T000000Z.dump"
    old.write_text("x")
    kind, result, _run_payload = run(dump_args(app, keep=1), answer({"ok": False, "error": "pg_dump failed"}))
    assert kind == "fail" and "pg_dump failed" in result["msg"]
    assert old.exists()


def test_a_backup_directory_others_may_read_is_made_private(app):
    (app / "backups").mkdir(mode=0o755)
    (app / "backups").chmod(0o755)
    report = {"ok": True, "file": str(app / "backups" / "x.sqlite3"), "engine": "sqlite", "database": "/db", "size": 1}
    kind, result, _run_payload = run(dump_args(app), answer(report))
    assert kind == "exit", result
    assert stat.S_IMODE((app / "backups").stat().st_mode) == 0o700
    assert "toc_entries" not in result and result["verified_restore"] is False


def test_check_mode_says_what_it_would_do_and_changes_nothing(app):
    kind, result, run_payload = run(dump_args(app), check=True)
    assert kind == "exit", result
    assert run_payload.call_count == 0
    assert result["changed"] is True
    assert result["msg"] == f"Would back up the database default of {(app / 'current').resolve()} into {app}/backups"
    assert "path" not in result
    assert not (app / "backups").exists()


def test_a_failure_gives_the_payloads_message_without_any_secret(app):
    error = f"pg_dump of database demo failed (rc=1): password {PASSWORD} and {SECRET_KEY} rejected"
    kind, result, _run_payload = run(dump_args(app), answer({"ok": False, "error": error}))
    assert kind == "fail"
    assert result["msg"] == "The backup of demo failed: pg_dump of database demo failed (rc=1): password ******** " + (
        "and ******** rejected"
    )
    assert PASSWORD not in json.dumps(result) and SECRET_KEY not in json.dumps(result)


def test_a_database_override_is_masked_too(app):
    secret = "Only-In-Overrides-55"
    error = f"psql: connection with {secret} failed"
    args = dump_args(app, database_overrides={"PASSWORD": secret})
    kind, result, _run_payload = run(args, answer({"ok": False, "error": error}))
    assert kind == "fail"
    assert secret not in result["msg"] and "********" in result["msg"]


def test_an_interpreter_that_prints_no_result_is_named_with_its_last_error(app):
    stderr = f"Traceback ...\nImportError: no module named django ({SECRET_KEY})\n"
    kind, result, _run_payload = run(dump_args(app), (1, "", stderr))
    assert kind == "fail"
    assert "exited with rc=1 without a result" in result["msg"]
    assert "ImportError: no module named django" in result["msg"]
    assert SECRET_KEY not in result["msg"] and SECRET_KEY not in result["stderr"]


def test_a_timeout_names_the_option(app):
    kind, result, _run_payload = run(dump_args(app, timeout=5), (None, "", ""))
    assert kind == "fail"
    assert "stopped after 5 s (timeout)" in result["msg"]


def test_a_restore_passes_the_file_and_reports_the_schemas(app):
    backup = app / "demo-x.dump"
    backup.write_bytes(b"PGDMP")
    report = {"ok": True, "file": str(backup), "engine": "postgresql", "database": "demo", "schemas": ["public"],
              "seconds": 0.7}  # fmt: skip
    args = {
        "state": "restored",
        "project_path": str(app / "current"),
        "env_files": [str(app / "shared" / ".env")],
        "run_as": USER,
        "file": str(backup),
        "app_name": "demo",
    }
    kind, result, run_payload = run(args, answer(report))
    assert kind == "exit", result
    options = json.loads(run_payload.call_args[0][4][payload.OPTIONS_ENV])
    assert options["command"] == "restore" and options["file"] == str(backup)
    assert "dir" not in options
    assert result["changed"] is True
    assert (result["path"], result["size"], result["schemas"]) == (str(backup), 5, ["public"])
    assert result["msg"].startswith("Restored the database default of ")


def test_a_failed_restore_says_what_was_restored_for_whom(app):
    backup = app / "demo-x.dump"
    backup.write_bytes(b"PGDMP")
    args = {"state": "restored", "project_path": str(app / "current"), "run_as": USER, "file": str(backup),
            "app_name": "demo"}  # fmt: skip
    error = f"restoring {backup} into database demo (rolled back, nothing changed) failed (rc=3): boom"
    kind, result, _run_payload = run(args, answer({"ok": False, "error": error}))
    assert kind == "fail"
    assert result["msg"] == f"Restoring {backup} for demo failed: {error}"


@pytest.mark.parametrize(
    ("name", "create", "message"),
    [
        ("demo-x.tar", True, "is not a backup of this module (a .dump, .sql or .sqlite3 file)"),
        ("demo-missing.dump", False, "does not exist; set file to an existing backup"),
    ],
)
def test_a_restore_of_a_file_that_is_not_a_backup_fails_before_running_anything(app, name, create, message):
    if create:
        (app / name).write_text("x")
    args = {"state": "restored", "project_path": str(app / "current"), "run_as": USER, "file": str(app / name)}
    kind, result, run_payload = run(args)
    assert kind == "fail"
    assert message in result["msg"]
    assert run_payload.call_count == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"run_as": "no-such-user-here"}, "The user no-such-user-here does not exist"),
        ({"project_path": "/nonexistent/release"}, "project_path /nonexistent/release is not a directory"),
        ({"env_files": ["/nonexistent/.env"]}, "/nonexistent/.env"),
        ({"dir": None}, "state is dumped but all of the following are missing: dir"),
    ],
)
def test_bad_input_fails_before_any_change(app, change, message):
    args = dump_args(app, **change)
    args = {key: value for key, value in args.items() if value is not None}
    kind, result, run_payload = run(args)
    assert kind == "fail"
    assert message in result["msg"]
    assert run_payload.call_count == 0
    assert not (app / "backups").exists()


def test_a_release_without_a_virtualenv_names_the_option(app):
    (app / "current" / ".venv" / "bin" / "python").unlink()
    kind, result, _run_payload = run(dump_args(app))
    assert kind == "fail"
    assert "has no bin/python" in result["msg"]


class Recorded(Exception):
    """What AnsibleModule would print as the result, after its own masking of no_log values."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


def test_harmless_values_of_the_environment_do_not_mask_the_path_but_secrets_stay_hidden(app):
    # DEBUG=0 and NAME=demo would mask every 0 and every "demo" of the result if they were left to Ansible.
    with open(app / "shared" / ".env", "a") as env_file:
        env_file.write("DEBUG=0\nDB_NAME=demo\n")
    written = str(app / "backups" / "demo-20260101T000000Z-abc-20260102T000000Z.dump")
    report = {"ok": True, "file": written, "engine": "postgresql", "database": "demo", "size": 10, "seconds": 0.5}
    args = dump_args(app, database_overrides={"PASSWORD": "Override-Pass-88"}, environment={"EXTRA": "Extra-Secret-3"})

    def record(_module, result):
        raise Recorded(result)

    with set_module_args(args), mock.patch.object(_backup, "run_payload", return_value=answer(report)):
        with mock.patch.object(db_backup.AnsibleModule, "_record_module_result", record, create=True):
            with pytest.raises(Recorded) as raised:
                db_backup.main()
    result = raised.value.result
    assert result["path"] == written
    assert result["database"] == "demo"
    shown = json.dumps(result)
    for secret in (PASSWORD, SECRET_KEY, "Override-Pass-88", "Extra-Secret-3"):
        assert secret not in shown
    assert result["invocation"]["module_args"]["database_overrides"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_a_failure_masks_short_passwords_but_not_short_settings(app):
    with open(app / "shared" / ".env", "a") as env_file:
        env_file.write("DEBUG=0\nDB_PASSWORD=pq\nCACHE_URL=redis://u:zz@cache/0\n")
    error = "pg_dump of database demo failed (rc=1): connection to 127.0.0.1 port 5432 failed for password abc"
    error += " (pq, zz)"
    args = dump_args(app, database_overrides={"PASSWORD": "abc", "OPTIONS": {"sslpassword": "xy"}})

    def record(_module, result):
        raise Recorded(result)

    returned = answer({"ok": False, "error": error})
    with set_module_args(args), mock.patch.object(_backup, "run_payload", return_value=returned):
        with mock.patch.object(db_backup.AnsibleModule, "_record_module_result", record, create=True):
            with pytest.raises(Recorded) as raised:
                db_backup.main()
    result = raised.value.result
    assert result["failed"] is True
    assert "connection to 127.0.0.1 port 5432 failed for password ******** (********, ********)" in result["msg"]
    assert result["invocation"]["module_args"]["database_overrides"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert "abc" not in json.dumps(result)


def test_keep_rotates_each_alias_on_its_own(tmp_path):
    """keep=1: the newest backup of default stays, and the newest of audit; another app's files are not touched."""
    names = [
        "demo-r1-20260101T000000Z.dump",
        "demo-r1-20260101T000000Z@audit.dump",
        "demo-r2-20260102T000000Z.dump",
        "demo-r2-20260102T000000Z@audit.dump",
        "shop-r1-20260101T000000Z.dump",
    ]
    for age, name in enumerate(names):
        path = tmp_path / name
        path.write_text(name)
        os.utime(path, (1000 + age, 1000 + age))
    removed = _backup.rotate(str(tmp_path), "demo", 1)
    assert [Path(path).name for path in removed] == ["demo-r1-20260101T000000Z.dump"]
    removed = _backup.rotate(str(tmp_path), "demo", 1, "audit")
    assert [Path(path).name for path in removed] == ["demo-r1-20260101T000000Z@audit.dump"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[2:])
