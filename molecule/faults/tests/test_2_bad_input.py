"""Bad input: every case fails before anything changes, with a message that names the problem and the fix.

Each case runs a playbook the way a user would get it wrong, then compares a
snapshot of the application taken before and after: every table's rows, the
schema and the applied migrations; the pointers, the releases, the backups,
nginx's active colour, the maintenance flag, the lock; the environment file,
the manage wrapper, the systemd units and the nginx site (sha256); what the
site serves. Deploys of the release that already serves are used where the
case allows it. The cases of the simple deploy (demo) and of the blue-green
deploy (demo_bg) run at the same time, each application's cases in turn; the
snapshot after one case is the one before the next case of the same
application (nothing else touches it meanwhile). Each test then judges its
case.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faults_lib import BLUE_GREEN, EPHEMERAL, HOOKS, INVENTORY, SIMPLE, App, Run, differences, leaks, run, snapshot

WRONG_PASSWORD = "Wrong-Faults-Leak-Check-41d9"


def environment(app: App, **changes: str) -> dict:
    """The application's environment (molecule.yml, vars/bg.yml) with some values changed."""
    good = {
        "DJANGO_SECRET_KEY": "Faults-Leak-Check-secret-key-5d0e2f-0123456789abcdefghijklmnopqrstuvwxyz",
        "DATABASE_URL": f"postgres://demo:Faults-Leak-Check-db-8b31c7@127.0.0.1:5432/{app.database}",
        "DJANGO_ALLOWED_HOSTS": "bg.test,127.0.0.1,localhost",
    }
    return {"greenlight_environment": {**good, **changes}}


@dataclass
class Case:
    id: str
    expect: list[str]  # every one of these appears in the output (the problem and the fix)
    extra_vars: dict = field(default_factory=dict)
    app: App = SIMPLE
    playbook: str | None = None
    bare_inventory: bool = False  # the inventory without the scenario's group_vars
    args: tuple[str, ...] = ()


CASES = [
    Case(
        "missing-app-name",
        ["greenlight_app_name", "missing required arguments"],
        {"greenlight_source_dir": str(EPHEMERAL / "demo" / "v1")},
        bare_inventory=True,
    ),
    Case(
        "missing-source-dir",
        ["greenlight_source_dir", "missing required arguments"],
        {"greenlight_app_name": "demo"},
        bare_inventory=True,
    ),
    Case(
        "environment-not-a-dict",
        ["greenlight_environment", "must be a mapping", "got text"],
        {"greenlight_environment": f"DATABASE_URL=postgres://demo:{WRONG_PASSWORD}@127.0.0.1/demo"},
    ),
    Case("lock-break-not-a-bool", ["greenlight_lock_break", "bool"], {"greenlight_lock_break": "perhaps"}),
    Case("hooks-not-a-dict", ["greenlight_hooks", "dict"], {"greenlight_hooks": [str(HOOKS / "stall.yml")]}),
    Case(
        "unknown-hook-point",
        ["before_deploy", "is not a hook point", "before_prepare, after_prepare"],
        {"greenlight_hooks": {"before_deploy": str(HOOKS / "stall.yml")}},
        app=BLUE_GREEN,
    ),
    Case(
        "hook-file-missing",
        ["/nonexistent/hooks/before_migrate.yml", "do not exist", "greenlight_hooks"],
        {"greenlight_hooks": {"before_migrate": "/nonexistent/hooks/before_migrate.yml"}},
        app=BLUE_GREEN,
    ),
    Case(
        "app-name-not-a-name",
        ["greenlight_app_name must match", "Demo App", "^[a-z][a-z0-9_-]*$"],
        {"greenlight_app_name": "Demo App"},
        app=BLUE_GREEN,
    ),
    Case(
        "relative-app-root",
        ["greenlight_app_root", "srv/demo", "absolute path"],
        {"greenlight_app_root": "srv/demo"},
        app=BLUE_GREEN,
    ),
    Case(
        "settings-module-missing",
        ["demo.no_such_settings", "DJANGO_SETTINGS_MODULE"],
        environment(SIMPLE, DJANGO_SETTINGS_MODULE="demo.no_such_settings"),
    ),
    Case(
        "virtualenv-python-missing",
        ["/opt/no-such-python/bin/python3", "code_sync_python"],
        {"code_sync_python": "/opt/no-such-python/bin/python3"},
    ),
    Case(
        "wrong-database-password",
        ["password authentication failed", "DATABASE_URL"],
        environment(BLUE_GREEN, DATABASE_URL=f"postgres://demo:{WRONG_PASSWORD}@127.0.0.1:5432/demo_bg"),
        app=BLUE_GREEN,
    ),
    Case(
        "unreachable-database-host",
        ["127.0.0.2", "DATABASE_URL"],
        environment(SIMPLE, DATABASE_URL="postgres://demo:Faults-Leak-Check-db-8b31c7@127.0.0.2:5432/demo"),
    ),
    Case(
        "wrong-wsgi-application",
        ["demo.no_such_wsgi", "greenlight_wsgi_application"],
        {"greenlight_wsgi_application": "demo.no_such_wsgi:application"},
        app=BLUE_GREEN,
    ),
    Case(
        "worker-class-missing",
        ["wsgi_worker_class is no_such_worker.Worker", "has no module no_such_worker", "uvicorn-worker"],
        {"wsgi_worker_class": "no_such_worker.Worker"},
    ),
    Case("unknown-colour", ["purple", "blue", "green"], app=BLUE_GREEN, args=("-e", "traffic_active=purple")),
    # A role's variable is checked with the playbook's, before the release is built (not at the role's include).
    Case(
        "role-variable-not-an-int",
        ["traffic_upstream_keepalive", "int"],
        {"traffic_upstream_keepalive": "many", "greenlight_source_dir": str(EPHEMERAL / "demo" / "v2")},
    ),
    Case(
        "missing-source-directory",
        ["/nonexistent/demo is not a directory", "greenlight_source_dir"],
        {"greenlight_source_dir": "/nonexistent/demo"},
        app=BLUE_GREEN,
    ),
    Case("missing-git-ref", ["release-9.9", "greenlight_source_ref"], {"greenlight_source_ref": "release-9.9"}),
    Case(
        "requirements-file-missing",
        ["requirements/prod.txt is missing from the source", "code_sync_requirements_file", "poetry export"],
        {"code_sync_requirements_file": "requirements/prod.txt"},
        app=BLUE_GREEN,
    ),
    Case("uv-lock-malformed", ["uv cannot export uv.lock", "Failed to parse", "uv lock writes it anew"]),
    Case(
        "src-layout-without-import-path",
        ["No module named 'demo'", "greenlight_pythonpath: [src]", "was not created (and was removed)"],
        {"greenlight_source_dir": str(EPHEMERAL / "demo" / "srclayout"), "greenlight_settings_module": "demo.settings"},
        app=BLUE_GREEN,
    ),
    Case(
        "rollback-to-a-release-that-does-not-exist",
        ["20000101T000000Z-000000000000", "does not exist", "Releases there", "greenlight_rollback_to"],
        {"greenlight_rollback_to": "20000101T000000Z-000000000000"},
        playbook="rollback.yml",
    ),
    Case(
        "rollback-restore-not-confirmed",
        ["every row written since then is lost", "greenlight_rollback_confirm=true"],
        {"greenlight_rollback_database": "restore"},
        playbook="rollback.yml",
    ),
    Case(
        "rollback-database-not-a-choice",
        ["greenlight_rollback_database", "keep", "restore"],
        {"greenlight_rollback_database": "yes"},
        playbook="rollback.yml",
    ),
]


@pytest.fixture(scope="module")
def git_source(tmp_path_factory) -> Path:
    """The demo v1 as a git repository with one commit (and no tag release-9.9)."""
    repository = tmp_path_factory.mktemp("git") / "demo"
    shutil.copytree(EPHEMERAL / "demo" / "v1", repository)
    for argv in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=faults", "-c", "user.email=faults@example.invalid", "commit", "-qm", "v1"],
    ):
        subprocess.run(argv, cwd=repository, check=True, capture_output=True)
    return repository


@pytest.fixture(scope="module")
def broken_lock_source(tmp_path_factory) -> Path:
    """The demo v1 with its requirements in a uv.lock that is not valid TOML, and no requirements.txt."""
    source = tmp_path_factory.mktemp("lock") / "demo"
    shutil.copytree(EPHEMERAL / "demo" / "v1", source)
    (source / "requirements.txt").unlink()
    (source / "pyproject.toml").write_text('[project]\nname = "demo"\nversion = "1"\ndependencies = ["Django"]\n')
    (source / "uv.lock").write_text('version = 1\n[[package]\nname = "django"\n')
    return source


@pytest.fixture(scope="module")
def bare_inventory(tmp_path_factory) -> Path:
    """The scenario's inventory file alone, without its group_vars."""
    directory = tmp_path_factory.mktemp("inventory")
    shutil.copy(INVENTORY, directory / "inventory.yml")
    return directory / "inventory.yml"


@dataclass
class Outcome:
    result: Run
    before: dict
    after: dict


@pytest.fixture(scope="module")
def outcomes(git_source: Path, broken_lock_source: Path, bare_inventory: Path) -> dict[str, Outcome]:
    """Every case run once: each application's cases in turn, the two applications at the same time."""

    def track(app: App) -> dict[str, Outcome]:
        done = {}
        before = snapshot(app)
        for case in (case for case in CASES if case.app is app):
            extra_vars = dict(case.extra_vars)
            if case.id == "missing-git-ref":
                extra_vars["greenlight_source_dir"] = str(git_source)
            if case.id == "uv-lock-malformed":
                extra_vars["greenlight_source_dir"] = str(broken_lock_source)
            result = run(
                app,
                "v1",
                *case.args,
                playbook=case.playbook,
                inventory=bare_inventory if case.bare_inventory else None,
                extra_vars=extra_vars,
            )
            after = snapshot(app)
            done[case.id] = Outcome(result, before, after)
            before = after
        return done

    with ThreadPoolExecutor(max_workers=2) as pool:
        tracks = list(pool.map(track, (SIMPLE, BLUE_GREEN)))
    return {**tracks[0], **tracks[1]}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_before_any_change(case: Case, outcomes: dict[str, Outcome]):
    outcome = outcomes[case.id]
    result = outcome.result
    print(f"{case.id} ({case.app.name}): rc={result.rc} in {result.seconds:.1f} s, output in {result.log}")
    assert result.rc != 0, result
    missing = [words for words in case.expect if words not in result.output]
    assert missing == [], f"the message does not say {missing}: {failure_messages(result.output)}"
    assert leaks(result.output) == []
    assert differences(outcome.before, outcome.after) == []


def failure_messages(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(("fatal:", "failed:", "  msg:", "msg:"))]
    return "\n".join(lines)[-3000:] or output[-3000:]


def test_the_cases_cover_at_least_fifteen_kinds_of_bad_input():
    assert len({case.id for case in CASES}) >= 15
    print(json.dumps([case.id for case in CASES]))
