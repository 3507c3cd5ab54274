"""v5's migration 0005 fails on purpose, so no database can be migrated to v5's latest state.

Django's test runner migrates the test database before any test that uses one,
which would make ``manage.py test`` fail before a single assertion. So these
tests use no test database at all (``SimpleTestCase``: the runner then creates
none, whatever DATABASE_URL says). They prove the failure by running the real
``manage.py migrate`` in a child process against a throw-away SQLite file, then
look at what it left behind, and exercise this release's pages on that
half-migrated schema in another child process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from django.conf import settings
from django.test import SimpleTestCase

FAILURE = "demo v5: this data migration fails on purpose"

PROBE = """
import json
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
created = client.post("/notes/new", {"title": "written after the failed deploy", "rating": "4"})
print(json.dumps({
    "healthz": [client.get("/healthz").status_code, client.get("/healthz").content.decode()],
    "created": created.status_code,
    "home": client.get("/").content.decode(),
    "notes": client.get("/notes/", {"format": "json"}).json(),
}))
"""


def run_django(db: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Python in a child process with this project's settings and a SQLite DATABASE_URL."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_SETTINGS_MODULE": "demo.settings"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class FailingMigrationTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        scratch = tempfile.TemporaryDirectory()
        cls.addClassCleanup(scratch.cleanup)
        cls.db = Path(scratch.name) / "v5.sqlite3"
        cls.migrate = run_django(cls.db, "manage.py", "migrate", "--noinput")

    def query(self, sql: str) -> list[tuple]:
        with closing(sqlite3.connect(self.db)) as db:
            return db.execute(sql).fetchall()

    def test_migrate_fails_with_the_planned_error(self):
        self.assertNotEqual(self.migrate.returncode, 0, self.migrate.stdout)
        self.assertIn(f"RuntimeError: {FAILURE}", self.migrate.stderr)

    def test_0004_is_applied_and_0005_is_not(self):
        applied = {name for (name,) in self.query("SELECT name FROM django_migrations WHERE app = 'notes'")}
        self.assertEqual(applied, {"0001_initial", "0002_note_tag", "0003_backfill_tag", "0004_note_rating"})

    def test_the_schema_changed(self):
        self.assertIn("rating", {row[1] for row in self.query("PRAGMA table_info(notes_note)")})

    def test_code_runs_on_the_half_migrated_schema(self):
        probe = run_django(self.db, "-c", PROBE)
        self.assertEqual(probe.returncode, 0, probe.stderr)
        seen = json.loads(probe.stdout.strip().splitlines()[-1])
        self.assertEqual(seen["healthz"], [200, "ok v5\n"])
        self.assertEqual(seen["created"], 201)
        self.assertIn("demo v5", seen["home"])
        self.assertEqual([(n["title"], n["rating"]) for n in seen["notes"]], [("written after the failed deploy", 4)])


class VersionTests(SimpleTestCase):
    def test_version_endpoint_needs_no_database(self):
        self.assertEqual(self.client.get("/version").content.decode(), "v5\n")
