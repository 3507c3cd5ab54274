"""What the modules that run a release's code share: its environment, its process, its result line."""

import os
import pwd
import subprocess
import sys
from unittest import mock

from ansible_collections.greenlight.django.plugins.module_utils import _app_runtime as runtime


class Failed(Exception):
    pass


def fail(**kwargs):
    raise Failed(kwargs["msg"])


def module():
    fake = mock.Mock()
    fake.fail_json.side_effect = fail
    fake.no_log_values = set()
    return fake


def test_the_environment_is_the_wrappers_then_the_apps_then_ours():
    account = pwd.getpwuid(os.geteuid())
    env = runtime.process_environment(
        "/srv/app/releases/1/.venv",
        account,
        {"LANG": "de_DE.UTF-8", "SECRET_KEY": "s"},
        settings="demo.settings",
        pythonpath=["/srv/app/releases/1/src", "/x"],
        extra={"GREENLIGHT_OPTIONS": "{}"},
    )
    assert env["PATH"].startswith("/srv/app/releases/1/.venv/bin:")
    assert env["LANG"] == "de_DE.UTF-8"
    assert env["HOME"] == account.pw_dir
    assert env["DJANGO_SETTINGS_MODULE"] == "demo.settings"
    assert env["PYTHONPATH"] == "/srv/app/releases/1/src:/x"
    assert env["SECRET_KEY"] == "s"
    assert env["GREENLIGHT_OPTIONS"] == "{}"
    assert "ANSIBLE_MODULE_ARGS" not in env


def test_a_payload_runs_from_standard_input_with_exactly_its_environment(tmp_path):
    source = "import os, sys\nprint(os.getcwd(), sorted(k for k in os.environ if k.startswith('G_')))\nsys.exit(3)\n"
    rc, out, _err = runtime.run_payload(module(), sys.executable, source, str(tmp_path), {"G_ONE": "1"})
    assert rc == 3
    assert out.strip() == f"{tmp_path} ['G_ONE']"


def test_a_payload_that_runs_too_long_is_killed(tmp_path):
    rc, _out, _err = runtime.run_payload(
        module(), sys.executable, "import time\ntime.sleep(30)\n", str(tmp_path), {}, timeout=0.5
    )
    assert rc is None


def test_the_result_is_the_last_marked_line():
    out = 'noise\nRESULT {"ok": false}\nmore\nRESULT {"ok": true, "applied": ["a.0001"]}\ntrailer\n'
    assert runtime.marked_result(out, "RESULT") == {"ok": True, "applied": ["a.0001"]}
    assert runtime.marked_result("RESULT not json\n", "RESULT") is None
    assert runtime.marked_result("nothing\n", "RESULT") is None


def test_secrets_from_env_files_are_registered_and_the_given_ones_win(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=postgres://app:p%40ss@db/app\nDJANGO_SETTINGS_MODULE=demo.settings\nA=file\n")
    fake = module()
    environment, startup, secrets = runtime.application_environment(fake, {"A": "given"}, [str(env_file)])
    assert environment == {"DATABASE_URL": "postgres://app:p%40ss@db/app", "A": "given"}
    assert startup == {"DJANGO_SETTINGS_MODULE": "demo.settings"}
    assert {"p%40ss", "p@ss", "given"} <= fake.no_log_values
    assert runtime.scrub("login p@ss failed", secrets) == "login ******** failed"


def test_an_unknown_user_is_refused_with_the_fix():
    try:
        runtime.account_of(module(), "no-such-user-here")
    except Failed as exc:
        assert "no-such-user-here does not exist" in str(exc)
    else:
        raise AssertionError("an unknown user was accepted")


def test_short_settings_are_not_masked_but_short_secrets_are(tmp_path):
    """DEBUG=0 must not turn every 0 of a result (notes.0002_note_tag) into a mask; DB_PASSWORD=pq must stay masked."""
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=0\nDB_PASSWORD=pq\nCACHE_URL=redis://u:zz@cache/0\n")
    fake = module()
    fake.no_log_values = {"0", "on"}  # what Ansible registered from the no_log environment option
    _environment, _startup, secrets = runtime.application_environment(fake, {"FEATURE": "on"}, [str(env_file)])
    assert fake.no_log_values == {"pq", "zz", "redis://u:zz@cache/0"}
    assert runtime.scrub("applied notes.0002_note_tag with pq", secrets) == "applied notes.0002_note_tag with ********"


def test_a_payload_program_loads_its_libraries_before_the_payload_runs_as_main():
    from ansible_collections.greenlight.django.plugins.module_utils import _ledger as ledger
    from ansible_collections.greenlight.django.plugins.module_utils import _migrate_payload as payload

    main = (
        "from __future__ import annotations\n"
        "import sys\n"
        "shipped = sys.modules['greenlight_django_ledger']\n"
        "print(__name__, shipped.TABLE, 'ansible' in sys.modules)\n"
    )
    program = runtime.PROGRAM.format(
        libraries=[("greenlight_django_ledger", runtime.payload_source(ledger))], main=main
    )
    done = subprocess.run([sys.executable, "-"], input=program, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["__main__", "greenlight_migration_ledger", "False"]
    assert runtime.payload_program(payload, ledger).endswith(
        program.splitlines()[-1][: len("exec(compile(")]
        + repr(runtime.payload_source(payload))
        + ', "<stdin>", "exec"), globals())\n'
    )
    assert runtime.payload_program(payload) == runtime.payload_source(payload)
