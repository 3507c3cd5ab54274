"""greenlight.django.migration_status: arguments, the inspector call, results and messages.

``AnsibleModule.run_command`` is patched: these tests check exactly what the
module would run (argv, stdin, cwd, environment) and how it turns the
inspector's answer into a result or a failure. Real Django runs in
tests/functional/test_migration_status.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from ansible_collections.greenlight.django.plugins.module_utils import _app_runtime as runtime
from ansible_collections.greenlight.django.plugins.module_utils import _ledger as ledger
from ansible_collections.greenlight.django.plugins.module_utils import _migration_inspect as inspector
from ansible_collections.greenlight.django.plugins.modules import migration_status
from ansible_collections.greenlight.django.tests.unit.plugins.modules.utils import (
    AnsibleExitJson,
    AnsibleFailJson,
    patched_exits,
    set_module_args,
)

INSPECTOR_FILE = Path(inspector.__file__)

OPERATION = {
    "type": "RemoveField",
    "module": "django.db.migrations.operations.fields",
    "bases": ["RemoveField", "FieldOperation", "Operation"],
    "django": True,
    "description": "Remove field body from note",
    "reversible": True,
    "emits_sql": True,
    "field": {"null": False},
}


def report(**overrides):
    result = {
        "ok": True,
        "django_version": "5.2.19",
        "database": {"alias": "default", "vendor": "sqlite"},
        "warnings": [],
        "pending": [],
        "unmigrated_changes": {},
        "conflicts": {},
        "unknown_applied": [],
        "inconsistent_history": None,
        "squashed_unrecorded": [],
    }
    result.update(overrides)
    return result


def inspector_output(payload, noise="", nonce=None):
    """What the inspector prints, for the nonce the module passed (read from its environment)."""

    def side_effect(cmd, **kwargs):
        options = json.loads(kwargs["environ_update"][inspector.OPTIONS_ENV])
        used = options["nonce"] if nonce is None else nonce
        body = json.dumps(payload)
        out = f"{noise}\n{inspector.BEGIN_MARKER} {used}\n{body}\n{inspector.END_MARKER} {used}\n"
        return 0, out, ""

    return side_effect


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "manage.py").write_text(
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings.prod')\n"
    )
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return root, venv


def run(args, side_effect=None, return_value=None):
    """Run main(); return (kind, result, run_command mock)."""
    with set_module_args(args), patched_exits():
        with mock.patch("ansible.module_utils.basic.AnsibleModule.run_command") as run_command:
            if side_effect is not None:
                run_command.side_effect = side_effect
            else:
                run_command.return_value = return_value or (0, "", "")
            try:
                migration_status.main()
            except AnsibleExitJson as exc:
                return "exit", exc.result, run_command
            except AnsibleFailJson as exc:
                return "fail", exc.result, run_command
    raise AssertionError("the module neither exited nor failed")


def test_runs_the_inspector_in_the_application_python(project):
    root, venv = project
    args = {
        "project_path": str(root),
        "venv": str(venv),
        "database": "replica",
        "include_sql": True,
        "pythonpath": ["/opt/lib"],
        "environment": {"DATABASE_URL": "postgres://app:s3cret@db/app", "DEBUG_LEVEL": 3},
    }
    kind, result, run_command = run(args, side_effect=inspector_output(report()))
    assert kind == "exit", result
    assert run_command.call_count == 1
    (cmd,), kwargs = run_command.call_args
    assert cmd == [str(venv / "bin" / "python"), "-"]
    assert kwargs["data"] == runtime.payload_program(inspector, ledger)
    assert kwargs["cwd"] == str(root)
    env = kwargs["environ_update"]
    assert env["DATABASE_URL"] == "postgres://app:s3cret@db/app"
    assert env["DEBUG_LEVEL"] == "3"
    assert env["DJANGO_SETTINGS_MODULE"] == "mysite.settings.prod"  # from manage.py
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["LC_ALL"] == "C"
    options = json.loads(env[inspector.OPTIONS_ENV])
    assert options == {
        "nonce": options["nonce"],
        "project_path": str(root),
        "settings": "mysite.settings.prod",
        "database": "replica",
        "include_sql": True,
        "pythonpath": ["/opt/lib"],
        "secret_env": ["DATABASE_URL", "DEBUG_LEVEL"],
        "timeout": 300,
        "data_checks": True,
        "data_check_values": False,
        "data_check_timeout": 10.0,
        "data_check_skip_tables": [],
    }
    assert len(options["nonce"]) == 32
    assert "s3cret" not in env[inspector.OPTIONS_ENV]  # secrets travel only as the app's own variables
    assert result["changed"] is False
    assert result["failed_conditions"] == []


def test_settings_precedence(project, monkeypatch):
    root, venv = project
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "from.module.env")
    base = {"project_path": str(root), "venv": str(venv)}

    def settings_used(args):
        kind, result, run_command = run(dict(base, **args), side_effect=inspector_output(report()))
        assert kind == "exit", result
        return run_command.call_args[1]["environ_update"]["DJANGO_SETTINGS_MODULE"]

    assert settings_used({"settings": "explicit.settings", "environment": {"DJANGO_SETTINGS_MODULE": "x"}}) == (
        "explicit.settings"
    )
    assert settings_used({"environment": {"DJANGO_SETTINGS_MODULE": "from.option"}}) == "from.option"
    assert settings_used({}) == "from.module.env"
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    assert settings_used({}) == "mysite.settings.prod"


def test_settings_unknown(project, monkeypatch):
    root, venv = project
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    (root / "manage.py").write_text("print('no settings here')\n")
    kind, result, run_command = run({"project_path": str(root), "venv": str(venv)})
    assert kind == "fail"
    assert result["msg"].startswith("The settings module is not known: set the settings option")
    run_command.assert_not_called()


def test_python_resolution(project, tmp_path):
    root, venv = project
    kind, _result, run_command = run(
        {"project_path": str(root), "python": str(venv / "bin" / "python"), "settings": "s"},
        side_effect=inspector_output(report()),
    )
    assert kind == "exit" and run_command.call_args[0][0] == [str(venv / "bin" / "python"), "-"]
    with mock.patch("ansible.module_utils.basic.AnsibleModule.get_bin_path", return_value="/usr/bin/python3") as gbp:
        kind, _result, run_command = run(
            {"project_path": str(root), "settings": "s"}, side_effect=inspector_output(report())
        )
    gbp.assert_called_once_with("python3")
    assert run_command.call_args[0][0] == ["/usr/bin/python3", "-"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"venv": "{tmp}/missing"}, "The virtualenv {tmp}/missing does not exist; set venv"),
        ({"venv": "{tmp}"}, "The virtualenv {tmp} has no bin/python"),
        ({"python": "{tmp}/python9"}, "The interpreter {tmp}/python9 does not exist or is not executable"),
    ],
)
def test_bad_interpreter(project, tmp_path, args, message):
    root, _venv = project
    args = {key: value.format(tmp=tmp_path) for key, value in args.items()}
    kind, result, run_command = run(dict(args, project_path=str(root), settings="s"))
    assert kind == "fail"
    assert result["msg"].startswith(message.format(tmp=tmp_path))
    run_command.assert_not_called()


def test_python_not_on_path(project):
    root, _venv = project
    with mock.patch("ansible.module_utils.basic.AnsibleModule.get_bin_path", return_value=None):
        kind, result, _rc = run({"project_path": str(root), "python": "python3.99", "settings": "s"})
    assert kind == "fail"
    assert (
        result["msg"] == "No python3.99 interpreter is on PATH; set python (or venv) to the application's interpreter."
    )


def test_no_manage_py_and_no_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    kind, result, run_command = run({"project_path": str(tmp_path)})
    assert kind == "fail"
    assert result["msg"].startswith(f"There is no manage.py in {tmp_path} and no settings module is given")
    run_command.assert_not_called()


def test_no_manage_py_with_settings_and_pythonpath(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    kind, result, run_command = run(
        {"project_path": str(tmp_path), "python": sys.executable, "settings": "shop.settings", "pythonpath": ["src"]},
        side_effect=inspector_output(report()),
    )
    assert kind == "exit", result
    environ = run_command.call_args[1]["environ_update"]
    assert environ["DJANGO_SETTINGS_MODULE"] == "shop.settings"
    assert run_command.call_args[1]["cwd"] == str(tmp_path)
    assert json.loads(environ[inspector.OPTIONS_ENV])["pythonpath"] == ["src"]


def test_noise_around_the_result_and_foreign_markers_are_ignored(project):
    root, venv = project
    fake = f'{inspector.BEGIN_MARKER} 0000\n{{"ok": false}}\n{inspector.END_MARKER} 0000'
    kind, result, _rc = run(
        {"project_path": str(root), "venv": str(venv)},
        side_effect=inspector_output(report(django_version="4.2.30"), noise="hello from settings\n" + fake),
    )
    assert kind == "exit", result
    assert result["django_version"] == "4.2.30"


def test_no_result_is_one_scrubbed_paragraph(project):
    root, venv = project
    err = "Traceback (most recent call last):\n  ...\nSyntaxError: bad password hunter2 in line\n"
    kind, result, _rc = run(
        {"project_path": str(root), "venv": str(venv), "environment": {"PGPASSWORD": "hunter2"}},
        return_value=(1, "", err),
    )
    assert kind == "fail"
    assert result["msg"] == (
        f"The inspection did not produce a result: {venv}/bin/python exited with rc=1 (SyntaxError: bad password "
        "******** in line). Check that it is the application's interpreter (Python 3.8+ with Django 4.2+)."
    )
    assert "hunter2" not in result["stderr"]
    assert result["rc"] == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {"kind": "settings_import", "message": "The settings module 'a.b' does not import: KeyError: 'X'"},
            "The settings module 'a.b' does not import: KeyError: 'X'. Check the settings option, pythonpath, and "
            "the variables the settings read from environment.",
        ),
        (
            {
                "kind": "database_unreachable",
                "message": "The database 'default' (postgresql) is not reachable: connection to server failed: "
                'FATAL: password authentication failed for user "app" (password s3cret-pw)',
            },
            "The database 'default' (postgresql) is not reachable: connection to server failed: FATAL: password "
            'authentication failed for user "app" (password ********). Check the host, port, name and credentials '
            "the settings use (environment), and that the server accepts connections from this host.",
        ),
        (
            {"kind": "django_missing", "message": "The interpreter /x (Python 3.11.2) cannot import Django: E."},
            "The interpreter /x (Python 3.11.2) cannot import Django: E. Point venv (or python) at the interpreter "
            "of the application's virtualenv.",
        ),
        ({"kind": "mystery", "message": "Something odd"}, "Something odd."),
    ],
)
def test_inspector_errors(project, error, expected):
    root, venv = project
    args = {
        "project_path": str(root),
        "venv": str(venv),
        "environment": {"DATABASE_URL": "postgres://app:s3cret-pw@db:5432/app"},
    }
    kind, result, _rc = run(args, side_effect=inspector_output({"ok": False, "error": error}))
    assert kind == "fail"
    assert result["msg"] == expected


def test_unexpected_error_keeps_the_traceback_out_of_msg(project):
    root, venv = project
    error = {"kind": "unexpected", "message": "The inspection failed: ValueError: x", "traceback": "Traceback..."}
    kind, result, _rc = run(
        {"project_path": str(root), "venv": str(venv)}, side_effect=inspector_output({"ok": False, "error": error})
    )
    assert kind == "fail"
    assert result["msg"] == "The inspection failed: ValueError: x."
    assert result["exception"] == "Traceback..."


def test_url_passwords_join_the_no_log_values(project):
    root, venv = project
    seen = {}

    def side_effect(cmd, **kwargs):
        seen["no_log"] = set(migration_status_module_instance().no_log_values)
        return inspector_output(report())(cmd, **kwargs)

    instances = []
    original = migration_status.AnsibleModule.__init__

    def capture(self, *args, **kwargs):
        original(self, *args, **kwargs)
        instances.append(self)

    def migration_status_module_instance():
        return instances[-1]

    with mock.patch.object(migration_status.AnsibleModule, "__init__", capture):
        kind, _result, _rc = run(
            {
                "project_path": str(root),
                "venv": str(venv),
                "environment": {"DATABASE_URL": "postgres://app:pa55word@db/app"},
            },
            side_effect=side_effect,
        )
    assert kind == "exit"
    assert {"pa55word", "postgres://app:pa55word@db/app"} <= seen["no_log"]


def pending_report():
    return report(
        pending=[
            {
                "app": "notes",
                "name": "0002_drop_body",
                "phase": None,
                "safe": None,
                "dependencies": [],
                "operations": [OPERATION],
                "sql": ["BEGIN;", "ALTER TABLE ...;", "COMMIT;"],
            },
        ],
        unmigrated_changes={"notes": ["Add field priority to note"]},
    )


def test_result_shape_and_fail_on(project):
    root, venv = project
    base = {"project_path": str(root), "venv": str(venv)}
    kind, result, _rc = run(dict(base), side_effect=inspector_output(pending_report()))
    assert kind == "fail"
    assert result["failed_conditions"] == ["unmigrated_changes"]
    assert result["msg"] == (
        "notes: Add field priority to note — model changes without a migration file. Run `manage.py "
        "makemigrations` in development, commit the file, and deploy again; never run makemigrations on a server."
    )
    # The whole result comes with the failure.
    assert result["plan"] == ["notes.0002_drop_body"]
    assert result["pending"][0]["compatibility"] == "incompatible"
    assert "sql" not in result["pending"][0]

    kind, result, _rc = run(dict(base, fail_on=[], include_sql=True), side_effect=inspector_output(pending_report()))
    assert kind == "exit"
    assert result["failed_conditions"] == []
    assert result["backward_compatible"] is False
    assert result["destructive"] is True
    assert result["pending"][0]["sql"] == ["BEGIN;", "ALTER TABLE ...;", "COMMIT;"]

    kind, result, _rc = run(
        dict(base, fail_on=["pending", "incompatible", "destructive"]), side_effect=inspector_output(pending_report())
    )
    assert kind == "fail"
    assert result["failed_conditions"] == ["pending", "incompatible", "destructive"]
    assert result["msg"].startswith("notes.0002_drop_body — migrations not applied yet.")
    assert "notes.0002_drop_body: Remove field body from note (incompatible: Old code still selects" in result["msg"]


def test_bad_fail_on_choice(project):
    root, venv = project
    kind, result, run_command = run({"project_path": str(root), "venv": str(venv), "fail_on": ["everything"]})
    assert kind == "fail" and "fail_on" in result["msg"]
    run_command.assert_not_called()


def test_check_mode_runs_the_same_inspection(project):
    root, venv = project
    args = {"project_path": str(root), "venv": str(venv), "fail_on": [], "_ansible_check_mode": True}
    kind, result, run_command = run(args, side_effect=inspector_output(pending_report()))
    assert kind == "exit"
    assert result["changed"] is False
    assert result["plan"] == ["notes.0002_drop_body"]
    run_command.assert_called_once()


def test_warnings_are_passed_on(project):
    root, venv = project
    with mock.patch("ansible.module_utils.basic.AnsibleModule.warn") as warn:
        kind, _result, _rc = run(
            {"project_path": str(root), "venv": str(venv)},
            side_effect=inspector_output(report(warnings=["The SQLite database /x does not exist yet"])),
        )
    assert kind == "exit"
    warn.assert_called_once_with("The SQLite database /x does not exist yet")


def test_inspector_source_is_the_file_with_the_ledger():
    program = migration_status.inspector_source()
    assert repr(INSPECTOR_FILE.read_text()) in program
    assert repr(Path(ledger.__file__).read_text()) in program
    with mock.patch.object(runtime.pkgutil, "get_data", side_effect=OSError):
        assert migration_status.inspector_source() == program


@pytest.mark.parametrize(
    ("text", "settings"),
    [
        ('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")', "mysite.settings"),
        ("os.environ.setdefault( 'DJANGO_SETTINGS_MODULE' , 'a.b.c' )", "a.b.c"),
        ('os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"', None),
    ],
)
def test_settings_from_manage_py(tmp_path, text, settings):
    manage = tmp_path / "manage.py"
    manage.write_text(f"import os\n{text}\n")
    assert runtime.settings_from_manage_py(str(manage)) == settings
    assert runtime.settings_from_manage_py(str(tmp_path / "missing.py")) is None


def test_secret_values_and_scrub():
    secrets = runtime.secret_values({"A": "postgres://u:pw%40x@h/db", "B": "", "C": "token"})
    assert secrets == ["postgres://u:pw%40x@h/db", "pw%40x", "token", "pw@x"]
    assert runtime.scrub("u:pw%40x said token, pw@x", secrets) == "u:******** said ********, ********"


# The inspector is plain Python until it imports Django: its error path runs anywhere.


def test_inspector_without_django_reports_django_missing(tmp_path):
    options = {"nonce": "abc", "project_path": str(tmp_path), "settings": "x.settings"}
    env = dict(os.environ, **{inspector.OPTIONS_ENV: json.dumps(options)})
    proc = subprocess.run(
        [sys.executable, "-"],
        input=INSPECTOR_FILE.read_text(),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0
    payload = migration_status.parse_report(proc.stdout, "abc")
    assert payload["ok"] is False
    assert payload["error"]["kind"] == "django_missing"
    assert "cannot import Django: ModuleNotFoundError: No module named 'django'" in payload["error"]["message"]
    assert list(tmp_path.iterdir()) == []


def test_inspector_helpers():
    assert inspector.one_line("a\n  b\tc ") == "a b c"
    assert inspector.scrub({"m": ["x secret y"], "n": 1}, ["secret"]) == {"m": ["x ******** y"], "n": 1}
    assert inspector._sql_texts(["SELECT 1", ("SELECT %s", [1])]) == ["SELECT 1", "SELECT %s"]
    assert inspector._sql_texts("DELETE FROM t") == ["DELETE FROM t"]
    assert inspector._normalize_together([("a", "b")]) == {("a", "b")}
    assert inspector._normalize_together(("a", "b")) == {("a", "b")}
    assert inspector._normalize_together(None) == set()
    try:
        raise SyntaxError("invalid syntax", ("m.py", 3, 1, "x"))
    except SyntaxError as exc:
        assert inspector.exception_last_line(exc) == "SyntaxError: invalid syntax (m.py, line 3)"


@pytest.mark.parametrize("seconds", [0, -1.5])
def test_data_check_timeout_must_be_positive(project, seconds):
    root, venv = project
    kind, result, run_command = run({"project_path": str(root), "venv": str(venv), "data_check_timeout": seconds})
    assert kind == "fail"
    assert result["msg"].startswith(f"data_check_timeout must be a number of seconds greater than 0 (got {seconds:g})")
    assert "data_checks: false" in result["msg"]
    run_command.assert_not_called()
