"""greenlight.django.migrate: the payload's process, options and environment; results and messages.

Only ``_app_runtime.run_payload`` is replaced: these tests check exactly what the module would run (the
interpreter, the payload's text, its working directory, account and environment) and how it turns the
payload's result line into a result or a failure. Real Django and PostgreSQL run in molecule/migrate.
"""

import json
import os
import pwd
from pathlib import Path
from unittest import mock

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _backup as backup
from ansible_collections.greenlight.django.plugins.module_utils import _backup_payload as backup_payload
from ansible_collections.greenlight.django.plugins.module_utils import _ledger as ledger
from ansible_collections.greenlight.django.plugins.module_utils import _migrate_payload as payload
from ansible_collections.greenlight.django.plugins.module_utils._app_runtime import payload_program
from ansible_collections.greenlight.django.plugins.modules import migrate
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)

PAYLOAD_FILE = Path(payload.__file__)
REVISION_LINE = "3f2a9c1e0b7d"
SECRET = "s3cret-Pw"
ME = pwd.getpwuid(os.geteuid())


@pytest.fixture
def release(tmp_path):
    """A release laid out by code_sync: manage.py, .venv/bin/python, and shared/.env beside it."""
    root = tmp_path / "releases" / "1"
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    (root / "REVISION").write_text(REVISION_LINE + "\nbuild 1\n")
    (root / "manage.py").write_text("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'demo.settings')\n")
    env_file = tmp_path / "shared" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(f"DATABASE_URL=postgres://demo:{SECRET}@db/demo\nDJANGO_SECRET_KEY=key-{SECRET}\n")
    (tmp_path / "current").symlink_to(root)
    return root, env_file


def result_line(**fields):
    result = {"ok": True, "phase": "all", "plan": [], "applied": [], "unapplied": [], "failed_migration": None}
    result.update(fields)
    return f"{payload.RESULT_MARKER} {json.dumps(result)}\n"


def run(args, rc=0, out="", err="", check_mode=False):
    """Run main() with run_payload answering (rc, out, err); return (kind, result, run_payload mock)."""
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with set_module_args(args), patched_exits():
        with mock.patch.object(migrate, "run_payload", return_value=(rc, out, err)) as run_payload:
            try:
                migrate.main()
            except AnsibleExitJson as exc:
                return "exit", exc.result, run_payload
            except AnsibleFailJson as exc:
                return "fail", exc.result, run_payload
    raise AssertionError("the module neither exited nor failed")


def base_args(release, **overrides):
    root, env_file = release
    args = {"project_path": str(root), "env_files": [str(env_file)], "app_name": "demo", "user": ME.pw_name}
    args.update(overrides)
    return args


def options_of(run_payload):
    return json.loads(run_payload.call_args.args[4][payload.OPTIONS_ENV])


def test_applies_in_the_releases_interpreter_as_the_user_with_the_secrets_in_its_environment_only(release):
    root, _env_file = release
    args = base_args(
        release,
        project_path=str(root.parent.parent / "current"),
        phase="before_switch",
        expect=["notes.0002_note_tag", "notes.0003_backfill_tag"],
        lock_timeout=2,
        environment={"EXTRA": "given-value"},
    )
    out = "Django noise\n" + result_line(
        phase="before_switch",
        plan=["notes.0002_note_tag", "notes.0003_backfill_tag"],
        applied=["notes.0002_note_tag", "notes.0003_backfill_tag"],
        lock="PostgreSQL advisory lock 42",
    )
    kind, result, run_payload = run(args, out=out)
    assert kind == "exit", result
    module, python, source, cwd, env = run_payload.call_args.args
    kwargs = run_payload.call_args.kwargs
    assert python == str(root / ".venv" / "bin" / "python")  # the pointer is resolved once
    assert cwd == str(root)
    assert source == payload_program(payload, ledger)
    assert kwargs["account"].pw_name == ME.pw_name
    assert kwargs["timeout"] is None
    assert kwargs["label"] == "greenlight-migrate demo"
    assert env["DATABASE_URL"] == f"postgres://demo:{SECRET}@db/demo"
    assert env["EXTRA"] == "given-value"
    assert env["DJANGO_SETTINGS_MODULE"] == "demo.settings"
    assert env["VIRTUAL_ENV"] == str(root / ".venv")
    assert env["PATH"].startswith(str(root / ".venv" / "bin") + ":")
    assert options_of(run_payload) == {
        "app_name": "demo",
        "phase": "before_switch",
        "expect": ["notes.0002_note_tag", "notes.0003_backfill_tag"],
        "unapply": [],
        "dry_run": False,
        "database": "default",
        "lock_timeout": 2.0,
        "statement_timeout": 0.0,
        "advisory_lock_timeout": 60.0,
        "release": root.name,
        "revision": REVISION_LINE,
        "accept": [],
        "accept_by": "",
        "accept_reason": "",
    }
    assert SECRET not in env[payload.OPTIONS_ENV] and SECRET not in kwargs["label"]
    assert SECRET in module.no_log_values or f"postgres://demo:{SECRET}@db/demo" in module.no_log_values
    assert result["changed"] is True
    assert result["applied"] == ["notes.0002_note_tag", "notes.0003_backfill_tag"]
    assert result["lock"] == "PostgreSQL advisory lock 42"
    assert result["failed_migration"] is None
    assert isinstance(result["duration_seconds"], float)


def test_nothing_to_apply_is_not_a_change(release):
    kind, result, _run_payload = run(base_args(release), out=result_line())
    assert kind == "exit", result
    assert result["changed"] is False
    assert result["plan"] == [] and result["applied"] == []


def test_check_mode_plans_under_the_lock_and_applies_nothing(release):
    kind, result, run_payload = run(
        base_args(release, expect=["notes.0004_x"]), out=result_line(plan=["notes.0004_x"]), check_mode=True
    )
    assert kind == "exit", result
    assert options_of(run_payload)["dry_run"] is True
    assert result["plan"] == ["notes.0004_x"] and result["applied"] == []
    assert result["changed"] is True  # it would apply notes.0004_x


def test_a_failure_half_way_says_what_was_applied_without_a_secret(release):
    out = result_line(
        ok=False,
        plan=["notes.0004_note_rating", "notes.0005_fill_rating"],
        applied=["notes.0004_note_rating"],
        failed_migration="notes.0005_fill_rating",
        error=f"notes.0005_fill_rating failed: OperationalError: password {SECRET} rejected",
    )
    err = f"Applying notes.0004_note_rating... OK\nconnecting with {SECRET}\n"
    kind, result, _run_payload = run(base_args(release, expect=["notes.0004_note_rating"]), rc=1, out=out, err=err)
    assert kind == "fail"
    assert result["msg"] == (
        "notes.0005_fill_rating failed: OperationalError: password ******** rejected. Applied before the failure: "
        "notes.0004_note_rating - the schema changed; restore the backup taken before, or migrate back with the "
        "previous release."
    )
    assert result["error"] == "notes.0005_fill_rating failed: OperationalError: password ******** rejected"
    assert result["applied"] == ["notes.0004_note_rating"]
    assert result["failed_migration"] == "notes.0005_fill_rating"
    assert result["changed"] is True
    assert SECRET not in json.dumps(result)


def test_a_refusal_under_the_lock_says_nothing_was_applied(release):
    error = (
        "another migrate of demo holds the migrate lock (flock on /srv/db.sqlite3) and did not release it within 2 s."
    )
    kind, result, _run_payload = run(base_args(release), rc=1, out=result_line(ok=False, error=error))
    assert kind == "fail"
    assert result["msg"] == error + " Nothing was applied; the schema is unchanged."
    assert result["changed"] is False and result["applied"] == []


def test_a_process_that_ends_without_a_result_is_reported_with_its_last_words(release):
    err = "Traceback (most recent call last):\n" + f"  dsn={SECRET}\n" + "Segmentation fault\n"
    kind, result, _run_payload = run(base_args(release), rc=-11, out="", err=err)
    assert kind == "fail"
    assert result["error"].startswith("the migrate did not report (rc=-11): Traceback (most recent call last): / ")
    assert "Segmentation fault" in result["error"] and SECRET not in result["error"]
    assert "Python 3.8+ with Django 4.2+" in result["msg"]
    assert "Nothing was applied" not in result["msg"]  # nobody knows
    assert result["applied"] == []


def test_a_migrate_that_runs_too_long_is_stopped(release):
    kind, result, run_payload = run(base_args(release, timeout=30), rc=None, out="", err="")
    assert kind == "fail"
    assert run_payload.call_args.kwargs["timeout"] == 30
    assert result["error"].startswith("the migrate did not finish within 30 s (timeout) and was stopped")
    assert "Raise timeout" in result["msg"]


def test_unapply_reports_what_it_unapplied(release):
    args = base_args(release, unapply=["notes.0004_note_rating"], dry_run=True)
    out = result_line(phase="reverse", plan=["notes.0004_note_rating"])
    kind, result, run_payload = run(args, out=out)
    assert kind == "exit", result
    options = options_of(run_payload)
    assert options["unapply"] == ["notes.0004_note_rating"] and options["dry_run"] is True
    assert result["phase"] == "reverse" and result["changed"] is False
    out = result_line(phase="reverse", plan=["notes.0004_note_rating"], error="these operations cannot be reversed: x")
    kind, result, _run_payload = run(
        base_args(release, unapply=["notes.0004_note_rating"]), rc=1, out=out.replace('"ok": true', '"ok": false')
    )
    assert kind == "fail"
    assert result["msg"] == "these operations cannot be reversed: x. Nothing was unapplied; the schema is unchanged."


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expect": ["notes"]}, "expect must list migrations as app_label.migration_name (got notes)"),
        ({"unapply": ["notes. 0004"]}, "unapply must list migrations as app_label.migration_name (got notes. 0004)"),
        ({"lock_timeout": -1}, "lock_timeout must be 0 or more seconds (got -1)"),
        ({"app_name": " "}, "app_name must name the application"),
        (
            {"accept": ["notes.0004_note_rating"], "accept_by": "jane"},
            "accept needs accept_by (who reviewed) and accept_reason (why the migrations are accepted)",
        ),
        (
            {"accept": ["notes.0004_note_rating"], "accept_by": "jane", "accept_reason": "ok", "expect": ["a.b"]},
            "accept records a review and migrates nothing: leave expect and unapply empty with it",
        ),
        (
            {"accept": ["notes"], "accept_by": "jane", "accept_reason": "ok"},
            "accept must list migrations as app_label.migration_name (got notes)",
        ),
    ],
)
def test_bad_input_fails_before_anything_runs(release, overrides, message):
    kind, result, run_payload = run(base_args(release, **overrides))
    assert kind == "fail"
    assert result["msg"] == message + ". Nothing was applied."
    run_payload.assert_not_called()


def test_a_missing_release_or_environment_file_fails_before_anything_runs(release, tmp_path):
    for overrides, message in [
        ({"project_path": str(tmp_path / "nowhere")}, "is not a directory; set it to the release"),
        ({"env_files": [str(tmp_path / "missing.env")]}, f"cannot read {tmp_path / 'missing.env'}"),
        ({"user": "no-such-user-here"}, "The user no-such-user-here does not exist"),
    ]:
        kind, result, run_payload = run(base_args(release, **overrides))
        assert kind == "fail" and message in result["msg"]
        run_payload.assert_not_called()


def test_a_plain_interpreter_gets_no_virtualenv(release):
    root, _env_file = release
    python = str(root / ".venv" / "bin" / "python")
    kind, result, run_payload = run(base_args(release, python=python, settings="other.settings"), out=result_line())
    assert kind == "exit", result
    env = run_payload.call_args.args[4]
    assert "VIRTUAL_ENV" not in env
    assert env["PATH"].startswith(str(root / ".venv" / "bin") + ":/usr/local/sbin:")
    assert env["DJANGO_SETTINGS_MODULE"] == "other.settings"


# backup: the database is backed up first, in the same call (a downtime window saves a module call this way).
class Recorded(Exception):
    """What Ansible would send back, masked as it masks it (AnsibleModule._record_module_result)."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


def backup_answer(report):
    line = f"{backup_payload.RESULT_MARKER} {json.dumps(report)}"
    return (0 if report.get("ok") else 1), f"noise\n{line}\n", ""


def run_with_backup(args, dumped, migrated, check_mode=False):
    """Run main() as Ansible would, the backup's payload answering dumped and the migrate's migrated (rc, out,
    err); returns (Ansible's result, the payloads' calls in order: ("backup" or "migrate", call))."""
    args = dict(args, _ansible_check_mode=check_mode)
    calls = []

    def record(_module, result):
        raise Recorded(result)

    def answering(name, answer):
        return lambda *args, **kwargs: calls.append((name, mock.call(*args, **kwargs))) or answer

    with set_module_args(args):
        with mock.patch.object(backup, "run_payload", answering("backup", dumped)):
            with mock.patch.object(migrate, "run_payload", answering("migrate", migrated)):
                with mock.patch.object(migrate.AnsibleModule, "_record_module_result", record, create=True):
                    with pytest.raises(Recorded) as raised:
                        migrate.main()
    return raised.value.result, calls


def backup_args(release, tmp_path, **backup_options):
    options = {"dir": str(tmp_path / "backups"), "run_as": ME.pw_name}
    options.update(backup_options)
    return base_args(release, expect=["notes.0002_note_tag"], backup=options)


WRITTEN = "demo-1-20260102T000000Z.dump"
APPLIED = (0, result_line(plan=["notes.0002_note_tag"], applied=["notes.0002_note_tag"]), "")


def test_backup_is_taken_before_the_migrate_and_named_in_the_result(release, tmp_path):
    # A short secret that is also the application's name: Ansible's masking by value would hide the backup's path.
    _root, env_file = release
    with open(env_file, "a") as handle:
        handle.write("DB_PASSWORD=demo\nDEBUG=0\n")
    written = str(tmp_path / "backups" / WRITTEN)
    dumped = backup_answer({"ok": True, "file": written, "engine": "postgresql", "database": "demo", "size": 7})
    args = backup_args(release, tmp_path, keep=3, database_overrides={"PASSWORD": "Override-Pass-88"})
    with mock.patch.object(backup, "rotate", return_value=["old.dump"]) as rotate:
        result, calls = run_with_backup(args, dumped, APPLIED)
    assert [name for name, _call in calls] == ["backup", "migrate"]
    assert rotate.call_args.args == (str(tmp_path / "backups"), "demo", 3, "default")
    assert result.get("failed") is not True, result
    assert result["backup"]["path"] == written  # not masked, though "demo" is a secret
    assert result["backup"]["removed"] == ["old.dump"]
    assert result["applied"] == ["notes.0002_note_tag"] and result["changed"] is True
    options = json.loads(calls[0][1].args[4][backup_payload.OPTIONS_ENV])
    assert (options["command"], options["dir"], options["app_name"]) == ("dump", str(tmp_path / "backups"), "demo")
    assert options["database_overrides"] == {"PASSWORD": "Override-Pass-88"}
    assert (tmp_path / "backups").stat().st_mode & 0o777 == 0o700
    shown = json.dumps(result)
    assert "Override-Pass-88" not in shown and SECRET not in shown
    assert result["invocation"]["module_args"]["backup"]["database_overrides"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_a_failed_backup_migrates_nothing(release, tmp_path):
    error = f"pg_dump of database demo failed (rc=1): No space left on device (password {SECRET})"
    result, calls = run_with_backup(
        backup_args(release, tmp_path), backup_answer({"ok": False, "error": error}), APPLIED
    )
    assert [name for name, _call in calls] == ["backup"]
    assert result["failed"] is True
    assert result["msg"].startswith("The backup of demo failed: pg_dump of database demo failed (rc=1): No space")
    assert result["msg"].endswith(" Nothing was migrated.")
    assert "backup" not in result and SECRET not in json.dumps(result)


def test_a_migrate_that_fails_after_the_backup_names_the_backup_to_restore(release, tmp_path):
    written = str(tmp_path / "backups" / WRITTEN)
    dumped = backup_answer({"ok": True, "file": written, "engine": "postgresql", "database": "demo", "size": 7})
    out = result_line(
        ok=False,
        plan=["notes.0002_note_tag"],
        failed_migration="notes.0002_note_tag",
        error=f"notes.0002_note_tag failed: password {SECRET} rejected",
    )
    result, calls = run_with_backup(backup_args(release, tmp_path), dumped, (1, out, f"dsn {SECRET}\n"))
    assert [name for name, _call in calls] == ["backup", "migrate"]
    assert result["failed"] is True and result["backup"]["path"] == written
    assert result["msg"] == (
        "notes.0002_note_tag failed: password ******** rejected. Nothing was applied; the schema is unchanged."
    )
    assert result["changed"] is True  # a backup was written
    assert SECRET not in json.dumps(result)


def test_check_mode_and_dry_run_take_no_backup(release, tmp_path):
    planned = (0, result_line(plan=["notes.0002_note_tag"]), "")
    for check_mode, args in (
        (True, backup_args(release, tmp_path)),
        (False, dict(backup_args(release, tmp_path), dry_run=True)),
    ):
        result, calls = run_with_backup(args, None, planned, check_mode=check_mode)
        assert [name for name, _call in calls] == ["migrate"]
        assert result["backup"] == {
            "msg": f"Would back up the database default of {release[0]} into {tmp_path / 'backups'}"
        }
        assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"unapply": ["notes.0002_note_tag"], "expect": []}, "backup goes with a migrate forwards"),
        ({"backup": {"dir": "/tmp/x", "run_as": "root", "keep": -1}}, "backup.keep must be 0 or more (got -1)"),
    ],
)
def test_backup_with_what_it_does_not_go_with_fails_before_anything_runs(release, tmp_path, extra, message):
    args = dict(backup_args(release, tmp_path), **extra)
    result, calls = run_with_backup(args, None, None)
    assert calls == [] and result["failed"] is True
    assert message in result["msg"] and result["msg"].endswith("Nothing was applied.")
