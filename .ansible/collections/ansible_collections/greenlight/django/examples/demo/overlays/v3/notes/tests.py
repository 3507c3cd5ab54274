"""v3 changes the Note model without a migration; these tests pin down that defect.

The test database is built from the migrations, so it lacks ``priority``: the
pages and the write API of this release cannot work on it, which is exactly
why a deploy must refuse it before it gets near a real database.
"""

from io import StringIO

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState
from django.test import SimpleTestCase, TestCase


class UnmigratedModelChangeTests(TestCase):
    def test_models_are_ahead_of_the_migrations(self):
        loader = MigrationLoader(None, ignore_no_migrations=True)
        changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(loader.graph)
        self.assertEqual(list(changes), ["notes"])
        [operation] = [op for migration in changes["notes"] for op in migration.operations]
        self.assertEqual((type(operation).__name__, operation.name), ("AddField", "priority"))

    def test_makemigrations_check_fails(self):
        out = StringIO()
        with self.assertRaises(SystemExit) as raised:
            call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
        self.assertEqual(raised.exception.code, 1)
        self.assertIn("priority", out.getvalue())

    def test_system_checks_still_pass(self):
        call_command("check", stdout=StringIO())

    def test_healthz_reports_the_missing_column(self):
        with self.assertLogs("notes.views", "WARNING") as logged, self.assertLogs("django.request", "ERROR"):
            response = self.client.get("/healthz")
        self.assertIn("priority", logged.output[0])
        self.assertEqual(response.status_code, 503)
        self.assertTrue(response.content.decode().startswith(f"unavailable {settings.DEMO_VERSION}: database "))

    def test_writes_fail_on_the_migrated_schema(self):
        with self.assertLogs("django.request", "ERROR"), self.assertRaises(DatabaseError):
            self.client.post("/notes/new", {"title": "lost"})


class VersionTests(SimpleTestCase):
    def test_version_endpoint_needs_no_database(self):
        self.assertEqual(self.client.get("/version").content.decode(), "v3\n")
