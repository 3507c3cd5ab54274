"""Benchmark greenlight.django.migration_status's inspection against Django's own commands.

What is timed (wall clock, best of N; in every round each command runs once,
side by side, so drift hits them all alike):

* ``inspection``: the module's inspector run exactly as the module runs it
  (``<app python> -`` with the inspector on stdin and the options in the
  environment), default options;
* ``inspection + SQL``: the same with ``include_sql`` (the SQL of every
  pending migration, like sqlmigrate);
* ``module``: the whole module outside Ansible (``python
  plugins/modules/migration_status.py args.json``: argument parsing, the
  inspector process, classification);
* ``migrate --check``: ``manage.py migrate --check`` alone (exit 1 = pending);
* ``sequence``: the commands that give the same facts, run one after the
  other: ``showmigrations --plan`` (plan), ``migrate --check`` (conflicts and
  history consistency: it refuses to plan otherwise), ``makemigrations
  --check --dry-run`` (model changes without a migration), and ``sqlmigrate``
  for each pending migration (SQL). Migrations recorded in the database but
  missing from the code have no command at all, so the sequence is a lower
  bound.

Projects: a generated one (``--apps`` x ``--migrations``, the last migration of
``--pending`` apps not applied), the demo project (``examples/demo``: v1
migrated, v2 deployed) when its builder exists, and growth with 100, 500
and 1000 migrations. Everything runs on SQLite; the bytecode cache is warmed
once before timing, for every command alike.

    python bench/bench_migration_status.py                 # full run, a few minutes
    python bench/bench_migration_status.py --smoke         # tiny sizes, one round, seconds
    python bench/bench_migration_status.py --output out.md --update-results bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / "build" / "collections"
MODULE = REPO / "plugins" / "modules" / "migration_status.py"
DEMO_BUILDER = REPO / "examples" / "demo" / "build.py"
SECTION = "## migration_status"


def ensure_collection_importable():
    link = COLLECTIONS / "ansible_collections" / "greenlight" / "django"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(REPO, target_is_directory=True)
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))


ensure_collection_importable()
from ansible_collections.greenlight.django.plugins.module_utils import _app_runtime as runtime  # noqa: E402
from ansible_collections.greenlight.django.plugins.modules import migration_status  # noqa: E402


def django_python(version):
    """The cached virtualenv of the functional tests (built the same way when missing)."""
    python = REPO / "build" / "venvs" / f"django-{version}" / "bin" / "python"
    if python.exists():
        return python
    spec = importlib.util.spec_from_file_location("functional_conftest", REPO / "tests" / "functional" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = conftest  # its dataclasses look their module up there
    spec.loader.exec_module(conftest)
    return conftest._build_venv(version)


# ---------------------------------------------------------------------------
# Generated project
# ---------------------------------------------------------------------------

ID = 'models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")'

SETTINGS = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-only"
INSTALLED_APPS = {apps!r}
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
"""

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def _migration(deps, ops):
    return (
        "import django.db.models.deletion\nfrom django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = {deps!r}\n"
        "    operations = [\n" + "".join(f"        {op},\n" for op in ops) + "    ]\n"
    )


def generate_project(root, apps, per_app):
    """``apps`` apps of ``per_app`` migrations each; models.py matches the last migration.

    Migration k of an app cycles through: a data migration (RunPython.noop both
    ways), a model with a foreign key (to the previous app's Item, so apps
    depend on each other), a NOT NULL column with a default, a nullable
    column, a state-only AlterField.
    """
    labels = [f"app{index:03d}" for index in range(apps)]
    root.mkdir(parents=True)
    (root / "manage.py").write_text(MANAGE)
    (root / "benchsite").mkdir()
    (root / "benchsite" / "__init__.py").write_text("")
    (root / "benchsite" / "settings.py").write_text(SETTINGS.format(apps=labels))
    for position, label in enumerate(labels):
        folder = root / label / "migrations"
        folder.mkdir(parents=True)
        (root / label / "__init__.py").write_text("")
        (folder / "__init__.py").write_text("")
        previous_app = labels[position - 1] if position else None
        item_fields = ["    name = models.CharField(max_length=100, help_text='Name')"]
        models_src = []
        names = []
        for k in range(1, per_app + 1):
            name = "0001_initial" if k == 1 else f"{k:04d}_step{k}"
            deps = [(label, names[-1])] if names else []
            if k == 1:
                ops = [
                    f'migrations.CreateModel(name="Item", fields=[("id", {ID}), '
                    '("name", models.CharField(max_length=100))])'
                ]
            elif k % 5 == 0:
                ops = [f'migrations.AddField("item", "f{k}", models.IntegerField(null=True))']
                item_fields.append(f"    f{k} = models.IntegerField(null=True)")
            elif k % 5 == 3:
                target = f"{previous_app}.item" if previous_app else f"{label}.item"
                if previous_app:
                    deps.append((previous_app, "0001_initial"))
                ops = [
                    f'migrations.CreateModel(name="Thing{k}", fields=[("id", {ID}), ("item", models.ForeignKey('
                    f'on_delete=django.db.models.deletion.CASCADE, related_name="+", to="{target}"))])'
                ]
                model = f'"{target}"'
                models_src.append(
                    f"class Thing{k}(models.Model):\n"
                    f"    item = models.ForeignKey({model}, on_delete=models.CASCADE, related_name='+')\n"
                )
            elif k % 5 == 4:
                ops = [f'migrations.AddField("item", "s{k}", models.CharField(default="", max_length=20))']
                item_fields.append(f'    s{k} = models.CharField(default="", max_length=20)')
            elif k % 5 == 2:
                ops = ["migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)"]
            else:
                ops = ['migrations.AlterField("item", "name", models.CharField(help_text="Name", max_length=100))']
            (folder / f"{name}.py").write_text(_migration(deps, ops))
            names.append(name)
        if per_app < 6:  # the help_text AlterField never came round: keep models equal to the migrations
            item_fields[0] = "    name = models.CharField(max_length=100)"
        (root / label / "models.py").write_text(
            "from django.db import models\n\n\nclass Item(models.Model):\n"
            + "\n".join(item_fields)
            + "\n\n\n"
            + "\n\n".join(models_src)
        )
    return labels


# ---------------------------------------------------------------------------
# Running and timing
# ---------------------------------------------------------------------------


class Target:
    """A project to time: where it is, its interpreter, its environment."""

    def __init__(self, name, root, python, env=None, settings=None):
        self.name = name
        self.root = root
        self.python = python
        self.env = dict(env or {})
        self.settings = settings or runtime.settings_from_manage_py(str(root / "manage.py"))

    def process_env(self, extra=None):
        env = dict(os.environ, **self.env)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # every timed command reads the warm cache and writes nothing
        env.update(extra or {})
        return env

    def manage(self, *args, check=True, warm=False):
        env = self.process_env()
        if warm:
            env.pop("PYTHONDONTWRITEBYTECODE")
        proc = subprocess.run(
            [str(self.python), "manage.py", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SystemExit(f"{self.name}: manage.py {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def inspection(self, include_sql=False):
        """Run the inspector exactly like the module does; return the parsed report."""
        nonce = uuid.uuid4().hex
        timeout = migration_status.argument_spec()["timeout"]["default"]
        env = migration_status.inspection_environment(
            nonce, str(self.root), self.settings, self.env, "default", include_sql, [], timeout
        )
        proc = subprocess.run(
            [str(self.python), "-"],
            input=migration_status.inspector_source(),
            cwd=self.root,
            env=dict(os.environ, **env),
            capture_output=True,
            text=True,
            check=False,
        )
        report = migration_status.parse_report(proc.stdout, nonce)
        if not report or not report.get("ok"):
            raise SystemExit(f"{self.name}: the inspection failed: {report or proc.stderr}")
        return report

    def module(self, args_file):
        proc = subprocess.run(
            [sys.executable, str(MODULE), str(args_file)],
            env=dict(os.environ, PYTHONPATH=str(COLLECTIONS), PYTHONDONTWRITEBYTECODE="1"),
            capture_output=True,
            text=True,
            check=False,
        )
        result = json.loads(proc.stdout)
        if result.get("failed"):
            raise SystemExit(f"{self.name}: the module failed: {result.get('msg')}")
        return result

    def sequence(self, pending):
        self.manage("showmigrations", "--plan")
        self.manage("migrate", "--check", check=False)
        self.manage("makemigrations", "--check", "--dry-run", check=False)
        for label in pending:
            app, name = label.split(".", 1)
            self.manage("sqlmigrate", app, name)


def timed(function):
    """(wall clock, CPU time of the child processes: user + system) of one call."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    function()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(target, rounds, with_module=True, with_sequence=True):
    """Best time of each command over ``rounds`` interleaved rounds, and the facts cross-check."""
    target.manage("migrate", "--check", check=False, warm=True)  # writes the bytecode cache everybody reads
    report = target.inspection()
    pending = [f"{item['app']}.{item['name']}" for item in report["pending"]]
    shown = target.manage("showmigrations", "--plan").stdout
    unapplied = [line.split("]", 1)[1].strip() for line in shown.splitlines() if line.startswith("[ ]")]
    facts_agree = unapplied == pending
    args_file = Path(tempfile.mkstemp(suffix=".json")[1])
    module_args = {"project_path": str(target.root), "python": str(target.python), "fail_on": []}
    if target.env:
        module_args["environment"] = target.env
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    commands = {
        "inspection": target.inspection,
        "inspection + SQL": lambda: target.inspection(include_sql=True),
        "migrate --check": lambda: target.manage("migrate", "--check", check=False),
    }
    if with_module:
        commands["module"] = lambda: target.module(args_file)
    if with_sequence:
        commands["sequence"] = lambda: target.sequence(pending)
    wall = {name: float("inf") for name in commands}
    cpu = dict(wall)
    try:
        for _round in range(rounds):
            for name, command in commands.items():
                spent_wall, spent_cpu = timed(command)
                wall[name] = min(wall[name], spent_wall)
                cpu[name] = min(cpu[name], spent_cpu)
    finally:
        args_file.unlink()
    return {"wall": wall, "cpu": cpu, "pending": len(pending), "facts_agree": facts_agree}


def synthetic_target(workdir, python, apps, per_app, pending_apps, prefix="synthetic"):
    root = workdir / f"{prefix}-{apps}x{per_app}"
    labels = generate_project(root, apps, per_app)
    target = Target(f"{apps} apps x {per_app} migrations", root, python)
    started = time.perf_counter()
    target.manage("migrate", "-v0")
    setup = time.perf_counter() - started
    last = f"{per_app:04d}_step{per_app}" if per_app > 1 else "0001_initial"
    with sqlite3.connect(root / "db.sqlite3") as conn:  # the newest migration of some apps is not applied yet
        for label in labels[:pending_apps]:
            conn.execute("DELETE FROM django_migrations WHERE app = ? AND name = ?", (label, last))
    return target, setup


def demo_target(workdir, python):
    """Demo v1 migrated into a SQLite file, v2 deployed against it (notes 0002 and 0003 pending)."""
    if not DEMO_BUILDER.exists():
        return None
    database = workdir / "demo.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{database}", "DJANGO_DEBUG": "1"}
    for version in ("v1", "v2"):
        proc = subprocess.run(
            [sys.executable, str(DEMO_BUILDER), version, str(workdir / f"demo-{version}")],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"demo {version} does not build, skipped: {proc.stderr.strip()}", file=sys.stderr)
            return None
    Target("demo v1", workdir / "demo-v1", python, env).manage("migrate", "-v0")
    return Target("demo v1 -> v2", workdir / "demo-v2", python, env)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {"nproc": nproc, "cpu": cpu, "python": platform.python_version(), "system": platform.platform()}


def ratio(numerator, denominator):
    return numerator / denominator if denominator else float("nan")


def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(value, target):
    return f"{value:.2f} (target <= {target}: {'met' if value <= target else 'MISSED'})"


def project_section(title, measured):
    wall, cpu = measured["wall"], measured["cpu"]
    rows = []
    for name in ("inspection", "inspection + SQL", "module", "migrate --check", "sequence"):
        if name in wall:
            rows.append(
                [
                    f"`{name}`",
                    f"{wall[name]:.3f}",
                    f"{ratio(wall[name], wall['migrate --check']):.2f}x",
                    f"{cpu[name]:.3f}",
                    f"{ratio(cpu[name], cpu['migrate --check']):.2f}x",
                ]
            )
    header = ["command", "wall (s)", "wall vs `migrate --check`", "CPU (s)", "CPU vs `migrate --check`"]
    lines = [
        f"### {title}",
        "",
        f"{measured['pending']} pending migrations; the inspection's plan equals `showmigrations --plan`: "
        f"{'yes' if measured['facts_agree'] else 'NO'}.",
        "",
        table(rows, header),
        "",
    ]
    for label, best in (("wall", wall), ("CPU", cpu)):
        verdicts = [
            f"inspection / `migrate --check` = {_verdict(ratio(best['inspection'], best['migrate --check']), 1.1)}"
        ]
        if "sequence" in best:
            verdicts.append(
                f"inspection + SQL / sequence = {_verdict(ratio(best['inspection + SQL'], best['sequence']), 0.3)}"
            )
            verdicts.append(f"inspection / sequence = {ratio(best['inspection'], best['sequence']):.2f}")
        lines.append(f"- {label}: " + "; ".join(verdicts))
    return "\n".join(lines) + "\n"


def growth_section(results):
    rows = []
    for migrations, measured in results:
        wall, cpu = measured["wall"], measured["cpu"]
        rows.append(
            [
                migrations,
                measured["pending"],
                f"{wall['migrate --check']:.3f} / {cpu['migrate --check']:.3f}",
                f"{wall['inspection']:.3f} / {cpu['inspection']:.3f}",
                f"{wall['inspection + SQL']:.3f} / {cpu['inspection + SQL']:.3f}",
                f"{ratio(wall['inspection'], wall['migrate --check']):.2f}x / "
                f"{ratio(cpu['inspection'], cpu['migrate --check']):.2f}x",
            ]
        )
    header = [
        "migrations",
        "pending",
        "`migrate --check` wall / CPU (s)",
        "inspection wall / CPU (s)",
        "+ SQL wall / CPU (s)",
        "inspection / `migrate --check` wall / CPU",
    ]
    return "### Growth\n\n" + table(rows, header) + "\n"


def update_results(path, markdown):
    """Replace (or add) the ``## migration_status`` section of RESULTS.md, keeping the other sections."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    section = markdown.rstrip() + "\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _match: section, text)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round (seconds)")
    parser.add_argument("--django", default="5.2", help="Django series of build/venvs (default 5.2)")
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--migrations", type=int, default=10, help="migrations per app")
    parser.add_argument("--pending", type=int, default=10, help="apps whose newest migration is pending")
    parser.add_argument("--rounds", type=int, default=7, help="best of N")
    parser.add_argument("--growth", default="100,500,1000", help="total migrations for the growth table")
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--output", help="also write the markdown here")
    parser.add_argument("--update-results", metavar="RESULTS_MD", help="replace the section in this file")
    parser.add_argument("--keep", action="store_true", help="keep the generated projects")
    args = parser.parse_args(argv)
    if args.smoke:
        args.apps, args.migrations, args.pending, args.rounds, args.growth = 3, 4, 2, 1, "20"
        args.no_demo = True

    python = django_python(args.django)
    django_version = subprocess.run(
        [str(python), "-c", "import django, sqlite3; print(django.get_version(), sqlite3.sqlite_version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    workdir = Path(tempfile.mkdtemp(prefix="bench-migration-status-"))
    info = machine()
    load_before = os.getloadavg()[0]
    sections = []
    try:
        target, setup = synthetic_target(workdir, python, args.apps, args.migrations, args.pending)
        title = f"Generated project: {args.apps} apps x {args.migrations} migrations"
        sections.append(project_section(title, measure(target, args.rounds)))
        if not args.no_demo:
            demo = demo_target(workdir, python)
            if demo is not None:
                sections.append(project_section("Demo project: v1 migrated, v2 deployed", measure(demo, args.rounds)))
        growth = []
        for total in [int(item) for item in args.growth.split(",") if item.strip()]:
            apps = max(1, total // args.migrations)
            grown, _setup = synthetic_target(
                workdir, python, apps, args.migrations, min(args.pending, apps), prefix="growth"
            )
            growth.append((apps * args.migrations, measure(grown, args.rounds, with_module=False, with_sequence=False)))
        sections.append(growth_section(growth))
    finally:
        if args.keep:
            print(f"projects kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    header = [
        SECTION,
        "",
        f"Machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}; {info['system']}. Python {info['python']} "
        f"(benchmark and module), Django {django_version[0]}, SQLite {django_version[1]}; {load}.",
        f"Best of {args.rounds} interleaved rounds, warm bytecode cache; wall clock, and CPU time (user + system "
        "of the processes, which other load on the machine disturbs much less). "
        f"Command: `python bench/bench_migration_status.py{' --smoke' if args.smoke else ''}`. "
        "`sequence` = `showmigrations --plan` + `migrate --check` + `makemigrations --check --dry-run` + "
        "`sqlmigrate` per pending migration (the same facts, except migrations applied but missing from the code, "
        "which no command reports). `module` = the module outside Ansible (argument parsing + inspector + "
        "classification).",
        "",
    ]
    markdown = "\n".join(header) + "\n" + "\n".join(sections)
    print(markdown)
    if args.output:
        Path(args.output).write_text(markdown)
    if args.update_results:
        update_results(args.update_results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
