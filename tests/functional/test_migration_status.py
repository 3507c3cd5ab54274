"""greenlight.django.migration_status against real Django projects and databases.

Every project is written by the tests into a temporary directory. The module
runs for real: mostly as ``python plugins/modules/migration_status.py ARGS``
(the way Ansible runs a module, minus the packaging), and in a few cases
through ``ansible-playbook`` so that the AnsiballZ payload (and the inspector
shipped inside it) is exercised too.

Matrix: the core cases (the classification table on one big plan, with SQL,
model changes without a migration, and the verdicts proven by the old code)
run on Django 4.2, 5.2 and 6.0, each on SQLite and PostgreSQL; data loss, the
new code's direction, reversing a drop, tables created in the plan and the
PostgreSQL locks on Django 5.2 and 6.0. Django 6.0 needs Python 3.12+: it runs
on the Python 3.13 of the Debian 13 base image, in a container (see
``django_python`` in conftest.py). The rest runs on Django 5.2 with SQLite,
plus the PostgreSQL-only cases (authentication failure, read-only transaction).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "build" / "collections"
MODULE = REPO / "plugins" / "modules" / "migration_status.py"
VENV_BIN = Path(sys.executable).parent

ID_FIELD = 'models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")'

SETTINGS = """\
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "functional-tests-only"
DEBUG = False
INSTALLED_APPS = {apps!r}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

_url = os.environ.get("DATABASE_URL", "")
if _url.startswith("postgres"):
    _parts = urlsplit(_url)
    DATABASES = {{
        "default": {{
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _parts.path.lstrip("/"),
            "USER": unquote(_parts.username or ""),
            "PASSWORD": unquote(_parts.password or ""),
            "HOST": _parts.hostname,
            "PORT": str(_parts.port or 5432),
        }}
    }}
else:
    DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}}}
{extra}
"""

MANAGE_PY = """\
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{package}.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def migration_source(dependencies, operations, attributes="", prelude=""):
    """Text of a migration file; ``operations`` is Python source, one operation per line or more."""
    body = textwrap.indent(textwrap.dedent(operations).strip(), " " * 8)
    attrs = textwrap.indent(textwrap.dedent(attributes).strip(), " " * 4)
    return (
        "import django.db.models.deletion\n"
        "from django.db import migrations, models\n"
        "from django.db.models import Q\n\n"
        f"{textwrap.dedent(prelude).strip()}\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = {dependencies!r}\n"
        f"{attrs}\n"
        "    operations = [\n"
        f"{body}\n"
        "    ]\n"
    )


def module_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(COLLECTIONS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_module(args, check_mode=False, tmp_dir=None):
    """Run the module like Ansible does (JSON arguments file); return (rc, result)."""
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode)}
    args_file = Path(tmp_dir or "/tmp") / f"migration-status-args-{os.getpid()}.json"
    args_file.write_text(json.dumps(payload))
    try:
        proc = subprocess.run(
            [sys.executable, str(MODULE), str(args_file)],
            capture_output=True,
            text=True,
            env=module_env(),
            timeout=300,
            check=False,
        )
    finally:
        args_file.unlink()
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"module printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, result


@dataclass
class Project:
    root: Path
    python: Path
    version: str
    db: str
    env: dict = field(default_factory=dict)
    postgres: object = None
    database: str | None = None
    package: str = "proj"
    inspected: dict | None = None  # the module's last result in build_proof, for its before_migrate hook

    def write(self, relative, text):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def setup(self, apps, settings_extra=""):
        self.write("manage.py", MANAGE_PY.format(package=self.package))
        self.write(f"{self.package}/__init__.py", "")
        self.write(f"{self.package}/settings.py", SETTINGS.format(apps=list(apps), extra=settings_extra))
        for app in apps:
            if "." in app:
                continue
            self.write(f"{app}/__init__.py", "")
            self.write(f"{app}/migrations/__init__.py", "")
            if not (self.root / app / "models.py").exists():
                self.write(f"{app}/models.py", "from django.db import models\n")
        return self

    def migration(self, app, name, dependencies, operations, attributes="", prelude=""):
        return self.write(
            f"{app}/migrations/{name}.py", migration_source(dependencies, operations, attributes, prelude)
        )

    def manage(self, *args, check=True):
        env = dict(os.environ, **self.env)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("DJANGO_SETTINGS_MODULE", None)
        proc = subprocess.run(
            [str(self.python), "manage.py", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sql(self, statement):
        if self.db == "postgresql":
            self.postgres.psql(statement, database=self.database)
            return
        with sqlite3.connect(self.root / "db.sqlite3") as conn:
            conn.execute(statement)

    def record(self, app, name):
        values = f"'{app}', '{name}', CURRENT_TIMESTAMP"
        self.sql(f"INSERT INTO django_migrations (app, name, applied) VALUES ({values})")  # noqa: S608 - test data

    def forget(self, app, name):
        self.sql(f"DELETE FROM django_migrations WHERE app = '{app}' AND name = '{name}'")  # noqa: S608 - test data

    def args(self, **extra):
        args = {"project_path": str(self.root), "venv": str(self.python.parent.parent)}
        if self.env:
            args["environment"] = dict(self.env)
        args.update(extra)
        return args

    def run(self, check_mode=False, **extra):
        return run_module(self.args(**extra), check_mode=check_mode, tmp_dir=self.root.parent)

    def snapshot(self):
        """Every path under the project with its size and mtime."""
        files = {}
        for path in sorted(self.root.rglob("*")):
            stat = path.lstat()
            files[str(path.relative_to(self.root))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
        return files

    def drop_bytecode(self):
        for cache in self.root.rglob("__pycache__"):
            for item in cache.iterdir():
                item.unlink()
            cache.rmdir()


@pytest.fixture(scope="module")
def make_project(tmp_path_factory, django_python, request):
    """Factory: ``make_project("5.2", "sqlite")`` -> an empty Project with its own database."""

    def make(version="5.2", db="sqlite"):
        root = tmp_path_factory.mktemp(f"dj{version.replace('.', '')}-{db}") / "project"
        root.mkdir()
        project = Project(root=root, python=django_python(version), version=version, db=db)
        if db == "postgresql":
            server = request.getfixturevalue("postgres")
            if django_python.in_container(version):  # reach the server across the session's docker network
                server = server.on_network()
            project.postgres = server
            project.database = server.create_database("ms")
            project.env = {"DATABASE_URL": server.url(project.database)}
        return project

    return make


CORE_MATRIX = [
    pytest.param(("4.2", "sqlite"), id="django4.2-sqlite"),
    pytest.param(("4.2", "postgresql"), id="django4.2-postgresql"),
    pytest.param(("5.2", "sqlite"), id="django5.2-sqlite"),
    pytest.param(("5.2", "postgresql"), id="django5.2-postgresql"),
    pytest.param(("6.0", "sqlite"), id="django6.0-sqlite"),
    pytest.param(("6.0", "postgresql"), id="django6.0-postgresql"),
]
# The verdicts proven by migrating and running the old (and new) code: on the two newest series.
NEWEST = CORE_MATRIX[2:]

# ---------------------------------------------------------------------------
# The classification table, on one plan of 30-odd pending migrations
# ---------------------------------------------------------------------------

C, U, X = "compatible", "unknown", "incompatible"  # X: incompatible

SHOP_INITIAL = f"""
migrations.CreateModel(name="Category", fields=[("id", {ID_FIELD}), ("title", models.CharField(max_length=50))]),
migrations.CreateModel(
    name="Product",
    fields=[
        ("id", {ID_FIELD}),
        ("name", models.CharField(max_length=100)),
        ("body", models.TextField()),
        ("price", models.IntegerField()),
        ("code", models.CharField(max_length=10)),
        ("note", models.CharField(max_length=50, null=True)),
        ("sku", models.CharField(max_length=20)),
        ("old_name", models.CharField(max_length=30)),
        ("flag", models.BooleanField(default=False)),
    ],
),
migrations.CreateModel(name="Legacy", fields=[("id", {ID_FIELD}), ("x", models.IntegerField())]),
migrations.CreateModel(
    name="Kept", fields=[("id", {ID_FIELD}), ("title", models.CharField(max_length=20))],
    options={{"db_table": "shop_kept"}},
),
migrations.CreateModel(name="Moving", fields=[("id", {ID_FIELD}), ("title", models.CharField(max_length=20))]),
migrations.CreateModel(name="Tabled", fields=[("id", {ID_FIELD}), ("title", models.CharField(max_length=20))]),
migrations.CreateModel(
    name="Outside", fields=[("id", {ID_FIELD}), ("title", models.CharField(max_length=20))],
    options={{"managed": False, "db_table": "outside_table"}},
),
"""

SHOP_OPERATIONS_PY = '''\
from pathlib import Path

from django.db.migrations.operations.base import Operation

PROJECT = Path(__file__).resolve().parents[1]


class LogMessage(Operation):
    """A third-party operation whose database_forwards leaves a trace if it ever runs."""

    reversible = True

    def __init__(self, message):
        self.message = message

    def deconstruct(self):
        return (self.__class__.__name__, [self.message], {})

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        (PROJECT / "THIRD_PARTY_OPERATION_RAN").write_text(self.message)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return f"Log {self.message}"
'''

RUNPYTHON_PRELUDE = """
from pathlib import Path


def fill(apps, schema_editor):
    (Path(__file__).resolve().parents[2] / "RUNPYTHON_RAN").write_text("ran")


def unfill(apps, schema_editor):
    pass
"""


def shop_plan(version):
    """(name, operations, attributes, prelude, expected (compatibility, destructive, reversible, accepted))."""
    check_kwarg = "condition" if version >= "5.1" else "check"
    # fmt: off
    plan = [
        ("0002_product_subtitle",
         'migrations.AddField("product", "subtitle", models.CharField(max_length=50, null=True)),',
         "", "", (C, False, True, False)),
        ("0003_product_stock",
         'migrations.AddField("product", "stock", models.IntegerField(default=0)),',
         "", "", (X, False, True, False)),
    ]
    if version >= "5.0":
        plan.append(("0004_product_rank",
                     'migrations.AddField("product", "rank", models.IntegerField(db_default=0)),',
                     "", "", (C, False, True, False)))
    plan += [
        ("0005_product_categories",
         'migrations.AddField("product", "categories", models.ManyToManyField(to="shop.category")),',
         "", "", (C, False, True, False)),
        ("0006_remove_product_body", 'migrations.RemoveField("product", "body"),', "", "", (X, True, False, False)),
        ("0007_delete_legacy", 'migrations.DeleteModel("Legacy"),', "", "", (X, True, True, False)),
        ("0008_rename_old_name", 'migrations.RenameField("product", "old_name", "new_name"),',
         "", "", (X, False, True, False)),
        ("0009_rename_kept", 'migrations.RenameModel("Kept", "Keeper"),', "", "", (C, False, True, False)),
        ("0010_rename_moving", 'migrations.RenameModel("Moving", "Moved"),', "", "", (X, False, True, False)),
        ("0011_tabled_table", 'migrations.AlterModelTable("tabled", "shop_tabled_v2"),',
         "", "", (X, False, True, False)),
        ("0012_note_not_null",
         'migrations.AlterField("product", "note", models.CharField(default="", max_length=50), '
         "preserve_default=False),",
         "", "", (X, False, True, False)),
        ("0013_price_text", 'migrations.AlterField("product", "price", models.CharField(max_length=20)),',
         "", "", (X, False, True, False)),
        ("0014_code_longer", 'migrations.AlterField("product", "code", models.CharField(max_length=40)),',
         "", "", (C, False, True, False)),
        ("0015_name_help_text",
         'migrations.AlterField("product", "name", models.CharField(help_text="Shown in lists", max_length=100)),',
         "", "", (C, False, True, False)),
        ("0016_sku_unique", 'migrations.AlterField("product", "sku", models.CharField(max_length=20, unique=True)),',
         "", "", (X, False, True, False)),
        ("0017_unique_together", 'migrations.AlterUniqueTogether("product", {("name", "code")}),',
         "", "", (X, False, True, False)),
        ("0018_drop_unique_together", 'migrations.AlterUniqueTogether("product", set()),',
         "", "", (C, False, True, False)),
        ("0019_unique_name",
         'migrations.AddConstraint("product", '
         'models.UniqueConstraint(fields=["name"], name="shop_product_name_uniq")),',
         "", "", (X, False, True, False)),
        ("0020_check_code",
         f'migrations.AddConstraint("product", models.CheckConstraint({check_kwarg}=~Q(code=""), '
         'name="shop_product_code_set")),',
         "", "", (U, False, True, False)),
        ("0021_drop_check", 'migrations.RemoveConstraint("product", "shop_product_code_set"),',
         "", "", (C, False, True, False)),
        ("0022_review",
         f'migrations.CreateModel(name="Review", fields=[("id", {ID_FIELD}), ("text", models.TextField()), '
         '("product", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="shop.product"))]),',
         "", "", (C, False, True, False)),
        ("0023_review_index",
         'migrations.AddIndex("review", models.Index(fields=["text"], name="shop_review_text_idx")),',
         "", "", (C, False, True, False)),
        ("0024_drop_review_index", 'migrations.RemoveIndex("review", "shop_review_text_idx"),',
         "", "", (C, False, True, False)),
        ("0025_product_options",
         'migrations.AlterModelOptions("product", {"ordering": ["name"]}),\n'
         'migrations.AlterModelManagers("product", managers=[]),',
         "", "", (C, False, True, False)),
        ("0026_fill_codes", "migrations.RunPython(fill),", "", RUNPYTHON_PRELUDE, (U, False, False, False)),
        ("0027_fill_codes_reviewed", "migrations.RunPython(fill, unfill),", "greenlight_safe = True",
         RUNPYTHON_PRELUDE, (C, False, True, True)),
        ("0028_purge_categories", 'migrations.RunSQL("DELETE FROM shop_category WHERE id < 0"),',
         "", "", (U, True, False, False)),
        ("0029_reviewed_sql",
         'migrations.RunSQL("UPDATE shop_product SET code = code WHERE 1 = 0", '
         "reverse_sql=migrations.RunSQL.noop),",
         "greenlight_safe = True", "", (C, False, True, True)),
        ("0030_forget_flag",
         'migrations.SeparateDatabaseAndState(state_operations=[migrations.RemoveField("product", "flag")]),',
         "", "", (C, False, True, False)),
        ("0031_drop_category_title",
         "migrations.SeparateDatabaseAndState(\n"
         '    state_operations=[migrations.RemoveField("category", "title")],\n'
         '    database_operations=[migrations.RemoveField("category", "title")],\n'
         "),",
         "", "", (X, True, True, False)),
        ("0032_third_party", 'LogMessage("hello"),', "", "from shop.operations import LogMessage",
         (U, False, True, False)),
        ("0033_delete_outside", 'migrations.DeleteModel("Outside"),', "", "", (C, False, True, False)),
        ("0034_new_name_nullable",
         'migrations.AlterField("product", "new_name", models.CharField(max_length=30, null=True)),',
         "", "", (C, False, True, False)),
        ("0035_remove_moved_title", 'migrations.RemoveField("moved", "title"),', "greenlight_safe = True", "",
         (C, True, False, True)),
        ("0036_delete_tabled", 'migrations.DeleteModel("Tabled"),', 'greenlight_phase = "after_switch"', "",
         (X, True, True, False)),
    ]
    # fmt: on
    return plan


def shop_models(version):
    rank = "    rank = models.IntegerField(db_default=0)\n" if version >= "5.0" else ""
    return f"""\
from django.db import models


class Category(models.Model):
    pass


class Product(models.Model):
    name = models.CharField(max_length=100, help_text="Shown in lists")
    price = models.CharField(max_length=20)
    code = models.CharField(max_length=40)
    note = models.CharField(max_length=50)
    sku = models.CharField(max_length=20, unique=True)
    new_name = models.CharField(max_length=30, null=True)
    subtitle = models.CharField(max_length=50, null=True)
    stock = models.IntegerField(default=0)
{rank}    categories = models.ManyToManyField(Category)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["name"], name="shop_product_name_uniq")]


class Keeper(models.Model):
    title = models.CharField(max_length=20)

    class Meta:
        db_table = "shop_kept"


class Moved(models.Model):
    pass


class Review(models.Model):
    text = models.TextField()
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
"""


# Writes to fd 1 directly, bypassing sys.stdout: the module must still find its result.
NOISY_SETTINGS = 'os.write(1, b"noise from the settings module on stdout\\n")\n'


def build_shop(project):
    project.setup(["shop"], settings_extra=NOISY_SETTINGS)
    project.write("shop/operations.py", SHOP_OPERATIONS_PY)
    project.migration("shop", "0001_initial", [], SHOP_INITIAL, attributes="initial = True")
    project.manage("migrate", "-v0")
    previous = "0001_initial"
    for name, operations, attributes, prelude, _expected in shop_plan(project.version):
        project.migration("shop", name, [("shop", previous)], operations, attributes, prelude)
        previous = name
    project.write("shop/models.py", shop_models(project.version))
    project.drop_bytecode()
    return project


@pytest.fixture(scope="module", params=CORE_MATRIX)
def shop(request, make_project):
    """The shop project on one combination, run once with include_sql and no fail_on."""
    version, db = request.param
    project = build_shop(make_project(version, db))
    before = project.snapshot()
    rc, result = project.run(include_sql=True, fail_on=[])
    after = project.snapshot()
    return project, rc, result, before, after


def _pending_by_name(result):
    return {item["name"]: item for item in result["pending"]}


def test_shop_plan_and_summary(shop):
    project, rc, result, _before, _after = shop
    assert rc == 0, result
    expected = [f"shop.{entry[0]}" for entry in shop_plan(project.version)]
    assert result["plan"] == expected
    assert result["changed"] is False
    assert result["backward_compatible"] is False
    assert result["destructive"] is True
    assert result["before_switch"] == expected[:-1]
    assert result["after_switch"] == ["shop.0036_delete_tabled"]
    assert result["phase_errors"] == []
    assert result["failed_conditions"] == []
    assert result["database"] == {"alias": "default", "vendor": project.db}
    assert result["django_version"].startswith(project.version)
    # The models match the end of the plan: the in-memory autodetector finds nothing.
    assert result["unmigrated_changes"] == {}


def test_shop_inspection_wrote_nothing(shop):
    project, _rc, _result, before, after = shop
    assert after == before
    assert not (project.root / "RUNPYTHON_RAN").exists()
    assert not (project.root / "THIRD_PARTY_OPERATION_RAN").exists()


@pytest.mark.parametrize("name", [entry[0] for entry in shop_plan("5.2")])
def test_shop_classification(shop, name):
    project, _rc, result, _before, _after = shop
    plan = {entry[0]: entry for entry in shop_plan(project.version)}
    if name not in plan:
        pytest.skip("db_default needs Django 5.0+")
    _name, _ops, _attrs, _prelude, (compatibility, destructive, reversible, accepted) = plan[name]
    item = _pending_by_name(result)[name]
    assert (item["compatibility"], item["destructive"], item["reversible"], item["accepted"]) == (
        compatibility,
        destructive,
        reversible,
        accepted,
    ), item
    for op in item["operations"]:
        assert {"type", "description", "compatibility", "destructive", "data_loss", "reversible", "fails"} <= set(op)
        assert op["reason"]


def test_shop_reasons_and_sql(shop):
    project, _rc, result, _before, _after = shop
    pending = _pending_by_name(result)
    remove = pending["0006_remove_product_body"]
    assert remove["operations"][0]["reason"].startswith("Old code still selects this column")
    assert any('"body"' in line or "body" in line for line in remove["sql"] if not line.startswith("--"))
    if project.db == "postgresql":
        assert any("DROP COLUMN" in line for line in remove["sql"])
    # A state-only AlterField: Django emits no SQL for it.
    assert "-- (no-op)" in pending["0015_name_help_text"]["sql"]
    assert pending["0009_rename_kept"]["sql"].count("-- (no-op)") == 1
    assert "-- THIS OPERATION CANNOT BE WRITTEN AS SQL" in pending["0026_fill_codes"]["sql"]
    assert any(
        "third-party operation shop.operations.LogMessage" in line for line in pending["0032_third_party"]["sql"]
    )
    assert "DELETE FROM shop_category WHERE id < 0;" in pending["0028_purge_categories"]["sql"]
    accepted = pending["0035_remove_moved_title"]["operations"][0]
    assert accepted["reason"].startswith("Accepted by greenlight_safe = True (otherwise incompatible)")
    third = pending["0032_third_party"]["operations"][0]
    assert third["type"] == "LogMessage" and "shop.operations.LogMessage" in third["reason"]
    separate = pending["0031_drop_category_title"]["operations"][0]
    assert separate["reason"].startswith("Judged by its database_operations")
    assert pending["0002_product_subtitle"]["sql"][0] == "BEGIN;"
    assert pending["0002_product_subtitle"]["sql"][-1] == "COMMIT;"


def test_shop_without_sql_classifies_the_same(make_project):
    project = build_shop(make_project("5.2", "sqlite"))
    rc, plain = project.run(fail_on=[])
    _rc, with_sql = project.run(fail_on=[], include_sql=True)
    assert rc == 0
    assert all("sql" not in item for item in plain["pending"])
    errors = {}
    for item in with_sql["pending"]:
        del item["sql"]
        for op in item["operations"]:
            if "sql_error" in op:
                errors[item["name"]] = op.pop("sql_error")
    for op in (op for result in (plain, with_sql) for item in result["pending"] for op in item["operations"]):
        if op["data_check"]:
            op["data_check"].pop("seconds")  # how long a data check took differs from run to run
    assert plain["pending"] == with_sql["pending"]
    # The constraint that 0017 adds is not in the database yet: sqlmigrate cannot name it either.
    assert list(errors) == ["0018_drop_unique_together"] and "Found wrong number (0) of constraints" in str(errors)
    rc, failed = project.run(fail_on=["incompatible", "destructive"])
    assert rc == 1 and failed["failed"] is True
    assert failed["failed_conditions"] == ["incompatible", "destructive"]
    msg = failed["msg"]
    assert "shop.0006_remove_product_body: Remove field body from product (incompatible: Old code" in msg
    assert "shop.0026_fill_codes: Raw Python operation (unknown:" in msg
    assert "shop.0036_delete_tabled" not in msg.split("— not backward compatible")[0]  # after_switch
    assert "shop.0036_delete_tabled (Delete model Tabled)" in msg
    assert failed["plan"] == plain["plan"]  # the whole result comes with the failure


# ---------------------------------------------------------------------------
# Model changes without a migration file (core matrix)
# ---------------------------------------------------------------------------

NOTES_INITIAL = f"""
migrations.CreateModel(
    name="Note",
    fields=[("id", {ID_FIELD}), ("title", models.CharField(max_length=100)), ("body", models.TextField())],
),
"""

NOTES_MODELS = """\
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=100)
    body = models.TextField()
"""


def build_notes(project, models=NOTES_MODELS):
    project.setup(["notes"])
    project.write("notes/models.py", NOTES_MODELS)
    project.migration("notes", "0001_initial", [], NOTES_INITIAL, attributes="initial = True")
    project.manage("migrate", "-v0")
    project.write("notes/models.py", models)
    project.drop_bytecode()
    return project


@pytest.mark.parametrize("combo", CORE_MATRIX)
def test_unmigrated_changes_are_reported_and_no_file_appears(make_project, combo):
    version, db = combo
    project = build_notes(make_project(version, db), NOTES_MODELS + "    priority = models.IntegerField(default=0)\n")
    before = project.snapshot()
    rc, result = project.run()
    assert project.snapshot() == before, "the inspection created or changed a file"
    assert rc == 1 and result["failed"] is True
    assert result["unmigrated_changes"] == {"notes": ["Add field priority to note"]}
    assert result["failed_conditions"] == ["unmigrated_changes"]
    assert result["msg"] == (
        "notes: Add field priority to note — model changes without a migration file. Run `manage.py "
        "makemigrations` in development, commit the file, and deploy again; never run makemigrations on a server."
    )
    assert result["plan"] == []
    # Django agrees (dry run only).
    check = project.manage("makemigrations", "--check", "--dry-run", check=False)
    assert check.returncode == 1 and "priority" in check.stdout
    assert project.snapshot() == before


# ---------------------------------------------------------------------------
# Phases (Django 5.2, SQLite)
# ---------------------------------------------------------------------------


def build_phases(project, rating_depends_on="0003_drop_body"):
    build_notes(project)
    project.migration(
        "notes",
        "0002_note_summary",
        [("notes", "0001_initial")],
        'migrations.AddField("note", "summary", models.TextField(null=True)),',
    )
    project.migration(
        "notes",
        "0003_drop_body",
        [("notes", "0002_note_summary")],
        'migrations.RemoveField("note", "body"),',
        attributes='greenlight_phase = "after_switch"',
    )
    project.migration(
        "notes",
        "0004_note_rating",
        [("notes", rating_depends_on)],
        'migrations.AddField("note", "rating", models.IntegerField(null=True)),',
    )
    project.migration(
        "notes",
        "0005_note_stars",
        [("notes", "0004_note_rating")],
        'migrations.AddField("note", "stars", models.IntegerField(null=True)),',
        attributes='greenlight_phase = "before_switch"',
    )
    project.write(
        "notes/models.py",
        "from django.db import models\n\n\nclass Note(models.Model):\n"
        "    title = models.CharField(max_length=100)\n"
        "    summary = models.TextField(null=True)\n"
        "    rating = models.IntegerField(null=True)\n"
        "    stars = models.IntegerField(null=True)\n",
    )
    return project


def test_phase_split_and_phase_errors(make_project):
    project = build_phases(make_project("5.2", "sqlite"))
    rc, result = project.run()
    assert rc == 1
    assert result["failed_conditions"] == ["phase_errors"]
    assert result["plan"] == [
        "notes.0002_note_summary",
        "notes.0003_drop_body",
        "notes.0004_note_rating",
        "notes.0005_note_stars",
    ]
    assert result["before_switch"] == ["notes.0002_note_summary", "notes.0004_note_rating", "notes.0005_note_stars"]
    assert result["after_switch"] == ["notes.0003_drop_body"]
    # The after_switch RemoveField is incompatible, but it runs after the switch.
    assert result["backward_compatible"] is True
    assert result["destructive"] is True
    assert len(result["phase_errors"]) == 2
    direct, transitive = result["phase_errors"]
    assert direct.startswith("notes.0004_note_rating is before_switch but depends on notes.0003_drop_body, which")
    assert transitive.startswith(
        "notes.0005_note_stars is before_switch but depends on notes.0003_drop_body (through notes.0004_note_rating)"
    )
    assert result["msg"].startswith("Phase errors: notes.0004_note_rating is before_switch")


def test_phase_without_errors_passes_in_check_mode(make_project):
    project = build_phases(make_project("5.2", "sqlite"), rating_depends_on="0002_note_summary")
    # 0005 depends on 0004 only; 0003 (after_switch) is now a leaf of its own branch -> a conflict.
    project.migration(
        "notes",
        "0006_merge",
        [("notes", "0003_drop_body"), ("notes", "0005_note_stars")],
        "",
        attributes='greenlight_phase = "after_switch"',
    )
    before = project.snapshot()
    rc, result = project.run(check_mode=True)
    assert rc == 0, result
    assert result["changed"] is False
    assert result["phase_errors"] == []
    assert result["before_switch"] == ["notes.0002_note_summary", "notes.0004_note_rating", "notes.0005_note_stars"]
    assert result["after_switch"] == ["notes.0003_drop_body", "notes.0006_merge"]
    assert project.snapshot() == before


def test_invalid_phase_value(make_project):
    project = build_notes(make_project("5.2", "sqlite"), NOTES_MODELS + "    extra = models.TextField(null=True)\n")
    project.migration(
        "notes",
        "0002_extra",
        [("notes", "0001_initial")],
        'migrations.AddField("note", "extra", models.TextField(null=True)),',
        attributes='greenlight_phase = "after-switch"',
    )
    rc, result = project.run()
    assert rc == 1
    assert result["phase_errors"] == [
        "notes.0002_extra has greenlight_phase = 'after-switch'; use 'before_switch' or 'after_switch' (it is "
        "treated as before_switch until fixed)."
    ]
    assert result["before_switch"] == ["notes.0002_extra"]


# ---------------------------------------------------------------------------
# History problems: conflicts, unknown applied, inconsistent, squashed
# ---------------------------------------------------------------------------


def build_history_problems(project):
    project.setup(["notes", "books", "tags"])
    project.write("notes/models.py", NOTES_MODELS)
    project.migration("notes", "0001_initial", [], NOTES_INITIAL, attributes="initial = True")
    book = f'migrations.CreateModel(name="Book", fields=[("id", {ID_FIELD}), ("title", models.TextField())]),'
    project.migration("books", "0001_initial", [], book, attributes="initial = True")
    project.migration(
        "books",
        "0002_book_isbn",
        [("books", "0001_initial")],
        'migrations.AddField("book", "isbn", models.TextField(null=True)),',
    )
    project.migration(
        "books",
        "0003_book_year",
        [("books", "0002_book_isbn")],
        'migrations.AddField("book", "year", models.IntegerField(null=True)),',
    )
    tag = f'migrations.CreateModel(name="Tag", fields=[("id", {ID_FIELD}), ("label", models.TextField())]),'
    project.migration("tags", "0001_initial", [], tag, attributes="initial = True")
    project.migration(
        "tags",
        "0002_tag_color",
        [("tags", "0001_initial")],
        'migrations.AddField("tag", "color", models.TextField(null=True)),',
    )
    project.manage("migrate", "-v0")
    # Conflict: two leaves in notes.
    project.migration(
        "notes",
        "0002_note_summary",
        [("notes", "0001_initial")],
        'migrations.AddField("note", "summary", models.TextField(null=True)),',
    )
    project.migration(
        "notes",
        "0002_note_rating",
        [("notes", "0001_initial")],
        'migrations.AddField("note", "rating", models.IntegerField(null=True)),',
    )
    project.write(
        "notes/models.py",
        NOTES_MODELS + "    summary = models.TextField(null=True)\n    rating = models.IntegerField(null=True)\n",
    )
    # Squash books and delete the replaced files: applied, not recorded yet.
    for name in ("0001_initial", "0002_book_isbn", "0003_book_year"):
        (project.root / "books" / "migrations" / f"{name}.py").unlink()
    project.migration(
        "books",
        "0001_squashed_0003_book_year",
        [],
        f'migrations.CreateModel(name="Book", fields=[("id", {ID_FIELD}), ("title", models.TextField()), '
        '("isbn", models.TextField(null=True)), ("year", models.IntegerField(null=True))]),',
        attributes='initial = True\nreplaces = [("books", "0001_initial"), ("books", "0002_book_isbn"), '
        '("books", "0003_book_year")]',
    )
    project.write(
        "books/models.py",
        "from django.db import models\n\n\nclass Book(models.Model):\n"
        "    title = models.TextField()\n    isbn = models.TextField(null=True)\n"
        "    year = models.IntegerField(null=True)\n",
    )
    project.write(
        "tags/models.py",
        "from django.db import models\n\n\nclass Tag(models.Model):\n"
        "    label = models.TextField()\n    color = models.TextField(null=True)\n",
    )
    # Unknown applied: rows without files (another release, an app that is gone).
    project.record("notes", "0009_from_the_future")
    project.record("oldapp", "0001_initial")
    # Inconsistent: tags.0002 recorded, its dependency tags.0001 not.
    project.forget("tags", "0001_initial")
    project.drop_bytecode()
    return project


@pytest.mark.parametrize("combo", [CORE_MATRIX[2], CORE_MATRIX[3]])
def test_history_problems(make_project, combo):
    version, db = combo
    project = build_history_problems(make_project(version, db))
    rc, result = project.run()
    assert rc == 1
    assert result["failed_conditions"] == ["conflicts", "unknown_applied", "inconsistent_history"]
    assert result["conflicts"] == {"notes": ["0002_note_rating", "0002_note_summary"]}
    assert result["unknown_applied"] == ["notes.0009_from_the_future"]
    assert result["uninstalled_applied"] == ["oldapp.0001_initial"]  # an app the code no longer has
    assert result["squashed_unrecorded"] == ["books.0001_squashed_0003_book_year"]
    assert "tags.0002_tag_color is applied before its dependency tags.0001_initial" in result["inconsistent_history"]
    assert result["unmigrated_changes"] == {}
    msg = result["msg"]
    assert "notes: 0002_note_rating, 0002_note_summary — conflicting migrations" in msg
    assert "makemigrations --merge" in msg
    assert "notes.0009_from_the_future — recorded as applied in the database" in msg
    assert "oldapp" not in msg  # not failing by default
    assert "— inconsistent migration history" in msg
    # Reporting only.
    rc, report = project.run(fail_on=[])
    assert rc == 0 and report["failed_conditions"] == []


# ---------------------------------------------------------------------------
# Bad input: one clear paragraph, never a traceback, never a secret
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_notes(make_project):
    return build_notes(make_project("5.2", "sqlite"))


def _assert_one_paragraph(result):
    assert result["failed"] is True
    msg = result["msg"]
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_missing_manage_py_without_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    rc, result = run_module({"project_path": str(tmp_path)}, tmp_dir=tmp_path)
    assert rc == 1
    assert _assert_one_paragraph(result) == (
        f"There is no manage.py in {tmp_path} and no settings module is given: for a project without manage.py (a "
        "src layout, a packaged project) set the settings option (or DJANGO_SETTINGS_MODULE in environment) and "
        "pythonpath to the directories its packages are in (e.g. src); otherwise set project_path to the directory "
        "that contains manage.py."
    )
    rc, result = run_module({"project_path": str(tmp_path / "nope")}, tmp_dir=tmp_path)
    assert rc == 1 and result["msg"].startswith(f"project_path {tmp_path / 'nope'} is not a directory")


def test_src_layout_without_manage_py(plain_notes, tmp_path):
    """The packages under src/, no manage.py: the settings and the import path say where Django is."""
    layout = tmp_path / "srclayout"
    shutil.copytree(plain_notes.root, layout / "src", ignore=shutil.ignore_patterns("manage.py", "__pycache__"))
    args = dict(plain_notes.args(), project_path=str(layout))
    rc, result = run_module(dict(args, settings="proj.settings", pythonpath=["src"]), tmp_dir=tmp_path)
    assert rc == 0, result
    assert result["plan"] == [], result  # 0001 is recorded in src/db.sqlite3, the database the settings name
    # Without the import path the settings cannot be found, and the message says where it looked.
    rc, result = run_module(dict(args, settings="proj.settings"), tmp_dir=tmp_path)
    assert rc == 1
    assert "'proj.settings' does not import: ModuleNotFoundError: No module named 'proj'" in result["msg"]
    assert "pythonpath" in result["msg"]


def test_missing_interpreters(plain_notes, tmp_path):
    rc, result = run_module({"project_path": str(plain_notes.root), "venv": str(tmp_path / "nope")})
    assert rc == 1 and "The virtualenv" in _assert_one_paragraph(result) and "does not exist" in result["msg"]
    rc, result = run_module({"project_path": str(plain_notes.root), "python": str(tmp_path / "python3")})
    assert rc == 1 and "does not exist or is not executable" in _assert_one_paragraph(result)
    rc, result = run_module({"project_path": str(plain_notes.root), "python": "no-such-python3"})
    assert rc == 1 and "No no-such-python3 interpreter is on PATH" in _assert_one_paragraph(result)
    rc, result = run_module(
        {"project_path": str(plain_notes.root), "venv": str(plain_notes.python.parent.parent), "python": "python3"}
    )
    assert rc == 1 and "mutually exclusive" in result["msg"]


def test_interpreter_without_django(plain_notes):
    rc, result = run_module({"project_path": str(plain_notes.root), "python": sys.executable})
    assert rc == 1
    msg = _assert_one_paragraph(result)
    assert msg.startswith(f"The interpreter {sys.executable} (Python ")
    assert "cannot import Django: ModuleNotFoundError: No module named 'django'." in msg
    assert msg.endswith("Point venv (or python) at the interpreter of the application's virtualenv.")


def test_settings_that_do_not_import(plain_notes):
    rc, result = plain_notes.run(settings="proj.nope")
    assert rc == 1
    msg = _assert_one_paragraph(result)
    assert msg.startswith(
        "The settings module 'proj.nope' does not import: ModuleNotFoundError: No module named 'proj.nope'."
    )
    plain_notes.write("proj/broken.py", "from proj.settings import *\nimport dj_not_installed\n")
    rc, result = plain_notes.run(settings="proj.broken")
    assert "'proj.broken' does not import: ModuleNotFoundError: No module named 'dj_not_installed'" in result["msg"]


def test_settings_default_from_manage_py_and_environment(plain_notes):
    rc, result = plain_notes.run()
    assert rc == 0 and result["plan"] == []
    # environment wins over manage.py
    rc, result = plain_notes.run(environment={"DJANGO_SETTINGS_MODULE": "proj.absent"})
    assert rc == 1 and "'********' does not import" in result["msg"]  # environment values are masked by Ansible
    manage = plain_notes.root / "manage.py"
    text = manage.read_text()
    manage.write_text(text.replace('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")', "pass"))
    try:
        rc, result = plain_notes.run()
        assert rc == 1
        assert _assert_one_paragraph(result).startswith("The settings module is not known: set the settings option")
        rc, result = plain_notes.run(settings="proj.settings")
        assert rc == 0
    finally:
        manage.write_text(text)


def test_unknown_database_alias(plain_notes):
    rc, result = plain_notes.run(database="reporting")
    assert rc == 1
    assert _assert_one_paragraph(result) == (
        "The database alias 'reporting' is not in DATABASES (known aliases: default). Set database to one of those "
        "aliases."
    )


def test_pythonpath_option(plain_notes, tmp_path):
    extra = tmp_path / "extra"
    (extra / "othersettings").mkdir(parents=True)
    (extra / "othersettings" / "__init__.py").write_text("from proj.settings import *\n")
    rc, result = plain_notes.run(settings="othersettings")
    assert rc == 1 and "No module named 'othersettings'" in result["msg"]
    rc, result = plain_notes.run(settings="othersettings", pythonpath=[str(extra)])
    assert rc == 0, result


def test_env_files_are_read_on_the_host_with_startup_variables_from_the_venv(plain_notes, tmp_path):
    """env_files: the application's variables read where the module runs; the venv's greenlight-django.env gives
    the settings module and the import path of a project without manage.py."""
    layout = tmp_path / "srclayout"
    shutil.copytree(plain_notes.root, layout / "src", ignore=shutil.ignore_patterns("manage.py", "__pycache__"))
    (layout / "src" / "proj" / "envsettings.py").write_text(
        "import os\nfrom proj.settings import *\nDATABASES['default']['NAME'] = os.environ['NOTES_DB']\n"
    )
    venv = tmp_path / "venv"
    shutil.copytree(plain_notes.python.parent.parent, venv, symlinks=True)
    env_file = tmp_path / "shared.env"
    database = layout / "src" / "db.sqlite3"
    env_file.write_text(f'# written by code_sync\nNOTES_DB="{database}"\nDJANGO_SETTINGS_MODULE=proj.absent\n')
    args = {"project_path": str(layout), "venv": str(venv), "env_files": [str(env_file)]}
    # Without greenlight-django.env, the settings module comes from the env file, and it does not import.
    rc, result = run_module(args, tmp_dir=tmp_path)
    assert rc == 1 and "'proj.absent' does not import" in result["msg"], result
    (venv / "greenlight-django.env").write_text(f"DJANGO_SETTINGS_MODULE=proj.envsettings\nPYTHONPATH={layout}/src\n")
    rc, result = run_module(args, tmp_dir=tmp_path)
    assert rc == 0, result
    assert result["plan"] == [], result  # 0001 is recorded in the database NOTES_DB names
    assert str(database) not in json.dumps(result)  # a value of an env file is a secret, masked like environment's
    # environment wins over the files.
    rc, result = run_module(dict(args, environment={"NOTES_DB": str(tmp_path / "elsewhere.sqlite3")}), tmp_dir=tmp_path)
    assert rc == 0 and result["plan"] == ["notes.0001_initial"], result
    # A file that is missing, or a line that is not KEY=value, is named.
    rc, result = run_module(dict(args, env_files=[str(tmp_path / "nope.env")]), tmp_dir=tmp_path)
    assert rc == 1
    assert _assert_one_paragraph(result).startswith(f"cannot read {tmp_path / 'nope.env'}: No such file or directory.")
    env_file.write_text("NOTES_DB=x\nnot a variable\n")
    rc, result = run_module(args, tmp_dir=tmp_path)
    assert rc == 1 and result["msg"].startswith(f"{env_file} line 2: expected KEY=value."), result


def test_missing_sqlite_file_is_an_empty_database(make_project):
    project = make_project("5.2", "sqlite")
    project.setup(["notes"])
    project.write("notes/models.py", NOTES_MODELS)
    project.migration("notes", "0001_initial", [], NOTES_INITIAL, attributes="initial = True")
    before = project.snapshot()
    rc, result = project.run()
    assert rc == 0, result
    assert result["plan"] == ["notes.0001_initial"]
    # Warnings are structured in a module's raw output (ansible-core 2.19+), plain strings before.
    assert "does not exist yet; it was inspected as an empty database" in json.dumps(result.get("warnings"))
    assert project.snapshot() == before  # no db.sqlite3 appeared


def test_postgres_bad_password_never_leaks(make_project):
    project = build_notes(make_project("5.2", "postgresql"))
    server = project.postgres
    wrong = "Wr0ng-pass-" + os.urandom(4).hex()
    url = f"postgres://{server.user}:{wrong}@{server.host}:{server.port}/{project.database}"
    rc, result = project.run(environment={"DATABASE_URL": url})
    assert rc == 1
    msg = _assert_one_paragraph(result)
    assert msg.startswith("The database 'default' (postgresql) is not reachable: ")
    assert "password authentication failed" in msg
    assert msg.endswith("and that the server accepts connections from this host.")
    assert wrong not in json.dumps(result)
    rc, result = project.run()
    assert rc == 0 and result["database"] == {"alias": "default", "vendor": "postgresql"}


def test_postgres_inspection_is_read_only(make_project):
    project = build_notes(make_project("5.2", "postgresql"), NOTES_MODELS)
    project.migration(
        "notes",
        "0002_note_summary",
        [("notes", "0001_initial")],
        'migrations.AddField("note", "summary", models.TextField(null=True)),',
    )
    # A migration file that writes when it is imported: the read-only transaction stops it.
    project.migration(
        "notes",
        "0003_sneaky",
        [("notes", "0002_note_summary")],
        "",
        prelude="from django.db import connection, transaction\n\n"
        "try:\n"
        "    with transaction.atomic(), connection.cursor() as c:\n"
        "        c.execute(\"INSERT INTO django_migrations (app, name, applied) VALUES ('x', 'y', now())\")\n"
        "except Exception as exc:\n"
        "    import sys\n"
        "    print('write refused:', exc, file=sys.stderr)\n",
    )
    rc, result = project.run(fail_on=[], include_sql=True)
    assert rc == 0, result
    assert result["plan"] == ["notes.0002_note_summary", "notes.0003_sneaky"]
    count = project.postgres.psql("SELECT count(*) FROM django_migrations WHERE app = 'x'", database=project.database)
    assert count == "0"


# ---------------------------------------------------------------------------
# Through Ansible itself: AnsiballZ packaging, check mode, no_log
# ---------------------------------------------------------------------------

PLAYBOOK = """\
- name: migration_status end to end
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Report only
      greenlight.django.migration_status:
        project_path: "{{{{ project }}}}"
        venv: "{{{{ venv }}}}"
        fail_on: []
        include_sql: true
        environment: "{{{{ app_env }}}}"
      register: report

    - name: Default fail_on
      greenlight.django.migration_status:
        project_path: "{{{{ project }}}}"
        venv: "{{{{ venv }}}}"
        environment: "{{{{ app_env }}}}"
      register: strict
      ignore_errors: true

    - name: Keep the results
      ansible.builtin.copy:
        content: "{{{{ {{'report': report, 'strict': strict}} | to_json }}}}"
        dest: "{out}"
        mode: "0600"
      check_mode: false
"""


@pytest.mark.parametrize("check", [False, True], ids=["run", "check_mode"])
def test_through_ansible_playbook(make_project, tmp_path, check):
    project = build_notes(make_project("5.2", "postgresql"), NOTES_MODELS + "    tag = models.TextField(null=True)\n")
    project.migration(
        "notes",
        "0002_drop_body",
        [("notes", "0001_initial")],
        'migrations.RemoveField("note", "body"),',
        attributes='greenlight_phase = "after_switch"',
    )
    out = tmp_path / "results.json"
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(PLAYBOOK.format(out=out))
    extra = {"project": str(project.root), "venv": str(project.python.parent.parent), "app_env": project.env}
    command = [str(VENV_BIN / "ansible-playbook"), "-v", str(playbook), "-e", json.dumps(extra)]
    if check:
        command.append("--check")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env["ANSIBLE_NOCOLOR"] = "1"
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    report, strict = results["report"], results["strict"]
    assert report["changed"] is False and report["failed_conditions"] == []
    assert report["after_switch"] == ["notes.0002_drop_body"]
    assert report["pending"][0]["operations"][0]["type"] == "RemoveField"
    assert any("DROP COLUMN" in line for line in report["pending"][0]["sql"])
    assert strict["failed"] is True and strict["failed_conditions"] == ["unmigrated_changes"]
    assert "notes: Add field tag to note — model changes without a migration file" in strict["msg"]
    password = project.postgres.password
    assert password not in proc.stdout and password not in proc.stderr
    assert password not in out.read_text()


# ---------------------------------------------------------------------------
# Verdicts proven by the old code: each case is an app of one project whose
# 0001 is migrated and seeded with rows by the old models; the module judges
# the pending 0002; then 0002 is applied and the OLD code reads, inserts,
# updates and deletes against the new schema. "compatible" must coincide with
# the migration and every old query succeeding.
# ---------------------------------------------------------------------------

PROOF_MODELS = """\
from django.db import models


class Owner(models.Model):
    name = models.CharField(max_length=20)


class Item(models.Model):
    code = models.CharField(max_length=10)
    qty = models.IntegerField(default=0)
    owner = models.ForeignKey(Owner, on_delete=models.CASCADE, null=True)
"""

PROOF_INITIAL = f"""
migrations.CreateModel(name="Owner", fields=[("id", {ID_FIELD}), ("name", models.CharField(max_length=20))]),
migrations.CreateModel(
    name="Item",
    fields=[
        ("id", {ID_FIELD}),
        ("code", models.CharField(max_length=10)),
        ("qty", models.IntegerField(default=0)),
        ("owner", models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, to="{{app}}.owner")),
    ],
),
"""

# Runs the old release's code: seeds rows, or reads/inserts/updates/deletes, per app; prints JSON.
OLD_CODE = """\
import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
django.setup()
from django.apps import apps  # noqa: E402
from django.db import transaction  # noqa: E402

mode, specs = sys.argv[1], json.loads(sys.argv[2])
results = {}
if mode == "tables":
    from django.db import connection  # noqa: E402

    with connection.cursor() as cursor:
        listed = connection.introspection.get_table_list(cursor)
    results = {kind: sorted(t.name for t in listed if t.type == kind[0]) for kind in ("tables", "views")}
for app, spec in specs.items():
    model = apps.get_model(app, spec.get("model", "Item"))
    owner = apps.get_model(app, "Owner")
    if mode == "rows":
        results[app] = sorted(model.objects.values_list("code", "qty", "owner_id"))
        continue
    if mode == "seed":
        first = owner.objects.create(name="first")
        for row in ({"code": "a", "qty": 1}, {"code": "b", "qty": 2}):
            apps.get_model(app, "Item").objects.create(owner=first, **row)
        continue
    outcome = results[app] = {}

    def attempt(name, action):
        try:
            with transaction.atomic():
                action()
            outcome[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure of the old code counts
            outcome[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]

    attempt("insert", lambda: model.objects.create(**spec.get("insert", {})))
    if "link" in spec:  # the new code adds a row of a new model to a many-to-many field of the first row
        field, related = spec["link"]
        first = model.objects.order_by("pk").first()
        attempt("link", lambda: getattr(first, field).add(apps.get_model(app, related).objects.create()))
    if mode == "insert":
        continue
    attempt("read", lambda: list(model.objects.all()))
    attempt("update", lambda: model.objects.order_by("pk").first().save())
    attempt("delete", lambda: model.objects.order_by("pk").first().delete())
print(json.dumps(results))
"""


def proof_cases(version):
    """(app, 0002 operations, what the old code inserts, model it exercises, expected compatibility)."""
    fk = (
        'migrations.AlterField("item", "owner", models.ForeignKey(null=True, to="{app}.owner", {extra}'
        "on_delete=django.db.models.deletion.CASCADE)),"
    )
    unique_default = "db_default=0" if version >= "5.0" else "default=0"
    # fmt: off
    return [
        # False "compatible" before: a column rename through db_column, also on a ForeignKey.
        ("p_dbcolumn", 'migrations.AlterField("item", "code", models.CharField(max_length=10, db_column="ref")),',
         {"code": "c"}, "Item", X),
        ("p_fkcolumn", fk.format(app="p_fkcolumn", extra='db_column="owner_ref", '), {"code": "c"}, "Item", X),
        # A CHECK that Django adds with the field: the old code's write of -5 fails.
        ("p_check", 'migrations.AlterField("item", "qty", models.PositiveIntegerField(default=0)),',
         {"code": "c", "qty": -5}, "Item", X),
        # A unique NOT NULL column with a constant default: the migration fails on two rows.
        ("p_unique", f'migrations.AddField("item", "serial", models.IntegerField({unique_default}, unique=True)),',
         {"code": "c"}, "Item", X),
        # Controls: the same kinds of change that the old code survives.
        ("p_wider", 'migrations.AlterField("item", "code", models.CharField(max_length=40)),',
         {"code": "c"}, "Item", C),
        ("p_uniquenull", 'migrations.AddField("item", "serial", models.IntegerField(null=True, unique=True)),',
         {"code": "c"}, "Item", C),
        ("p_fkindex", fk.format(app="p_fkindex", extra="db_index=False, "), {"code": "c"}, "Item", C),
        # RenameModel + AlterModelTable back to the old table (what makemigrations writes when db_table is kept).
        ("p_renameback", 'migrations.RenameModel("Owner", "Person"),\n'
         'migrations.AlterModelTable("person", "p_renameback_owner"),', {"name": "n"}, "Owner", C),
        ("p_rename", 'migrations.RenameModel("Owner", "Person"),', {"name": "n"}, "Owner", X),
    ]
    # fmt: on


def _json_line(proc):
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1])


def run_old_code(project, mode, specs):
    proc = subprocess.run(
        [str(project.python), "old_code.py", mode, json.dumps(specs)],
        cwd=project.root, capture_output=True, text=True, env=dict(os.environ, **project.env), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return _json_line(proc)


def build_proof(project, changes, specs=None, before_migrate=None, before_inspect=None):
    """One app per entry of ``changes`` (app -> (operations, attributes, prelude)), 0001 migrated and seeded
    by the old code, 0002 pending and judged (``before_inspect()`` runs just before), then migrated
    (``before_migrate()`` runs just before). Returns (module result, migrate outcome per app)."""
    apps = list(changes)
    project.setup(apps)
    for app in apps:
        project.write(f"{app}/models.py", PROOF_MODELS)
        project.migration(app, "0001_initial", [], PROOF_INITIAL.replace("{app}", app), attributes="initial = True")
    project.write("old_code.py", OLD_CODE)
    project.manage("migrate", "-v0")
    run_old_code(project, "seed", specs or {app: {} for app in apps})
    for app, (operations, attributes, prelude) in changes.items():
        project.migration(app, "0002_change", [(app, "0001_initial")], operations, attributes, prelude)
    project.drop_bytecode()
    if before_inspect:
        before_inspect()
    rc, result = project.run(fail_on=[], include_sql=True)
    assert rc == 0, result
    project.inspected = result
    if before_migrate:
        before_migrate()
    migrated = {app: project.manage("migrate", app, "-v0", check=False) for app in apps}
    return result, migrated


def pending_of(result, app, name="0002_change"):
    return next(item for item in result["pending"] if item["app"] == app and item["name"] == name)


@pytest.fixture(scope="module", params=CORE_MATRIX)
def proof(request, make_project):
    """The proof project on one combination: verdicts, migrate outcome per app, old code's outcome per app."""
    version, db = request.param
    project = make_project(version, db)
    cases = proof_cases(version)
    specs = {app: {"insert": insert, "model": model} for app, _ops, insert, model, _expected in cases}
    changes = {app: (operations, "", "") for app, operations, _insert, _model, _expected in cases}
    result, migrated = build_proof(project, changes, specs)
    return project, cases, result, migrated, run_old_code(project, "exercise", specs)


@pytest.mark.parametrize("app", [case[0] for case in proof_cases("5.2")])
def test_verdict_agrees_with_the_old_code(proof, app):
    project, cases, result, migrated, old = proof
    expected = {case[0]: case[4] for case in cases}[app]
    item = pending_of(result, app)
    migrate_ok = migrated[app].returncode == 0
    old_code_ok = migrate_ok and all(outcome == "ok" for outcome in old[app].values())
    reality = f"migrate rc={migrated[app].returncode} {migrated[app].stderr[-300:]} old code: {old[app]}"
    assert item["compatibility"] == expected, (item, reality)
    assert (item["compatibility"] == C) == old_code_ok, (item, reality)
    assert item["destructive"] is False and item["data_loss"] == "no"
    assert all(op.get("sql_error") is None for op in item["operations"]), item


DELETE_ROWS_PRELUDE = """
def purge(apps, schema_editor):
    apps.get_model("d_python", "Item").objects.filter(qty=1).delete()
"""


def data_cases(db):
    """app -> (0002 operations, prelude, data_loss the module must report)."""
    if db == "sqlite":
        trigger = "CREATE TRIGGER d_trigger_audit AFTER DELETE ON d_trigger_item BEGIN SELECT 1; END"
        grant = "CREATE INDEX d_grant_code ON d_grant_item (code)"  # SQLite has no GRANT
    else:
        trigger = (
            "CREATE FUNCTION d_trigger_f() RETURNS trigger AS $$ BEGIN RETURN OLD; END; $$ LANGUAGE plpgsql; "
            "CREATE TRIGGER d_trigger_audit AFTER DELETE ON d_trigger_item FOR EACH ROW EXECUTE FUNCTION d_trigger_f()"
        )
        grant = "GRANT DELETE ON d_grant_item TO PUBLIC"
    # fmt: off
    return {
        "d_trigger": (f"migrations.RunSQL({trigger!r}),", "", "no"),
        "d_view": ('migrations.RunSQL("DROP VIEW d_view_v"),', "", "no"),  # the view exists (see below)
        "d_grant": (f"migrations.RunSQL({grant!r}),", "", "no"),
        "d_update": ('migrations.RunSQL("UPDATE d_update_item SET owner_id = NULL"),', "", "unknown"),
        "d_python": ("migrations.RunPython(purge),", DELETE_ROWS_PRELUDE, "unknown"),
        "d_delete": ('migrations.RunSQL("DELETE FROM d_delete_item WHERE qty = 1"),', "", "yes"),
    }
    # fmt: on


@pytest.mark.parametrize("combo", NEWEST)
def test_data_loss_agrees_with_the_rows(make_project, combo):
    """data_loss "no" only when the rows stay as they were; "yes" only when rows go; else "unknown"."""
    version, db = combo
    project = make_project(version, db)
    cases = data_cases(db)
    changes = {app: (operations, "", prelude) for app, (operations, prelude, _loss) in cases.items()}
    specs = {app: {} for app in cases}
    view = "CREATE VIEW d_view_v AS SELECT id, code FROM d_view_item"
    if db == "postgresql":  # created by the superuser: hand it to the application's user, who drops it
        view += f"; ALTER VIEW d_view_v OWNER TO {project.postgres.user}"
    result, migrated = build_proof(project, changes, specs, before_inspect=lambda: project.sql(view))
    after = run_old_code(project, "rows", specs)
    old = run_old_code(project, "exercise", {app: {"insert": {"code": "o"}} for app in cases})
    seeded = [("a", 1), ("b", 2)]
    for app, (_operations, _prelude, loss) in cases.items():
        assert migrated[app].returncode == 0, migrated[app].stderr
        item = pending_of(result, app)
        rows = after[app]
        unchanged = [(code, qty) for code, qty, _owner in rows] == seeded and all(row[2] for row in rows)
        assert item["data_loss"] == loss, (app, item)
        assert item["destructive"] is (loss == "yes")
        # Raw SQL and Python: greenlight cannot know what they do to the old code, and says so.
        assert item["compatibility"] == U, (app, item)
        if loss == "no":
            assert unchanged, (app, rows)
            assert set(old[app].values()) == {"ok"}, (app, old[app])  # and the old code keeps working
        else:
            assert not unchanged, (app, rows)  # the rows really changed: "no" would have been a lie
    # The statements judged "no" did run: the view is gone, and on PostgreSQL everyone may delete.
    tables = run_old_code(project, "tables", {})
    assert "d_view_v" not in tables["views"] and "d_view_item" in tables["tables"], tables
    if db == "postgresql":
        acl = "SELECT relacl::text FROM pg_class WHERE relname = 'd_grant_item'"
        acl = project.postgres.psql(acl, project.database)
        assert "=d/" in acl, acl  # PUBLIC (empty grantee) has DELETE


THING_INITIAL = f"""
migrations.CreateModel(name="Thing", fields=[("id", {ID_FIELD}), ("title", models.CharField(max_length=20))]),
"""

THING_0002 = """
migrations.AddField("thing", "size", models.IntegerField(default=0), preserve_default=False),
migrations.AlterField("thing", "title", models.CharField(max_length=20, unique=True)),
migrations.RemoveField("thing", "title"),
"""


@pytest.mark.parametrize("combo", NEWEST)
def test_tables_created_in_the_plan_are_new_to_the_old_code(make_project, combo):
    """A new app whose 0002 alters its own 0001, and django.contrib.sites added to a running project."""
    version, db = combo
    project = make_project(version, db)
    result, migrated = build_proof(project, {"p_old": ('migrations.RunSQL(""),', "", "")})
    project.setup(["p_old", "thing", "django.contrib.sites"])
    project.migration("thing", "0001_initial", [], THING_INITIAL, attributes="initial = True")
    project.migration("thing", "0002_reshape", [("thing", "0001_initial")], THING_0002)
    project.drop_bytecode()
    rc, result = project.run(fail_on=["incompatible", "destructive"])
    assert rc == 0, result["msg"]
    assert "thing.0002_reshape" in result["plan"] and "sites.0002_alter_domain_unique" in result["plan"]
    assert result["backward_compatible"] is True and result["destructive"] is False
    assert result["data_loss"] == "no"
    reshape = pending_of(result, "thing", "0002_reshape")
    assert [op["reason"].startswith("The table was created earlier") for op in reshape["operations"]] == [True] * 3
    # The proof: the migrations run, and the old code keeps working.
    project.manage("migrate", "-v0")
    old = run_old_code(project, "exercise", {"p_old": {"insert": {"code": "c"}}})
    assert set(old["p_old"].values()) == {"ok"}, old


@pytest.mark.parametrize("combo", NEWEST)
def test_fresh_database_destroys_nothing(make_project, combo):
    version, db = combo
    project = make_project(version, db)
    project.setup(["django.contrib.contenttypes", "django.contrib.auth", "notes"])
    project.write("notes/models.py", NOTES_MODELS)
    project.migration("notes", "0001_initial", [], NOTES_INITIAL, attributes="initial = True")
    rc, result = project.run(fail_on=["incompatible", "destructive"])
    assert rc == 0, result["msg"]
    assert "contenttypes.0002_remove_content_type_name" in result["plan"]
    assert result["destructive"] is False and result["data_loss"] == "no" and result["backward_compatible"] is True


@pytest.mark.parametrize("combo", NEWEST)
def test_non_transactional_operation_in_an_atomic_migration_fails(make_project, combo):
    version, db = combo
    project = make_project(version, db)
    prelude = "from django.contrib.postgres.operations import AddIndexConcurrently"
    index = 'AddIndexConcurrently("item", models.Index(fields=["code"], name="{app}_code_idx")),'
    result, migrated = build_proof(
        project,
        {
            "c_atomic": (index.format(app="c_atomic"), "", prelude),
            "c_plain": (index.format(app="c_plain"), "atomic = False", prelude),
        },
    )
    failing = [line for line in result["failing"] if line.startswith("c_atomic.")]
    plain = pending_of(result, "c_plain")
    assert migrated["c_atomic"].returncode != 0  # the proof: migrate fails
    assert failing and pending_of(result, "c_atomic")["fails"] is True
    if db == "postgresql":
        assert "cannot run inside a transaction" in failing[0]
        assert migrated["c_plain"].returncode == 0
        assert plain["fails"] is False and "c_plain.0002_change" not in " ".join(result["failing"])
        assert any("CONCURRENTLY" in line for line in plain["sql"]), plain["sql"]
        assert "sql_error" not in plain["operations"][0]
    else:
        assert "exists only on PostgreSQL" in failing[0]
        assert migrated["c_plain"].returncode != 0 and plain["fails"] is True
        assert "TypeError" not in json.dumps(plain)


def test_uninstalled_app_is_told_apart_from_a_missing_migration(make_project):
    project = make_project("5.2", "sqlite")
    build_proof(project, {"keep": ('migrations.RunSQL(""),', "", ""), "gone": ('migrations.RunSQL(""),', "", "")})
    settings = project.root / "proj" / "settings.py"
    settings.write_text(settings.read_text().replace("['keep', 'gone']", "['keep']"))
    project.drop_bytecode()
    rc, result = project.run()
    assert rc == 0, result
    assert result["uninstalled_applied"] == ["gone.0001_initial", "gone.0002_change"]
    assert result["unknown_applied"] == []
    assert project.manage("migrate", "--check", check=False).returncode == 0  # Django agrees: nothing to do
    project.record("keep", "0009_future")
    rc, result = project.run(fail_on=["unknown_applied", "uninstalled_applied"])
    assert rc == 1 and result["failed_conditions"] == ["unknown_applied", "uninstalled_applied"]
    assert "keep.0009_future — recorded as applied in the database but missing" in result["msg"]
    assert "gone.0001_initial, gone.0002_change — recorded as applied for app(s) gone that are not in" in result["msg"]


@pytest.mark.parametrize("combo", [CORE_MATRIX[0], CORE_MATRIX[2]])
def test_inconsistent_history_does_not_advise_makemigrations(make_project, combo):
    version, db = combo
    project = make_project(version, db)
    project.setup(["notes"])
    project.write("notes/models.py", NOTES_MODELS + "    x = models.IntegerField(null=True)\n")
    project.migration("notes", "0001_initial", [], NOTES_INITIAL, attributes="initial = True")
    project.migration(
        "notes",
        "0002_x",
        [("notes", "0001_initial")],
        'migrations.AddField("note", "x", models.IntegerField(null=True)),',
    )
    project.migration("notes", "0003_noop", [("notes", "0002_x")], 'migrations.RunSQL(""),')
    project.manage("migrate", "-v0")
    project.forget("notes", "0002_x")
    rc, result = project.run()
    assert rc == 1 and result["failed_conditions"] == ["inconsistent_history"]
    assert result["unmigrated_changes"] == {}
    assert "makemigrations" not in result["msg"]
    # Django agrees that the models match the migrations (it refuses to look while the history is broken).
    project.record("notes", "0002_x")
    assert project.manage("makemigrations", "--check", "--dry-run", check=False).returncode == 0


@pytest.mark.parametrize("combo", NEWEST)
def test_reverse_of_a_drop(make_project, combo):
    """reversible: false when the reverse fails; reverse_loses_data when it works but the values are gone."""
    version, db = combo
    project = make_project(version, db)
    result, migrated = build_proof(
        project,
        {
            "r_notnull": ('migrations.RemoveField("item", "code"),', "", ""),
            "r_nullable": ('migrations.RemoveField("item", "owner"),', "", ""),
        },
    )
    notnull, nullable = pending_of(result, "r_notnull"), pending_of(result, "r_nullable")
    assert (notnull["reversible"], notnull["reverse_loses_data"]) == (False, True)
    assert (nullable["reversible"], nullable["reverse_loses_data"]) == (True, True)
    assert all(proc.returncode == 0 for proc in migrated.values())
    assert project.manage("migrate", "r_notnull", "0001", check=False).returncode != 0
    assert project.manage("migrate", "r_nullable", "0001", check=False).returncode == 0
    rows = run_old_code(project, "rows", {"r_nullable": {}})["r_nullable"]
    assert [row[2] for row in rows] == [None, None]  # reversed, but the owners are gone


@pytest.mark.parametrize("version", ["5.2", "6.0"], ids=["django5.2", "django6.0"])
def test_postgresql_lock_agrees_with_a_table_rewrite(make_project, version):
    """lock names the rewrite of int -> bigint (the table's file changes), and not a longer varchar (it stays);
    lock_table tells the rewrite of a 20,000-row table from that of a 2-row one, as the table's file shows."""
    project = make_project(version, "postgresql")
    filenode = "SELECT pg_relation_filenode('{app}_item')"
    bigint = 'migrations.AlterField("item", "qty", models.BigIntegerField(default=0)),'
    changes = {
        "l_bigint": (bigint, "", ""),
        "l_small": (bigint, "", ""),
        "l_varchar": ('migrations.AlterField("item", "code", models.CharField(max_length=40)),', "", ""),
    }
    before = {}

    def grow():
        project.sql(
            "INSERT INTO l_bigint_item (code, qty) SELECT 'g', n FROM generate_series(1, 20000) AS n; "
            "ANALYZE l_bigint_item; ANALYZE l_small_item"
        )

    def remember():
        for app in changes:
            before[app] = project.postgres.psql(filenode.format(app=app), database=project.database)

    result, migrated = build_proof(project, changes, before_migrate=remember, before_inspect=grow)
    assert all(proc.returncode == 0 for proc in migrated.values())
    for app in changes:
        after = project.postgres.psql(filenode.format(app=app), database=project.database)
        lock = pending_of(result, app)["operations"][0]["lock"]
        assert (lock is not None) == (after != before[app]), (app, lock, before[app], after)
    big, small = (pending_of(result, app)["operations"][0] for app in ("l_bigint", "l_small"))
    assert big["lock"].startswith("Changing the column type rewrites")
    assert [line.split(":")[0] for line in result["locking"]] == ["l_bigint.0002_change", "l_small.0002_change"]
    assert pending_of(result, "l_varchar")["operations"][0]["lock_table"] is None
    # The row count PostgreSQL itself reports for the table the migration rewrote.
    rows = int(project.postgres.psql("SELECT count(*) FROM l_bigint_item", database=project.database))
    assert big["lock_table"]["name"] == "l_bigint_item" and small["lock_table"]["estimated_rows"] == 2
    assert abs(big["lock_table"]["estimated_rows"] - rows) <= rows * 0.05, (rows, big)
    assert big["lock_table"]["bytes"] > 50 * small["lock_table"]["bytes"] > 0
    assert f"Table l_bigint_item: about {big['lock_table']['estimated_rows']:,} rows, " in big["lock"], big


def migrate_while_the_old_code_waits(project, app, table):
    """``migrate app`` on PostgreSQL while the old code's query on ``table`` waits in the lock queue behind the
    migration's first lock on it (a reader holds the table until both wait). Returns the old code's outcome."""
    server, database = project.postgres, project.database
    waiting = (
        "SELECT count(*) FROM pg_stat_activity "  # noqa: S608 - test data
        f"WHERE datname = '{database}' AND wait_event_type = 'Lock'"
    )

    def wait_for(count):
        for _attempt in range(300):  # bounded: at most about 30 s
            if int(server.psql(waiting, database)) >= count:
                return
            time.sleep(0.1)
        pytest.fail(f"{count} session(s) never waited for the lock on {table}")

    reader = subprocess.Popen(
        ["docker", "exec", "-i", "-u", "postgres", server.container, "psql", "-XAtq", "-d", database],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    env = dict(os.environ, **project.env, PYTHONDONTWRITEBYTECODE="1")
    try:
        reader.stdin.write(f"BEGIN; LOCK TABLE {table} IN ACCESS SHARE MODE; SELECT 'locked';\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "locked"
        migrate = subprocess.Popen(
            [str(project.python), "manage.py", "migrate", app, "-v0"],
            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(1)
        spec = json.dumps({app: {"model": "Owner", "insert": {"name": "w"}}})
        old = subprocess.Popen(
            [str(project.python), "old_code.py", "exercise", spec],
            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(2)
    finally:
        reader.communicate("COMMIT;\n", timeout=30)
    _out, err = migrate.communicate(timeout=120)
    assert migrate.returncode == 0, err
    out, err = old.communicate(timeout=120)
    assert old.returncode == 0, err
    return _json_line(subprocess.CompletedProcess(old.args, 0, out, err))[app]


def test_table_renamed_back_by_a_later_migration(make_project):
    """RenameModel + AlterModelTable back cancel out in one atomic migration, not across two migrations of the
    plan (here with another app's migration between them): each commits on its own, and the old code's query
    that waits for the rename's lock finds no table. The same old query waits and succeeds in the first case."""
    project = make_project("5.2", "postgresql")
    rename, back = 'migrations.RenameModel("Owner", "Person"),', 'migrations.AlterModelTable("person", "{app}_owner"),'
    changes = {
        "r_same": (rename + "\n" + back.format(app="r_same"), "", ""),
        "r_split": (rename, "", ""),
        "r_zother": ('migrations.RunSQL("SELECT 1", migrations.RunSQL.noop),', "greenlight_safe = True", ""),
    }
    outcome = {}

    def split_the_rename():  # r_split.0002, then r_zother.0002, then r_split.0003 that renames the table back
        other = [("r_zother", "0001_initial"), ("r_split", "0002_change")]
        project.migration("r_zother", "0002_change", other, changes["r_zother"][0], changes["r_zother"][1])
        deps = [("r_split", "0002_change"), ("r_zother", "0002_change")]
        project.migration("r_split", "0003_back", deps, back.format(app="r_split"))
        project.drop_bytecode()

    def race():
        for app in ("r_same", "r_split"):
            outcome[app] = migrate_while_the_old_code_waits(project, app, f"{app}_owner")

    result, migrated = build_proof(project, changes, before_inspect=split_the_rename, before_migrate=race)
    assert [line for line in result["plan"] if line.startswith("r_")] == [
        "r_same.0002_change", "r_split.0002_change", "r_zother.0002_change", "r_split.0003_back",
    ]  # fmt: skip
    same, split, split_back = (
        pending_of(result, "r_same"),
        pending_of(result, "r_split"),
        pending_of(result, "r_split", "0003_back"),
    )
    assert (same["compatibility"], split["compatibility"], split_back["compatibility"]) == (C, X, C), result
    assert split["operations"][0]["reason"].startswith("A later migration of this plan renames the table back")
    assert split_back["operations"][0]["reason"].startswith("Gives the table back the name the old code uses")
    assert result["backward_compatible"] is False
    # The proof, with the old code running during the migration.
    assert outcome["r_same"]["insert"] == "ok", outcome
    assert 'relation "r_split_owner" does not exist' in outcome["r_split"]["insert"], outcome
    # Once both have run, the old code works again: only the moment between the two migrations breaks it.
    assert all(proc.returncode == 0 for proc in migrated.values())
    after = run_old_code(project, "exercise", {app: {"model": "Owner", "insert": {"name": "n"}} for app in outcome})
    assert {value for app in outcome for value in after[app].values()} == {"ok"}, after


# Lock modes that make the old code's INSERT/UPDATE/DELETE (ROW EXCLUSIVE) wait.
BLOCKS_WRITES = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}


def locks_taken_by_the_sql(project, app, tables, taken):
    """Run the SQL the module showed for ``app``'s 0002 (include_sql) in a transaction that is rolled back, and
    add the lock modes it held on each of ``tables`` to ``taken`` (table -> set of modes)."""
    sql = pending_of(project.inspected, app)["sql"]
    statements = [line for line in sql if line not in ("BEGIN;", "COMMIT;") and not line.startswith("--")]
    held = " UNION ".join(
        f"SELECT '{table}', mode FROM pg_locks WHERE locktype = 'relation' AND pid = pg_backend_pid() "  # noqa: S608
        f"AND relation = '{table}'::regclass"
        for table in tables
    )
    script = "BEGIN;\n" + "\n".join(statements) + f"\n{held};\nROLLBACK;\n"
    proc = subprocess.run(
        ["docker", "exec", "-i", "-u", "postgres", project.postgres.container, "psql", "-XAtq",
         "-v", "ON_ERROR_STOP=1", "-d", project.database],
        input=script, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (script, proc.stderr)
    for line in proc.stdout.splitlines():
        table, mode = line.split("|")
        taken.setdefault(table, set()).add(mode)
    return taken


@pytest.mark.parametrize("version", ["5.2", "6.0"], ids=["django5.2", "django6.0"])
def test_postgresql_lock_agrees_with_the_locks_the_migration_takes(make_project, version):
    """Each lock the module names is held by the migration's own SQL (the module's include_sql, run in a
    transaction that is rolled back): SET NOT NULL and an index built without CONCURRENTLY block the old
    code's writes on the table, a new foreign key also those on the table it references."""
    project = make_project(version, "postgresql")
    fk = "models.ForeignKey(null={null}, on_delete=django.db.models.deletion.CASCADE, to='{app}.owner')"
    changes = {
        "k_notnull": (f'migrations.AlterField("item", "owner", {fk.format(null=False, app="k_notnull")}),', "", ""),
        "k_index": ('migrations.AlterField("item", "code", models.CharField(max_length=10, db_index=True)),', "", ""),
        "k_fk": (f'migrations.AddField("item", "buyer", {fk.format(null=True, app="k_fk")}),', "", ""),
    }
    expected = {
        "k_notnull": ("SET NOT NULL scans", {"k_notnull_item": "AccessExclusiveLock"}),
        "k_index": ("Builds an index without CONCURRENTLY", {"k_index_item": "ShareLock"}),
        "k_fk": ("Adding a FOREIGN KEY", {"k_fk_item": "AccessExclusiveLock", "k_fk_owner": "ShareRowExclusiveLock"}),
    }
    taken = {}

    def run_the_sql_in_a_transaction():  # on the schema that was inspected, before migrate
        for app, (_lock, modes) in expected.items():
            locks_taken_by_the_sql(project, app, modes, taken)

    result, migrated = build_proof(project, changes, before_migrate=run_the_sql_in_a_transaction)
    assert all(proc.returncode == 0 for proc in migrated.values())
    for app, (lock, modes) in expected.items():
        operation = pending_of(result, app)["operations"][0]
        assert operation["lock"].startswith(lock) and operation["lock_table"]["name"] == f"{app}_item", operation
        for table, mode in modes.items():
            assert mode in taken.get(table, set()) and taken[table] & BLOCKS_WRITES, (app, table, taken)


SEPARATE = "migrations.SeparateDatabaseAndState(database_operations=[{0}], state_operations=[{0}]),"


def test_separate_database_and_state_takes_the_locks_of_its_database_operations(make_project):
    """An operation in SeparateDatabaseAndState's database_operations runs the same SQL as on its own, and the
    module names the same lock for it, on the same table: an index built without CONCURRENTLY, int -> bigint."""
    project = make_project("5.2", "postgresql")
    plain = {
        "s_index": (
            'migrations.AddIndex("item", models.Index(fields=["code"], name="{app}_code_idx"))',
            "CREATE INDEX",
        ),
        "s_bigint": ('migrations.AlterField("item", "qty", models.BigIntegerField(default=0))', "Changing the column"),
    }
    changes = {}
    for app, (operation, _lock) in plain.items():
        changes[app] = (operation.format(app=app) + ",", "", "")
        changes[f"{app}_sep"] = (SEPARATE.format(operation.format(app=f"{app}_sep")), "", "")
    taken = {}

    def run_the_sql_in_a_transaction():
        for app in changes:
            locks_taken_by_the_sql(project, app, [f"{app}_item"], taken)

    result, migrated = build_proof(project, changes, before_migrate=run_the_sql_in_a_transaction)
    assert all(proc.returncode == 0 for proc in migrated.values())
    for app, (_operation, lock) in plain.items():
        alone, inside = pending_of(result, app)["operations"][0], pending_of(result, f"{app}_sep")["operations"][0]
        assert inside["type"] == "SeparateDatabaseAndState"
        assert alone["lock"].startswith(lock), alone
        assert inside["lock"] == alone["lock"].replace(f"{app}_item", f"{app}_sep_item"), (alone, inside)
        assert inside["lock_table"] == dict(alone["lock_table"], name=f"{app}_sep_item"), (alone, inside)
        # The proof: the SQL inside takes a lock that blocks the old code's writes, as the one outside does.
        assert taken[f"{app}_sep_item"] & BLOCKS_WRITES and taken[f"{app}_item"] & BLOCKS_WRITES, taken
    assert sorted(line.split(":")[0] for line in result["locking"]) == sorted(f"{app}.0002_change" for app in changes)


NEW_CODE_MODELS = {
    "n_state": PROOF_MODELS.replace("    code = models.CharField(max_length=10)\n", ""),
    "n_nullable": PROOF_MODELS.replace(
        "    owner = models.ForeignKey(Owner, on_delete=models.CASCADE, null=True)\n", ""
    ),
    "n_fk": PROOF_MODELS
    + "\n\nclass Review(models.Model):\n    owner = models.ForeignKey(Owner, on_delete=models.CASCADE)\n",
    # A new many-to-many field on the old Item to a new Tag: the join table references Item (the source side).
    "n_m2m": PROOF_MODELS.replace("class Owner(", "class Tag(models.Model):\n    pass\n\n\nclass Owner(")
    + "    tags = models.ManyToManyField(Tag)\n",
}


@pytest.mark.parametrize("combo", NEWEST)
def test_new_code_direction(make_project, combo):
    """new_code names what breaks for the new release on this schema, or for the old one after the new one
    wrote rows; the new code's insert and the old code's delete prove it."""
    version, db = combo
    project = make_project(version, db)
    state_only = "migrations.SeparateDatabaseAndState(state_operations=[migrations.RemoveField({!r}, {!r})]),"
    review = (
        f'migrations.CreateModel(name="Review", fields=[("id", {ID_FIELD}), ("owner", models.ForeignKey('
        'on_delete=django.db.models.deletion.CASCADE, to="n_fk.owner"))]),'
    )
    tag = f'migrations.CreateModel(name="Tag", fields=[("id", {ID_FIELD})]),'
    changes = {
        "n_state": (state_only.format("item", "code"), "", ""),
        "n_nullable": (state_only.format("item", "owner"), "", ""),
        "n_fk": (review, "", ""),
        "n_m2m": (tag + '\nmigrations.AddField("item", "tags", models.ManyToManyField(to="n_m2m.tag")),', "", ""),
    }
    result, migrated = build_proof(project, changes)
    assert all(proc.returncode == 0 for proc in migrated.values())
    for app, text in NEW_CODE_MODELS.items():
        project.write(f"{app}/models.py", text)
    project.drop_bytecode()
    new = run_old_code(
        project,
        "insert",
        {
            "n_state": {},
            "n_nullable": {"code": "n"},
            "n_fk": {"model": "Review", "insert": {"owner_id": 1}},
            "n_m2m": {"insert": {"code": "n"}, "link": ["tags", "Tag"]},
        },
    )
    for app in ("n_fk", "n_m2m"):
        project.write(f"{app}/models.py", PROOF_MODELS)
    project.drop_bytecode()
    old = run_old_code(
        project, "exercise", {"n_fk": {"model": "Owner", "insert": {"name": "n"}}, "n_m2m": {"insert": {"code": "o"}}}
    )
    reality = {
        "n_state": new["n_state"]["insert"] == "ok",
        "n_nullable": new["n_nullable"]["insert"] == "ok",
        "n_fk": new["n_fk"]["insert"] == "ok" and old["n_fk"]["delete"] == "ok",
        "n_m2m": new["n_m2m"]["link"] == "ok" and old["n_m2m"]["delete"] == "ok",
    }
    assert reality == {"n_state": False, "n_nullable": True, "n_fk": False, "n_m2m": False}, (new, old)
    assert new["n_m2m"]["link"] == "ok" and "IntegrityError" in old["n_m2m"]["delete"], (new, old)
    assert {outcome for name, outcome in old["n_m2m"].items() if name != "delete"} == {"ok"}, old
    for app, works in reality.items():
        problems = [op["new_code"] for op in pending_of(result, app)["operations"] if op["new_code"]]
        assert (not problems) == works, (app, problems)
        assert pending_of(result, app)["compatibility"] == C  # the old code alone is fine
    m2m = pending_of(result, "n_m2m")["operations"]
    assert m2m[0]["new_code"] is None and m2m[1]["new_code"].startswith("Once the new code writes rows"), m2m
    assert sorted(line.split(":")[0] for line in result["new_code"]) == [
        "n_fk.0002_change",
        "n_m2m.0002_change",
        "n_state.0002_change",
    ]


def test_weak_inputs_get_a_message_that_names_the_place(make_project, tmp_path):
    project = build_notes(make_project("5.2", "sqlite"))
    # A migration that ends the process at import: the file is named.
    path = project.migration("notes", "0002_exit", [("notes", "0001_initial")], "", prelude="raise SystemExit(3)")
    rc, result = project.run()
    msg = _assert_one_paragraph(result)
    assert msg.startswith("Django could not load the migrations: SystemExit: 3 (at ") and str(path) in msg, msg
    path.unlink()
    # Settings that end the interpreter: the stage is named, not the interpreter blamed.
    project.write("proj/gone.py", "import os\nos._exit(7)\n")
    rc, result = project.run(settings="proj.gone")
    msg = _assert_one_paragraph(result)
    assert msg.startswith("The inspection ended without a result while importing the settings module"), msg
    assert "rc=7" in msg and "Check that it is the application's interpreter" not in msg
    # Settings that hang: the timeout stops them and names the line.
    slow = project.write("proj/slow.py", "import time\n\nfrom proj.settings import *\n\ntime.sleep(60)\n")
    rc, result = project.run(settings="proj.slow", timeout=2)
    msg = _assert_one_paragraph(result)
    assert msg.startswith("The inspection did not finish within 2 seconds (timeout); it was importing the settings")
    assert f"at {slow}, line 5" in msg, msg
    # A file that is not a database, and a NAME in a directory that does not exist.
    for name, expected in (
        (project.root / "notes" / "models.py", "is not an SQLite database"),
        (tmp_path / "no-such-dir" / "db.sqlite3", "is in a directory that does not exist"),
    ):
        project.write("proj/other.py", f'from proj.settings import *\n\nDATABASES["default"]["NAME"] = {str(name)!r}\n')
        rc, result = project.run(settings="proj.other")
        assert rc == 1 and expected in _assert_one_paragraph(result), result["msg"]
        assert not (tmp_path / "no-such-dir").exists()


# ---------------------------------------------------------------------------
# Data checks: each case is an operation that can fail on the rows already in
# its table, in two apps of one project - one seeded with offending rows, one
# with rows that satisfy it. The module counts the offending rows and names
# their primary keys; then `migrate` proves the verdict: it fails exactly where
# rows were found.
# ---------------------------------------------------------------------------

DATA_INITIAL = f"""
migrations.CreateModel(name="Owner", fields=[("id", {ID_FIELD}), ("name", models.CharField(max_length=20))]),
migrations.CreateModel(
    name="Genre",
    fields=[
        ("id", {ID_FIELD}),
        ("name", models.CharField(max_length=30, null=True)),
        ("qty", models.IntegerField(null=True)),
        ("owner", models.ForeignKey(null=True, db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING,
                                    to="{{app}}.owner")),
    ],
),
"""

LOWER_PRELUDE = "from django.db.models.functions import Lower"

DEDUPLICATE_PRELUDE = """
from django.db.models.functions import Lower


def deduplicate(apps, schema_editor):
    seen = set()
    for genre in apps.get_model("dv_python", "Genre").objects.order_by("pk"):
        if genre.name.lower() in seen:
            genre.delete()
        seen.add(genre.name.lower())
"""


def data_check_cases(version, db):
    """case -> (0002 operations, prelude, {variant: (rows (name, qty, owner_id), violations, sample keys)}).

    Variant "bad" holds offending rows, "ok" rows that satisfy the operation. violations None: no data check
    (data_check null), the operation cannot fail on rows: NULLs that a default fills, or a shorter varchar on
    SQLite, which does not enforce its length."""
    check_kwarg = "condition" if version >= "5.1" else "check"
    length_bad, length_ok = ((1, [1]), (0, [])) if db == "postgresql" else ((None, []), (None, []))
    # fmt: off
    return {
        # The case of a real project: 'Fantasy' and 'fantasy' under a new case-insensitive unique constraint.
        "lower": ('migrations.AddConstraint("genre", models.UniqueConstraint(Lower("name"), name="{app}_ci")),',
                  LOWER_PRELUDE,
                  {"bad": ([("Fantasy", 1, None), ("fantasy", 2, None), ("Drama", 3, None)], 2, [1, 2]),
                   "ok": ([("Fantasy", 1, None), ("Drama", 3, None), (None, 4, None), (None, 5, None)], 0, [])}),
        "partial": ('migrations.AddConstraint("genre", models.UniqueConstraint(fields=["name"], '
                    'condition=Q(qty__gt=0), name="{app}_partial")),', "",
                    {"bad": ([("a", 1, None), ("b", 1, None), ("a", 0, None), ("a", 2, None)], 2, [1, 4]),
                     "ok": ([("a", 1, None), ("a", 0, None), ("a", None, None)], 0, [])}),
        "field": ('migrations.AlterField("genre", "name", models.CharField(max_length=30, null=True, unique=True)),',
                  "", {"bad": ([("x", 1, None), (None, 1, None), (None, 1, None), ("x", 1, None)], 2, [1, 4]),
                       "ok": ([("x", 1, None), (None, 1, None), (None, 1, None), ("y", 1, None)], 0, [])}),
        "together": ('migrations.AlterUniqueTogether("genre", {("name", "qty")}),', "",
                     {"bad": ([("a", 1, None), ("a", 2, None), ("a", 1, None)], 2, [1, 3]),
                      "ok": ([("a", 1, None), ("a", 2, None), ("a", None, None), ("a", None, None)], 0, [])}),
        "notnull": ('migrations.AlterField("genre", "qty", models.IntegerField()),', "",
                    {"bad": ([("a", None, None), ("b", 1, None), ("c", None, None)], 2, [1, 3]),
                     "ok": ([("a", 1, None), ("b", 2, None)], 0, [])}),
        # NOT NULL with a default: Django writes it into the NULL rows first, so nothing offends.
        "filled": ('migrations.AlterField("genre", "qty", models.IntegerField(default=0), preserve_default=False),',
                   "", {"ok": ([("a", None, None), ("b", 1, None)], None, [])}),
        "check": (f'migrations.AddConstraint("genre", models.CheckConstraint({check_kwarg}=Q(qty__gte=0), '
                  'name="{app}_qty")),', "",
                  {"bad": ([("a", -1, None), ("b", None, None), ("c", 5, None), ("d", -3, None)], 2, [1, 4]),
                   "ok": ([("b", None, None), ("c", 5, None)], 0, [])}),
        "positive": ('migrations.AlterField("genre", "qty", models.PositiveIntegerField(null=True)),', "",
                     {"bad": ([("a", 2, None), ("b", -1, None)], 1, [2]),
                      "ok": ([("a", 2, None), ("b", None, None)], 0, [])}),
        "length": ('migrations.AlterField("genre", "name", models.CharField(max_length=5, null=True)),', "",
                   {"bad": ([("toolongname", 1, None), ("short", 1, None)], *length_bad),
                    "ok": ([("short", 1, None), (None, 1, None)], *length_ok)}),
        "fk": ('migrations.AlterField("genre", "owner", models.ForeignKey(null=True, '
               'on_delete=django.db.models.deletion.DO_NOTHING, to="{app}.owner")),', "",
               {"bad": ([("a", 1, 999), ("b", 1, 1), ("c", 1, None)], 1, [1]),
                "ok": ([("b", 1, 1), ("c", 1, None)], 0, [])}),
        "addunique": ('migrations.AddField("genre", "serial", models.IntegerField(default=0, unique=True), '
                      "preserve_default=False),", "",
                      {"bad": ([("a", 1, None), ("b", 1, None)], 2, [1, 2]), "ok": ([("a", 1, None)], 0, [])}),
    }
    # fmt: on


def build_data_checks(project, cases, extra=None):
    """One app per case and variant (dv_<case>_<variant>), 0001 migrated, rows seeded, 0002 pending.
    ``extra``: app -> (operations, prelude, rows) of further apps. Returns {app: (violations, keys)}."""
    apps = {}
    for case, (operations, prelude, variants) in cases.items():
        for variant, (rows, violations, keys) in variants.items():
            apps[f"dv_{case}_{variant}"] = (operations, prelude, rows, violations, keys)
    for app, (operations, prelude, rows) in (extra or {}).items():
        apps[app] = (operations, prelude, rows, None, [])
    project.setup(list(apps))
    for app in apps:
        project.migration(app, "0001_initial", [], DATA_INITIAL.replace("{app}", app), attributes="initial = True")
    project.manage("migrate", "-v0")
    for app, (operations, prelude, rows, _violations, _keys) in apps.items():
        project.sql(f"INSERT INTO {app}_owner (name) VALUES ('first')")  # noqa: S608 - test data
        values = ", ".join(
            "({}, {}, {})".format(*("NULL" if item is None else repr(item) for item in row)) for row in rows
        )
        project.sql(f"INSERT INTO {app}_genre (name, qty, owner_id) VALUES {values}")  # noqa: S608 - test data
        project.migration(app, "0002_change", [(app, "0001_initial")], operations.replace("{app}", app), "", prelude)
    project.drop_bytecode()
    return {app: (item[3], item[4]) for app, item in apps.items()}


def data_check_of(result, app):
    operations = pending_of(result, app)["operations"]
    checks = [op["data_check"] for op in operations if op["data_check"] is not None]
    return checks[-1] if checks else None


DATA_MATRIX = [CORE_MATRIX[0], CORE_MATRIX[1], CORE_MATRIX[4], CORE_MATRIX[5]]  # Django 4.2 and 6.0


@pytest.mark.parametrize("combo", DATA_MATRIX)
def test_data_checks_count_the_rows_migrate_fails_on(make_project, combo):
    version, db = combo
    project = make_project(version, db)
    python_case = {
        # A data migration earlier in the plan may fix the rows: the check after it is skipped, not a refusal.
        "dv_python": (
            "migrations.RunPython(deduplicate),\n"
            'migrations.AddConstraint("genre", models.UniqueConstraint(Lower("name"), name="dv_python_ci")),',
            DEDUPLICATE_PRELUDE,
            [("Fantasy", 1, None), ("fantasy", 2, None)],
        )
    }
    expected = build_data_checks(project, data_check_cases(version, db), python_case)
    bad = {app: item for app, item in expected.items() if item[0]}

    rc, result = project.run(fail_on=["data_violations"])
    assert rc == 1 and result["failed"] is True and result["failed_conditions"] == ["data_violations"], result
    msg = result["msg"]
    for app, (violations, keys) in expected.items():
        check = data_check_of(result, app)
        if app in python_case:
            continue
        if violations is None:
            assert check is None, (app, check)
            continue
        assert check["checked"] is True and check["skipped"] is None, (app, check)
        assert (check["violations"], check["sample_keys"]) == (violations, keys), (app, check)
        assert check["seconds"] >= 0 and "sample_values" not in check
        if violations:
            assert f"{app}.0002_change: " in msg and f"primary keys {', '.join(map(str, keys))})" in msg, (app, msg)
            assert f"{violations} row" in msg.split(f"{app}.0002_change: ", 1)[1].split("—")[1], (app, msg)
        else:
            assert f"{app}.0002_change" not in msg
    assert sorted(line.split(":")[0] for line in result["data_violations"]) == sorted(
        f"{app}.0002_change" for app in bad
    )
    assert "data migration" in msg and "clean the data by hand" in msg and "Nothing was applied" in msg, msg
    lower = next(line for line in result["data_violations"] if line.startswith("dv_lower_bad."))
    assert "2 rows share their Lower(F(name)) with another row" in lower and "primary keys 1, 2)" in lower, lower
    # Keys only: the offending values are personal data, and never in the result unless asked for.
    assert "Fantasy" not in json.dumps(result) and "toolongname" not in json.dumps(result)
    skipped = data_check_of(result, "dv_python")
    assert skipped["checked"] is False and skipped["skipped"] == (
        "not checked after a data migration: dv_python.0002_change runs RunPython earlier in the plan and can "
        "change the rows of dv_python_genre"
    ), skipped
    assert any(line.startswith("dv_python.0002_change: ") for line in result["data_checks_skipped"])

    # Asked for: the values of the columns the operation constrains, beside the keys.
    rc, result = project.run(fail_on=[], data_check_values=True)
    assert rc == 0, result
    assert data_check_of(result, "dv_lower_bad")["sample_values"] == [{"name": "Fantasy"}, {"name": "fantasy"}]
    assert data_check_of(result, "dv_check_bad")["sample_values"] == [{"qty": -1}, {"qty": -3}]
    assert data_check_of(result, "dv_fk_bad")["sample_values"] == [{"owner_id": 999}]

    # The tables with offending rows skipped: nothing refuses, and the skips are said.
    tables = [f"{app}_genre" for app in bad]
    rc, result = project.run(fail_on=["data_violations"], data_check_skip_tables=tables)
    assert rc == 0 and result["data_violations"] == [], result.get("msg")
    for app in bad:
        assert data_check_of(result, app)["skipped"] == f"table {app}_genre is in data_check_skip_tables"
    # Turned off: every check says so, nothing refuses.
    rc, result = project.run(fail_on=["data_violations"], data_checks=False)
    assert rc == 0, result.get("msg")
    checks = [data_check_of(result, app) for app in expected if data_check_of(result, app) is not None]
    assert checks and {check["skipped"] for check in checks} == {"data checks are off (data_checks=false)"}

    # Reality: migrate fails exactly where the module found offending rows.
    for app, (violations, _keys) in expected.items():
        proc = project.manage("migrate", app, "-v0", check=False)
        assert (proc.returncode != 0) == bool(violations), (app, violations, proc.stderr[-400:])


def test_data_check_timeout_and_cost(make_project):
    """200 000 rows: a data check over its timeout is skipped with the reason, not a failure; with the default
    timeout the same check runs."""
    for db in ("sqlite", "postgresql"):
        project = make_project("5.2", db)
        cases = {"lower": data_check_cases("5.2", db)["lower"]}
        cases["lower"] = (cases["lower"][0], cases["lower"][1], {"big": ([("Fantasy", 1, None)], None, [])})
        build_data_checks(project, cases)
        if db == "postgresql":
            project.sql(
                "INSERT INTO dv_lower_big_genre (name, qty) SELECT 'name ' || g, g FROM generate_series(1, 200000) g"
            )
        else:
            project.sql(
                "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < 200000) "
                "INSERT INTO dv_lower_big_genre (name, qty) SELECT 'name ' || g, g FROM n"
            )
        rc, result = project.run(fail_on=["data_violations"], data_check_timeout=0.01)
        assert rc == 0, result.get("msg")
        check = data_check_of(result, "dv_lower_big")
        assert check["checked"] is False and check["skipped"] == "statement timeout after 0.01 s", (db, check)
        assert check["seconds"] < 5, check
        rc, result = project.run(fail_on=["data_violations"])
        assert rc == 0, result.get("msg")
        check = data_check_of(result, "dv_lower_big")
        assert check["checked"] is True and check["violations"] == 0, (db, check)


# ---------------------------------------------------------------------------
# The migration ledger (Django 4.2 and 6.0, SQLite and PostgreSQL): what
# greenlight.django.migrate records, what migration_status reports from it
# ---------------------------------------------------------------------------

MIGRATE_MODULE = REPO / "plugins" / "modules" / "migrate.py"
LEDGER_MATRIX = [CORE_MATRIX[0], CORE_MATRIX[1], CORE_MATRIX[4], CORE_MATRIX[5]]
LEDGER_FAIL_ON = ["unknown_applied", "applied_outside_deploy", "changed_since_applied"]

RATING = 'migrations.AddField(model_name="note", name="rating", field=models.IntegerField(default={default}))'
# 0001_initial as a code formatter and a new header comment would leave it: same operations.
NOTES_INITIAL_REFORMATTED = f"""\
# Reformatted, with a comment: the same migration.
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='Note',
            fields=[
                ('id', {ID_FIELD}),  # the key
                ('title', models.CharField(
                    max_length=100,
                )),
                ('body', models.TextField()),
            ],
        ),
    ]
"""


def run_migrate(project, **args):
    """Run greenlight.django.migrate like Ansible does; return (rc, result)."""
    payload = {
        "ANSIBLE_MODULE_ARGS": dict(
            project.args(app_name="notes"), **args, _ansible_check_mode=False, _ansible_remote_tmp="/tmp"
        )
    }
    args_file = project.root.parent / f"migrate-args-{os.getpid()}.json"
    args_file.write_text(json.dumps(payload))
    try:
        proc = subprocess.run(
            [sys.executable, str(MIGRATE_MODULE), str(args_file)],
            capture_output=True,
            text=True,
            env=module_env(),
            timeout=300,
            check=False,
        )
    finally:
        args_file.unlink()
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"migrate printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def ledger_rows(project):
    """(app, name, event, recorded_by, reason, release) of every ledger event, oldest first."""
    query = "SELECT app, name, event, recorded_by, reason, release FROM greenlight_migration_ledger ORDER BY id"
    if project.db == "postgresql":
        out = project.postgres.psql(query, database=project.database)  # -A: fields separated by |
        return [tuple(line.split("|")) for line in out.splitlines() if line]
    with sqlite3.connect(project.root / "db.sqlite3") as conn:
        return [tuple(row) for row in conn.execute(query)]


def outside(result):
    return [item["migration"] for item in result["applied_outside_deploy"]]


def changed(result):
    return [item["migration"] for item in result["changed_since_applied"]]


@pytest.mark.parametrize("combo", LEDGER_MATRIX)
def test_the_ledger_finds_what_no_deploy_applied_and_what_changed_since(make_project, combo):
    version, db = combo
    # An existing database, migrated before greenlight.django kept a ledger.
    project = build_notes(make_project(version, db))

    # First use: no ledger yet, nothing to report, nothing refused.
    rc, first = project.run(fail_on=LEDGER_FAIL_ON)
    assert rc == 0, first.get("msg")
    assert first["ledger"] == {"exists": False}
    assert outside(first) == [] and changed(first) == []

    # A deploy applies 0002: the first migrate takes the baseline, then records what it applied.
    project.migration("notes", "0002_note_rating", [("notes", "0001_initial")], RATING.format(default=0))
    project.write("notes/models.py", NOTES_MODELS + "    rating = models.IntegerField(default=0)\n")
    rc, deployed = run_migrate(project, expect=["notes.0002_note_rating"])
    assert rc == 0, deployed.get("msg")
    assert deployed["applied"] == ["notes.0002_note_rating"]
    assert deployed["ledger_baseline"] == ["notes.0001_initial"]
    assert [row[:3] for row in ledger_rows(project)] == [
        ("notes", "0001_initial", "baseline"),
        ("notes", "0002_note_rating", "applied"),
    ]
    assert {row[5] for row in ledger_rows(project)} == {project.root.name}
    rc, clean = project.run(fail_on=LEDGER_FAIL_ON)
    assert rc == 0, clean.get("msg")
    assert clean["ledger"]["exists"] is True and clean["ledger"]["events"] == 2

    # On the server, by hand: makemigrations + migrate. Later the developers commit a migration of the same
    # name (with other content): the names agree, so only the ledger can tell.
    project.write(
        "notes/models.py",
        NOTES_MODELS + "    rating = models.IntegerField(default=0)\n    pinned = models.BooleanField(default=False)\n",
    )
    project.manage("makemigrations", "notes", "--name", "note_pinned", "-v0")
    project.manage("migrate", "-v0")
    project.migration(
        "notes",
        "0003_note_pinned",
        [("notes", "0002_note_rating")],
        'migrations.AddField(model_name="note", name="pinned", field=models.BooleanField(default=True))',
    )
    # A developer edits the applied 0002, and reformats the applied 0001.
    project.migration("notes", "0002_note_rating", [("notes", "0001_initial")], RATING.format(default=5))
    project.write("notes/migrations/0001_initial.py", NOTES_INITIAL_REFORMATTED)
    project.drop_bytecode()

    rc, found = project.run(fail_on=LEDGER_FAIL_ON)
    assert rc == 1 and found["failed"] is True
    assert found["unknown_applied"] == []  # Django's own view: nothing wrong
    assert outside(found) == ["notes.0003_note_pinned"]
    assert changed(found) == ["notes.0002_note_rating"]  # 0001 was only reformatted
    assert found["changed_since_applied"][0]["recorded"] == "applied"
    assert found["failed_conditions"] == ["applied_outside_deploy", "changed_since_applied"]
    applied_at = found["applied_outside_deploy"][0]["applied_at"]
    assert f"notes.0003_note_pinned (applied {applied_at})" in found["msg"]
    assert "notes.0002_note_rating (applied" in found["msg"] and "ledger_repair" in found["msg"]
    assert ledger_rows(project)[-1][:3] == ("notes", "0002_note_rating", "applied")  # read-only

    # A deploy refuses to accept what the ledger does not report, and records nothing.
    rc, refused = run_migrate(project, accept=["notes.0001_initial"], accept_by="jane", accept_reason="x")
    assert rc == 1 and "notes.0001_initial is not reported by the migration ledger" in refused["msg"]
    assert len(ledger_rows(project)) == 2

    # Accepted after review: recorded with who and why, and no longer reported.
    reason = "reviewed: the committed 0003 is what ran; 0002's new default is harmless"
    rc, accepted = run_migrate(
        project, accept=["notes.0003_note_pinned", "notes.0002_note_rating"], accept_by="jane", accept_reason=reason
    )
    assert rc == 0, accepted.get("msg")
    assert accepted["changed"] is True and accepted["accepted"] == ["notes.0003_note_pinned", "notes.0002_note_rating"]
    assert [row[:5] for row in ledger_rows(project)[-2:]] == [
        ("notes", "0003_note_pinned", "accepted", "jane", reason),
        ("notes", "0002_note_rating", "accepted", "jane", reason),
    ]
    rc, repaired = project.run(fail_on=LEDGER_FAIL_ON)
    assert rc == 0, repaired.get("msg")
    assert outside(repaired) == [] and changed(repaired) == []

    # A rollback unapplies 0003 (recorded); migrated again by hand, it is reported again.
    rc, unapplied = run_migrate(project, unapply=["notes.0003_note_pinned"])
    assert rc == 0, unapplied.get("msg")
    assert ledger_rows(project)[-1][:3] == ("notes", "0003_note_pinned", "unapplied")
    rc, rolled_back = project.run(fail_on=LEDGER_FAIL_ON)
    assert rc == 0 and rolled_back["plan"] == ["notes.0003_note_pinned"]
    project.manage("migrate", "-v0")
    rc, again = project.run(fail_on=LEDGER_FAIL_ON)
    assert rc == 1 and outside(again) == ["notes.0003_note_pinned"]
