"""Helpers for the tests of the migrate and backup scenarios: run a step playbook, read the demo database.

The backup scenario imports this module too (it puts this directory on sys.path).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DB = "demo"


def ansible_environment(json_output: bool) -> dict:
    env = dict(os.environ)
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    project = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
    env["ANSIBLE_CONFIG"] = str(ephemeral / "ansible.cfg")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(project / "build" / "collections"))
    env.update({"ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"})
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    return env


def json_document(stdout: str) -> dict:
    """The JSON callback's document in ``stdout``: it starts at the first line that opens an object, so a line a
    plugin or a dependency prints before it (a warning on stdout) does not hide the results."""
    start = next((index for index, line in enumerate(stdout.splitlines(keepends=True)) if line.startswith("{")), None)
    if start is None:
        return {}
    text = "".join(stdout.splitlines(keepends=True)[start:])
    document, _end = json.JSONDecoder().raw_decode(text)
    return document


class Run:
    """One ansible-playbook run of a step: return code, output, and (JSON callback) its results."""

    def __init__(self, completed: subprocess.CompletedProcess, seconds: float, json_output: bool):
        self.rc = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.output = completed.stdout + completed.stderr
        self.seconds = seconds
        self.data = json_document(completed.stdout) if json_output else {}

    def results(self):
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                for result in task.get("hosts", {}).values():
                    yield task["task"]["name"], result

    def failure_messages(self) -> list[str]:
        return [str(result.get("msg", "")) for _host, result in self.results() if result.get("failed")]

    def report(self) -> dict:
        reports = [result["msg"] for name, result in self.results() if name == "Report"]
        assert reports, self.output[-4000:]
        return reports[-1]

    def changed(self) -> int:
        return sum(stats.get("changed", 0) for stats in self.data.get("stats", {}).values())

    def __repr__(self) -> str:
        return f"Run(rc={self.rc}, output=...{self.output[-3000:]})"


def run_step(
    step: str, extra_vars: dict | None = None, check: bool = False, verbosity: int = 0, limit: str | None = None
) -> Run:
    """Run <scenario>/steps/<step> against the scenario's inventory; -vvv runs use the text callback."""
    json_output = verbosity == 0
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    steps = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "steps"
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(steps / step)]
    if limit:
        command += ["--limit", limit]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    if check:
        command.append("--check")
    if verbosity:
        command.append("-" + "v" * verbosity)
    started = time.monotonic()
    completed = subprocess.run(
        command, env=ansible_environment(json_output), capture_output=True, text=True, timeout=600, check=False
    )
    return Run(completed, time.monotonic() - started, json_output)


def advisory_lock_key(app_name: str) -> int:
    """The key the migrate locks (greenlight.django.migrate, plugins/module_utils/_migrate_payload.py)."""
    digest = hashlib.sha256(b"greenlight.django.migrate:" + app_name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Database:
    """The demo database, read as the postgres superuser inside the container."""

    def __init__(self, host):
        self.host = host

    def query(self, sql: str, database: str = DB) -> str:
        result = self.host.run("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", database, sql)
        assert result.rc == 0, result.stderr
        return result.stdout.strip()

    def migrations(self) -> list[str]:
        return self.query("SELECT app || '.' || name FROM django_migrations ORDER BY id").splitlines()

    def columns(self, table: str = "notes_note") -> list[str]:
        sql = f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY 1"  # noqa: S608
        return self.query(sql).splitlines()

    def schema(self, database: str = DB) -> str:
        """pg_dump --schema-only, without the per-run \\restrict key lines."""
        result = self.host.run("runuser -u postgres -- pg_dump --schema-only --no-owner -d %s", database)
        assert result.rc == 0, result.stderr
        lines = result.stdout.splitlines()
        return "\n".join(line for line in lines if not line.startswith(("\\restrict", "\\unrestrict")))

    def data(self, database: str = DB) -> dict[str, str]:
        """md5 of every public table's rows, in primary key order."""
        digests = {}
        tables = self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", database)
        for table in tables.splitlines():
            result = self.host.run(
                "runuser -u postgres -- psql -XAtq -d %s -c %s | md5sum",
                database,
                f'COPY (SELECT * FROM public."{table}" ORDER BY 1) TO STDOUT',  # noqa: S608 - names from pg_tables
            )
            assert result.rc == 0, result.stderr
            digests[table] = result.stdout.split()[0]
        return digests

    def snapshot(self) -> dict:
        return {"migrations": self.migrations(), "schema": self.schema(), "data": self.data()}
