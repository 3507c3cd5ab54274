"""What the migration ledger costs a migrate call and an inspection, on SQLite (no containers).

Builds a Django project with N migrations (one AddField each) and times the modules of two checkouts of the
collection - this one, with the ledger, and another one (``--baseline-collections``, e.g. a checkout of main),
without it - run the way Ansible runs them (``python plugins/modules/<module>.py ARGS``):

* ``migrate, N on a fresh database``: applies all N (with the ledger: creates it and records N events);
* ``migrate, 1 pending, first use``: N applied by hand before, 1 pending (with the ledger: baseline of N);
* ``migrate, 1 pending``: the steady state of a deploy (with the ledger: one event, one checksum);
* ``migration_status, N applied``: the inspection (with the ledger: reads it and checksums N migrations).

Whole module calls vary by tens of milliseconds on a busy machine, more than the ledger adds; so the ledger's own
steps are also timed inside one Django process (``--in-process``): the checksums of N migrations, a baseline of N
events, one event, and the findings over N applied migrations.

    python bench/bench_ledger.py --python build/venvs/django-4.2/bin/python \\
        --baseline-collections /path/to/main/build/collections --migrations 100 --repeat 5
    python bench/bench_ledger.py --python build/venvs/django-4.2/bin/python --migrations 300 --in-process
    python bench/bench_ledger.py --smoke          # 10 migrations, one run, the ledger's checkout only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_migration_status import django_python
from harness import command_line, machine, update_results

REPO = Path(__file__).resolve().parents[1]
SECTION = "## migration ledger"

SETTINGS = """\
from pathlib import Path
BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-only"
INSTALLED_APPS = ["notes"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
"""
MANAGE = """\
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""


def migration(number: int) -> str:
    if number == 1:
        return (
            "from django.db import migrations, models\n\nclass Migration(migrations.Migration):\n"
            "    initial = True\n    dependencies = []\n    operations = [migrations.CreateModel(name='Note', fields=["
            "('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID'))])]\n"
        )
    return (
        "from django.db import migrations, models\n\nclass Migration(migrations.Migration):\n"
        f"    dependencies = [('notes', '{number - 1:04d}_m')]\n"
        f"    operations = [migrations.AddField(model_name='note', name='f{number}', "
        "field=models.IntegerField(default=0))]\n"
    )


def project(root: Path, count: int) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    (root / "proj").mkdir(parents=True)
    (root / "notes" / "migrations").mkdir(parents=True)
    (root / "proj" / "__init__.py").write_text("")
    (root / "proj" / "settings.py").write_text(SETTINGS)
    (root / "manage.py").write_text(MANAGE)
    (root / "notes" / "__init__.py").write_text("")
    (root / "notes" / "migrations" / "__init__.py").write_text("")
    fields = "".join(f"    f{n} = models.IntegerField(default=0)\n" for n in range(2, count + 1))
    (root / "notes" / "models.py").write_text(f"from django.db import models\n\nclass Note(models.Model):\n{fields}")
    for number in range(1, count + 1):
        name = "0001_initial" if number == 1 else f"{number:04d}_m"
        (root / "notes" / "migrations" / f"{name}.py").write_text(migration(number).replace("0001_m", "0001_initial"))
    return root


def run_module(collections: str, module: str, args: dict, python: str) -> float:
    path = Path(collections) / "ansible_collections" / "greenlight" / "django" / "plugins" / "modules" / module
    args_file = Path(tempfile.mkstemp(suffix=".json")[1])
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=collections, PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(path), str(args_file)], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.monotonic() - started
    args_file.unlink()
    result = json.loads(done.stdout)
    if result.get("failed"):
        raise SystemExit(f"{module} failed: {result.get('msg')}")
    return seconds


def manage(root: Path, python: str, *argv: str) -> None:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([python, "manage.py", *argv], cwd=root, check=True, capture_output=True, env=env)


def measure(collections: str, python: str, count: int, work: Path) -> dict:
    venv = str(Path(python).parent.parent)
    times: dict[str, float] = {}
    root = project(work / "p", count)
    every = [f"notes.{'0001_initial' if n == 1 else f'{n:04d}_m'}" for n in range(1, count + 1)]
    common = {"project_path": str(root), "venv": venv, "app_name": "bench"}
    times["migrate, N on a fresh database"] = run_module(collections, "migrate.py", dict(common, expect=every), python)
    # N-1 applied by hand (no ledger), then one pending: the first use.
    (root / "db.sqlite3").unlink()
    manage(root, python, "migrate", "notes", every[-2].split(".")[1])
    times["migrate, 1 pending, first use"] = run_module(
        collections, "migrate.py", dict(common, expect=every[-1:]), python
    )
    # Steady state: unapply the last one by hand (the ledger keeps its history), then a deploy applies it.
    manage(root, python, "migrate", "notes", every[-2].split(".")[1])
    times["migrate, 1 pending"] = run_module(collections, "migrate.py", dict(common, expect=every[-1:]), python)
    status_args = {"project_path": str(root), "venv": venv, "fail_on": [], "data_checks": False}
    times["migration_status, N applied"] = run_module(collections, "migration_status.py", status_args, python)
    return times


IN_PROCESS = """
import os, sys, time
sys.path[:0] = [os.getcwd(), {collections!r}]
os.environ["DJANGO_SETTINGS_MODULE"] = "proj.settings"
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from ansible_collections.greenlight.django.plugins.module_utils import _ledger as ledger

def timed(label, work):
    started = time.perf_counter()
    work()
    print(f"{{label:44}} {{(time.perf_counter() - started) * 1000:8.2f}} ms")

loader = MigrationLoader(connection)
migrations = list(loader.disk_migrations.values())
timed(f"checksums of {{len(migrations)}} migrations", lambda: [ledger.checksum(m) for m in migrations])
call_command("migrate", verbosity=0)
ledger.create(connection)
release = {{"release": "r", "revision": "x"}}
baseline = lambda: ledger.append(connection, ledger.baseline_events(connection, loader, release))  # noqa: E731
timed("baseline (one event per applied migration)", baseline)
last = sorted(loader.disk_migrations)[-1]
event = dict(release, app=last[0], name=last[1], event="applied", checksum=ledger.code_checksum(loader, last))
timed("one applied event (checksum and INSERT)", lambda: ledger.append(connection, [event]))
timed("findings over every applied migration", lambda: ledger.findings(connection, loader))
"""


def in_process(python: str, count: int, work: Path) -> str:
    root = project(work / "in-process", count)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    script = IN_PROCESS.format(collections=str(REPO / "build" / "collections"))
    done = subprocess.run([python, "-c", script], cwd=root, check=True, env=env, capture_output=True, text=True)
    return done.stdout


def report(options: argparse.Namespace, runs: dict[str, dict[str, list[float]]], steps: str) -> str:
    """The markdown section: the module calls (with and without the ledger when a baseline was given) and the
    ledger's own steps."""
    lines = [
        SECTION,
        "",
        f"Machine: {machine()}. Django {django_version(options.python)}, SQLite. Command: `{command_line()}`.",
        "",
        f"N = {options.migrations} migrations, median of {options.repeat} runs of each module call (seconds), "
        "the way Ansible runs a module.",
        "",
    ]
    if runs.get("baseline"):
        lines += [f"Without the ledger: {baseline_commit(options.baseline_collections)}.", ""]
        lines += ["| case | without the ledger | with the ledger | added |", "|---|---|---|---|"]
        for name in runs["ledger"]:
            without, ledger = statistics.median(runs["baseline"][name]), statistics.median(runs["ledger"][name])
            lines.append(f"| {name} | {without:.3f} | {ledger:.3f} | {ledger - without:+.3f} |")
    else:
        lines += ["| case | with the ledger |", "|---|---|"]
        for name, seconds in runs["ledger"].items():
            lines.append(f"| {name} | {statistics.median(seconds):.3f} |")
    lines += ["", "The ledger's own steps, inside one Django process:", "", "```", steps.rstrip(), "```", ""]
    return "\n".join(lines)


def baseline_commit(collections: str) -> str:
    """The commit of the checkout the baseline collections path points at."""
    checkout = (Path(collections) / "ansible_collections" / "greenlight" / "django").resolve()
    found = subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False
    )
    return f"commit {found.stdout.strip()}" if found.returncode == 0 else str(checkout)


def django_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import django; print(django.get_version())"], capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="interpreter of a virtualenv with Django (default: build/venvs/django-4.2)")
    parser.add_argument("--baseline-collections", help="collections path of a checkout without the ledger, to compare")
    parser.add_argument("--migrations", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--in-process", action="store_true", help="time the ledger's own steps only")
    parser.add_argument("--smoke", action="store_true", help="10 migrations, one run (for make test)")
    parser.add_argument("--update-results", metavar="RESULTS_MD", help="replace the section in this file")
    options = parser.parse_args()
    if options.smoke:
        options.migrations, options.repeat = 10, 1
    options.python = os.path.abspath(options.python or django_python("4.2"))
    with tempfile.TemporaryDirectory() as work:
        steps = in_process(options.python, options.migrations, Path(work))
        if options.in_process:
            print(steps, end="")
            return
        ours = str(REPO / "build" / "collections")
        checkouts = [("ledger", ours)]
        if options.baseline_collections:
            checkouts.append(("baseline", options.baseline_collections))
        runs: dict[str, dict[str, list[float]]] = {label: {} for label, _path in checkouts}
        for _run in range(options.repeat):
            for label, collections in checkouts:
                for name, seconds in measure(collections, options.python, options.migrations, Path(work)).items():
                    runs[label].setdefault(name, []).append(seconds)
    markdown = report(options, runs, steps)
    print(markdown)
    if options.update_results:
        update_results(Path(options.update_results), SECTION, markdown)


if __name__ == "__main__":
    main()
