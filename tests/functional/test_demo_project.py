"""The demo Django project in examples/demo: its builder, and every version against real Django.

Each version is built once per session, then checked with Django 5.2 on SQLite
and on PostgreSQL: ``check`` (also ``--deploy``), ``makemigrations --check
--dry-run`` (never without ``--dry-run``) and the project's own ``manage.py
test``. Secrets travel in the environment, never on the command line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo"
VERSIONS = ["v1", "v2", "v3", "v4", "v5", "v6", "v7"]
# The old-pins variant: v2's code with the requirements and settings of a 2023 tutorial project. It runs with
# its own pins (LEGACY_PINS), not with the newest Django the other versions are checked against.
LEGACY = "legacy"
LEGACY_PINS = {
    "django": "4.2.7",
    "gunicorn": "21.2.0",
    "psycopg2-binary": "2.9.9",
    "whitenoise": "6.5.0",
    "python-dotenv": "1.0.0",
}
# The src layout variant: v2's code moved under src/, no manage.py, its requirements in pyproject.toml and uv.lock.
SRC = "srclayout"
# Several databases: v2 plus an app audit routed to the alias audit (demo.routers.Router), then a version whose
# second database's migration fails.
MULTIDB = ["multidb", "multidb2", "multidb3"]
ALL_VERSIONS = [*VERSIONS, LEGACY, *MULTIDB, SRC]
OVERLAY_VERSIONS = ALL_VERSIONS[1:]
PARENTS = {
    "v1": None,
    "v2": "v1",
    "v3": "v2",
    "v4": "v2",
    "v5": "v2",
    "v6": "v2",
    "v7": "v6",
    LEGACY: "v2",
    "multidb": "v2",
    "multidb2": "multidb",
    "multidb3": "multidb2",
    SRC: "v2",
}
SOURCE_TREE = REPO / "roles" / "code_sync" / "files" / "source_tree.py"
UNMIGRATED_MODEL_CHANGES = {"v3"}  # makemigrations --check must find changes only here
DATABASES = ["sqlite", "postgresql"]
SECRET_KEY = secrets.token_urlsafe(50)
V5_FAILURE = "RuntimeError: demo v5: this data migration fails on purpose"

# What the collection reads from each version's notes migrations: {migration: (greenlight_safe, greenlight_phase)}.
MARKERS = {
    "v1": {},
    "v2": {"0003_backfill_tag": (True, None)},
    "v3": {"0003_backfill_tag": (True, None)},
    "v4": {"0003_backfill_tag": (True, None)},
    "v5": {"0003_backfill_tag": (True, None), "0005_fill_rating": (True, None)},
    "v6": {
        "0003_backfill_tag": (True, None),
        "0005_backfill_headline": (True, None),
        "0006_remove_note_title": (True, "after_switch"),
    },
}
MARKERS["v7"] = MARKERS["v6"]


def _load_builder():
    spec = importlib.util.spec_from_file_location("demo_build", DEMO / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


builder = _load_builder()


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def python(django_python) -> Path:
    return django_python("5.2")


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Factory: ``built("v4")`` -> a directory holding that version, built once per session."""
    cache: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in cache:
            cache[version] = builder.build_version(version, tmp_path_factory.mktemp(f"demo-{version}"))
        return cache[version]

    return get


@pytest.fixture
def database_url(request, tmp_path):
    """Factory: ``database_url("sqlite" | "postgresql")`` -> URL of a fresh, empty database."""

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / 'db.sqlite3'}"
        server = request.getfixturevalue("postgres")
        return server.url(server.create_database("demo"))

    return make


def django_env(database_url: str, **extra: str) -> dict[str, str]:
    """A clean environment for the project: nothing inherited that configures Django or a database."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "PG")) and name not in {"DATABASE_URL", "PYTHONPATH"}
    }
    env.update(DATABASE_URL=database_url, DJANGO_SECRET_KEY=SECRET_KEY, PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def manage(python: Path, project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "manage.py", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def output(result: subprocess.CompletedProcess) -> str:
    return f"rc={result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def make_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def overlay(root: Path, version: str, parent: str, files: dict[str, str]) -> None:
    make_tree(
        root / "overlays" / version,
        {"overlay.json": json.dumps({"parent": parent}), "VERSION": f"{version}\n", **files},
    )


def tree(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): path.read_text() for path in sorted(root.rglob("*")) if path.is_file()}


# --------------------------------------------------------------------------- build.py on synthetic trees


@pytest.fixture
def sources(tmp_path) -> Path:
    root = tmp_path / "src"
    make_tree(root / "base", {"VERSION": "v1\n", "app/a.py": "a1", "app/b.py": "b1", "docs/x.txt": "x"})
    overlay(root, "v2", "v1", {"app/a.py": "a2", "app/c.py": "c2", "app/b.py.delete": ""})
    overlay(root, "v3", "v2", {"app/b.py": "b3", "docs.delete": ""})
    return root


def test_build_follows_the_parent_chain(sources, tmp_path):
    assert builder.lineage("v3", root=sources) == ["v1", "v2", "v3"]
    assert tree(builder.build_version("v1", tmp_path / "v1", root=sources)) == {
        "VERSION": "v1\n",
        "app/a.py": "a1",
        "app/b.py": "b1",
        "docs/x.txt": "x",
    }
    assert tree(builder.build_version("v2", tmp_path / "v2", root=sources)) == {
        "VERSION": "v2\n",
        "app/a.py": "a2",
        "app/c.py": "c2",
        "docs/x.txt": "x",
    }
    # v3 brings back a file v2 deleted and deletes a whole folder; overlay.json is never copied.
    assert tree(builder.build_version("v3", tmp_path / "v3", root=sources)) == {
        "VERSION": "v3\n",
        "app/a.py": "a2",
        "app/b.py": "b3",
        "app/c.py": "c2",
    }


def test_build_refuses_a_non_empty_destination_unless_forced(sources, tmp_path):
    dest = tmp_path / "out"
    make_tree(dest, {"stale.py": "left over"})
    with pytest.raises(builder.BuildError, match="not empty"):
        builder.build_version("v2", dest, root=sources)
    assert tree(dest) == {"stale.py": "left over"}

    builder.build_version("v2", dest, force=True, root=sources)
    assert "stale.py" not in tree(dest)
    assert tree(dest)["VERSION"] == "v2\n"


def test_build_accepts_an_existing_empty_destination(sources, tmp_path):
    (tmp_path / "empty").mkdir()
    assert (builder.build_version("v1", tmp_path / "empty", root=sources) / "VERSION").read_text() == "v1\n"


def test_build_refuses_to_write_into_its_sources(sources):
    for dest in (sources, sources / "base", sources / "overlays" / "v2", sources.parent):
        with pytest.raises(builder.BuildError, match="demo sources"):
            builder.build_version("v1", dest, force=True, root=sources)
    assert (sources / "base" / "app" / "a.py").read_text() == "a1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root: None, "unknown version 'v9'"),
        (lambda root: overlay(root, "v9", "v8", {}), "unknown version 'v8'"),
        (lambda root: (overlay(root, "v8", "v9", {}), overlay(root, "v9", "v8", {})), "cycle"),
        (lambda root: overlay(root, "v9", "v1", {"gone.py.delete": ""}), "nothing to delete"),
        (lambda root: overlay(root, "v9", "v1", {"app/a.py.delete": "not empty"}), "must be empty"),
        (lambda root: overlay(root, "v9", "v1", {"VERSION": "v1\n"}), "VERSION file says 'v1'"),
        (lambda root: make_tree(root / "overlays" / "v9", {"VERSION": "v9\n"}), "overlay.json is missing"),
        (lambda root: make_tree(root / "overlays" / "v9", {"overlay.json": "{"}), "not valid JSON"),
    ],
    ids=["unknown", "unknown-parent", "cycle", "delete-missing", "marker-not-empty", "version", "no-meta", "bad-json"],
)
def test_build_errors(sources, tmp_path, change, message):
    change(sources)
    with pytest.raises(builder.BuildError, match=re.escape(message)):
        builder.build_version("v9", tmp_path / "out", root=sources)


def test_redundant_overlay_files_are_found(sources):
    assert builder.redundant_overlay_files("v2", root=sources) == []
    make_tree(sources / "overlays" / "v3", {"app/c.py": "c2", "app/new.py": "new"})
    assert builder.redundant_overlay_files("v3", root=sources) == [Path("app/c.py")]


def test_cli_list_and_build(tmp_path):
    listed = subprocess.run(
        [sys.executable, str(DEMO / "build.py"), "--list"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [
        [version, f"on {PARENTS[version]}" if PARENTS[version] else "base"] for version in ALL_VERSIONS
    ]
    dest = tmp_path / "v2"
    built = subprocess.run(
        [sys.executable, str(DEMO / "build.py"), "v2", str(dest)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    again = subprocess.run(
        [sys.executable, str(DEMO / "build.py"), "v2", str(dest)], capture_output=True, text=True, check=False
    )
    assert again.returncode == 1
    assert "--force" in again.stderr


def test_importable_as_build_from_its_folder():
    probe = subprocess.run(
        [sys.executable, "-c", "from build import build_version; print(build_version.__name__)"],
        cwd=DEMO,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout.strip() == "build_version", probe.stderr


# --------------------------------------------------------------------------- the real demo tree


def test_the_demo_has_these_versions():
    assert builder.available_versions() == ALL_VERSIONS
    assert {version: builder.parent_of(version) for version in ALL_VERSIONS} == PARENTS


@pytest.mark.parametrize("version", OVERLAY_VERSIONS)
def test_overlay_files_never_repeat_their_parent(version):
    """An overlay file identical to the one it replaces is copy-paste: drop it from the overlay."""
    assert builder.redundant_overlay_files(version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_built_version_is_complete(built, version):
    project = built(version)
    files = set(tree(project))
    assert (project / "VERSION").read_text() == f"{version}\n"
    assert {"manage.py", "requirements.txt", "demo/settings.py", "demo/urls.py", "demo/wsgi.py"} <= files
    assert {"notes/models.py", "notes/views.py", "notes/tests.py", "notes/migrations/0001_initial.py"} <= files
    assert not [name for name in files if name.endswith((".delete", "overlay.json"))]
    pins = [line for line in (project / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert pins == [
        "Django==5.2.19",
        "gunicorn==27.0.1",
        "psycopg[binary]==3.3.9",
        "uvicorn==0.55.0",
        "uvicorn-worker==0.4.0",
        "celery==5.5.3",
        "redis==5.2.1",
    ]


# --------------------------------------------------------------------------- every version against Django


@pytest.mark.parametrize("version", VERSIONS)
def test_system_checks_pass(python, built, database_url, version):
    env = django_env(database_url("sqlite"))
    result = manage(python, built(version), "check", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, output(result)
    deploy = manage(python, built(version), "check", "--deploy", "--fail-level", "WARNING", env=env)
    assert deploy.returncode == 0, output(deploy)


@pytest.mark.parametrize("version", VERSIONS)
def test_makemigrations_finds_changes_only_where_a_migration_is_missing(python, built, database_url, version):
    project = built(version)
    migrations_before = sorted((project / "notes" / "migrations").glob("*.py"))
    result = manage(python, project, "makemigrations", "--check", "--dry-run", env=django_env(database_url("sqlite")))
    if version in UNMIGRATED_MODEL_CHANGES:
        assert result.returncode == 1, output(result)
        assert "priority" in result.stdout
    else:
        assert result.returncode == 0, output(result)
        assert "No changes detected" in result.stdout
    assert sorted((project / "notes" / "migrations").glob("*.py")) == migrations_before


@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize("version", VERSIONS)
def test_project_tests_pass(python, built, database_url, version, database):
    result = manage(python, built(version), "test", "--noinput", env=django_env(database_url(database)))
    assert result.returncode == 0, output(result)
    ran = re.search(r"^Ran (\d+) tests?", result.stderr, re.MULTILINE)
    assert ran and int(ran.group(1)) >= 5, output(result)


@pytest.mark.parametrize("version", VERSIONS)
def test_migration_markers(python, built, database_url, version):
    script = (
        "import json\n"
        "from django.db.migrations.loader import MigrationLoader\n"
        "graph = MigrationLoader(None, ignore_no_migrations=True).graph\n"
        "print(json.dumps({name: [getattr(m, 'greenlight_safe', None), getattr(m, 'greenlight_phase', None)]\n"
        "    for (app, name), m in graph.nodes.items() if app == 'notes'\n"
        "    if hasattr(m, 'greenlight_safe') or hasattr(m, 'greenlight_phase')}))\n"
    )
    result = manage(python, built(version), "shell", "-c", script, env=django_env(database_url("sqlite")))
    assert result.returncode == 0, output(result)
    found = {name: tuple(value) for name, value in json.loads(result.stdout.strip().splitlines()[-1]).items()}
    assert found == MARKERS[version]


@pytest.mark.parametrize("database", DATABASES)
def test_v5_migrate_fails_half_way(python, built, database_url, database):
    project, env = built("v5"), django_env(database_url(database))
    failed = manage(python, project, "migrate", "--noinput", env=env)
    assert failed.returncode != 0, output(failed)
    assert V5_FAILURE in failed.stderr

    plan = manage(python, project, "showmigrations", "notes", env=env)
    assert plan.returncode == 0, output(plan)
    assert re.search(r"\[X\] 0004_note_rating", plan.stdout), plan.stdout
    assert re.search(r"\[ \] 0005_fill_rating", plan.stdout), plan.stdout
    schema = manage(python, project, "inspectdb", "notes_note", env=env)
    assert re.search(r"^\s+rating = ", schema.stdout, re.MULTILINE), output(schema)


# --------------------------------------------------------------------------- settings from the environment


def test_secret_key_is_required_without_debug(python, built, database_url):
    env = django_env(database_url("sqlite"))
    del env["DJANGO_SECRET_KEY"]
    refused = manage(python, built("v1"), "check", env=env)
    assert refused.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in refused.stderr
    debug = manage(python, built("v1"), "check", env={**env, "DJANGO_DEBUG": "1"})
    assert debug.returncode == 0, output(debug)


def test_https_turns_on_the_secure_settings(python, built, database_url):
    env = django_env(database_url("sqlite"), DJANGO_SECURE_SSL_REDIRECT="1")
    result = manage(python, built("v1"), "check", "--deploy", env=env)
    assert result.returncode == 0, output(result)
    assert set(re.findall(r"\(security\.(W\d+)\)", result.stdout + result.stderr)) == {"W004"}  # HSTS is opt-in
    hsts = manage(python, built("v1"), "check", "--deploy", env={**env, "DJANGO_SECURE_HSTS_SECONDS": "3600"})
    assert set(re.findall(r"\(security\.(W\d+)\)", hsts.stdout + hsts.stderr)) <= {"W005", "W021"}, output(hsts)


# --------------------------------------------------------------------------- the old-pins variant, with its own pins


@pytest.fixture(scope="session")
def legacy_python(built) -> Path:
    """A virtualenv with exactly what the variant's requirements.txt pins (cached under build/venvs)."""
    requirements = (built(LEGACY) / "requirements.txt").read_text()
    target = REPO / "build" / "venvs" / "demo-legacy"
    python = target / "bin" / "python"
    marker = target / ".greenlight-requirements"
    if not (marker.exists() and marker.read_text() == requirements and python.exists()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(target)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "/dev/stdin"],
            input=requirements,
            text=True,
            check=True,
        )
        marker.write_text(requirements)
    return python


def test_legacy_pins_the_versions_of_2023(built):
    pins = {}
    for line in (built(LEGACY) / "requirements.txt").read_text().split():
        name, version = line.split("==", 1)
        pins[name.lower()] = version
    assert {name: pins.get(name) for name in LEGACY_PINS} == LEGACY_PINS
    settings = (built(LEGACY) / "demo" / "settings.py").read_text()
    assert "DEBUG = True" in settings
    assert 'ALLOWED_HOSTS = ["demo.example.com", "localhost"]' in settings
    assert "whitenoise.storage.CompressedManifestStaticFilesStorage" in settings
    assert "load_dotenv(" in settings


@pytest.mark.parametrize("database", DATABASES)
def test_legacy_runs_its_tests_with_its_own_pins(legacy_python, built, database_url, database):
    project, env = built(LEGACY), django_env(database_url(database))
    version = subprocess.run(
        [str(legacy_python), "-m", "django", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == LEGACY_PINS["django"]
    result = manage(legacy_python, project, "test", "--noinput", env=env)
    assert result.returncode == 0, output(result)
    nothing = manage(legacy_python, project, "makemigrations", "--check", "--dry-run", env=env)
    assert nothing.returncode == 0, output(nothing)


def test_legacy_deploy_checks_warn_about_debug_but_do_not_fail(legacy_python, built, database_url):
    """What a deploy shows as warnings in its summary (at the default fail level, ERROR, they pass)."""
    project = built(LEGACY)
    result = manage(legacy_python, project, "check", "--deploy", env=django_env(database_url("sqlite")))
    assert result.returncode == 0, output(result)
    assert "(security.W018)" in result.stderr, output(result)
    static = manage(legacy_python, project, "collectstatic", "--noinput", env=django_env(database_url("sqlite")))
    assert static.returncode == 0, output(static)
    assert (project / "static" / "staticfiles.json").is_file()


# --------------------------------------------------------------------------- the src layout variant, without manage.py


def src_layout_env(database_url: str) -> dict[str, str]:
    """What code_sync gives a release built with greenlight_settings_module and greenlight_pythonpath: [src]."""
    return django_env(database_url, DJANGO_SETTINGS_MODULE="demo.settings", PYTHONPATH="src")


def test_src_layout_has_its_packages_under_src_and_no_manage_py(built):
    files = set(tree(built(SRC)))
    assert not {"manage.py", "requirements.txt", "demo/settings.py"} & files
    assert {"pyproject.toml", "uv.lock", "VERSION", "src/demo/settings.py", "src/demo/wsgi.py"} <= files
    assert "src/notes/migrations/0004_tag_untagged_srclayout.py" in files


def test_src_layout_lock_exports_to_the_demo_pins():
    """What code_sync installs from the committed uv.lock: the run-time packages as locked, no dev group, no project."""
    project = DEMO / "overlays" / SRC
    result = subprocess.run(
        [sys.executable, str(SOURCE_TREE), "inspect", "--dir", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, output(result)
    report = json.loads(result.stdout)
    assert report["requirements_from"] == "uv.lock" and report["manage_py"] is False
    pins = {
        line.split(";")[0].strip()
        for line in report["requirements"].splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert {"django==5.2.19", "gunicorn==27.0.1", "psycopg==3.3.9", "psycopg-binary==3.3.9"} <= pins, pins
    assert not [pin for pin in pins if pin.startswith(("ruff", "greenlight-demo", "-e"))], pins


@pytest.mark.parametrize("database", DATABASES)
def test_src_layout_runs_as_python_m_django(python, built, database_url, database):
    project, env = built(SRC), src_layout_env(database_url(database))
    django = [str(python), "-m", "django"]
    result = subprocess.run(
        [*django, "test", "--noinput", "notes", "demo"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, output(result)
    ran = re.search(r"^Ran (\d+) tests?", result.stderr, re.MULTILINE)
    assert ran and int(ran.group(1)) >= 5, output(result)
    nothing = subprocess.run(
        [*django, "makemigrations", "--check", "--dry-run"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert nothing.returncode == 0 and "No changes detected" in nothing.stdout, output(nothing)
    checks = subprocess.run(
        [*django, "check", "--deploy", "--fail-level", "WARNING"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checks.returncode == 0, output(checks)
    # Without the import path Django cannot find the settings: what a deploy without greenlight_pythonpath meets.
    env.pop("PYTHONPATH")
    missing = subprocess.run([*django, "check"], cwd=project, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "No module named 'demo'" in missing.stderr, output(missing)


# --------------------------------------------------------------------------- several databases


MODULE = REPO / "plugins" / "modules" / "migration_status.py"


def migration_status(python: Path, project: Path, env: dict[str, str], database: str, tmp_path: Path) -> dict:
    """greenlight.django.migration_status run the way Ansible runs it (JSON arguments file)."""
    args = {
        "project_path": str(project),
        "python": str(python),
        "database": database,
        "environment": {key: value for key, value in env.items() if key.startswith(("DJANGO_", "DATABASE_URL"))},
        "fail_on": ["conflicts"],
    }
    args_file = tmp_path / f"args-{database}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    module_env = dict(os.environ, PYTHONPATH=str(REPO / "build" / "collections"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)],
        capture_output=True,
        text=True,
        env=module_env,
        timeout=300,
        check=False,
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, result
    return result


def test_several_databases_each_alias_gets_what_the_router_sends_it(python, built, tmp_path):
    """multidb on three SQLite aliases: migrate per alias puts the audit table only in audit, nothing in replica;
    migration_status says which aliases the project migrates and why, and what each one misses."""
    files = {alias: tmp_path / f"{alias}.sqlite3" for alias in ("default", "audit", "replica")}
    env = django_env(
        f"sqlite:///{files['default']}",
        DJANGO_DATABASES="audit,replica",
        DATABASE_URL_AUDIT=f"sqlite:///{files['audit']}",
        DATABASE_URL_REPLICA=f"sqlite:///{files['replica']}",
    )
    project = built("multidb")
    for name in files:
        files[name].touch()
    before = migration_status(python, project, env, "audit", tmp_path)
    by_alias = {entry["alias"]: entry for entry in before["databases"]}
    assert list(by_alias) == ["default", "audit", "replica"]
    assert by_alias["default"]["migrated"] and "notes" in by_alias["default"]["apps"]
    assert by_alias["audit"]["migrated"] and by_alias["audit"]["apps"] == ["audit"]
    assert not by_alias["replica"]["migrated"] and by_alias["replica"]["apps"] == []
    assert "replica" in by_alias["replica"]["why"]
    assert "audit.0001_initial" in before["plan"]

    for alias in ("default", "audit"):
        migrated = manage(python, project, "migrate", "--noinput", "--database", alias, env=env)
        assert migrated.returncode == 0, output(migrated)
    tables = {
        alias: subprocess.run(
            ["sqlite3", str(path), ".tables"], capture_output=True, text=True, check=True
        ).stdout.split()
        for alias, path in files.items()
    }
    assert "audit_event" in tables["audit"] and "notes_note" not in tables["audit"]
    assert "notes_note" in tables["default"] and "audit_event" not in tables["default"]
    assert tables["replica"] == []
    after = migration_status(python, project, env, "audit", tmp_path)
    assert after["plan"] == []

    # multidb2 adds a migration to each database; multidb3's audit one fails on audit only (RunPython skips it on
    # default, where notes.0005 changes rows).
    upgraded = built("multidb2")
    default_plan = migration_status(python, upgraded, env, "default", tmp_path)["plan"]
    assert sorted(default_plan) == ["audit.0002_event_source", "notes.0004_note_audited"]
    failing = built("multidb3")
    assert manage(python, failing, "migrate", "--noinput", env=env).returncode == 0
    failed = manage(python, failing, "migrate", "--noinput", "--database", "audit", env=env)
    assert failed.returncode != 0 and "the audit backfill failed" in failed.stderr
    assert (
        "source"
        in subprocess.run(
            ["sqlite3", str(files["audit"]), "PRAGMA table_info(audit_event)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_without_routers_only_default_is_migrated(python, built, tmp_path):
    """The single-database versions: every other alias of DATABASES would be left alone (none here)."""
    env = django_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    (tmp_path / "db.sqlite3").touch()
    result = migration_status(python, built("v2"), env, "default", tmp_path)
    assert [(entry["alias"], entry["migrated"]) for entry in result["databases"]] == [("default", True)]
    assert "no DATABASE_ROUTERS" in result["databases"][0]["why"]
