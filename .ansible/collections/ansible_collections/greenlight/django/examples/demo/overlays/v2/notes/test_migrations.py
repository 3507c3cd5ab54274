"""Migration 0003 (backfill of Note.tag), run forwards and backwards on the test database."""

from importlib import import_module

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import SimpleTestCase, TransactionTestCase

BEFORE = [("notes", "0002_note_tag")]
AFTER = [("notes", "0003_backfill_tag")]


class MigrationTestCase(TransactionTestCase):
    """Moves the test database between migrations; puts it back at the latest ones afterwards."""

    def migrate(self, targets):
        executor = MigrationExecutor(connection)
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    def tearDown(self):
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        super().tearDown()


class BackfillTagTests(MigrationTestCase):
    def test_forwards_tags_untagged_rows_and_backwards_untags_them(self):
        OldNote = self.migrate(BEFORE).get_model("notes", "Note")
        untagged = OldNote.objects.create(title="written before the backfill").pk
        tagged = OldNote.objects.create(title="already tagged", tag="keep").pk

        Note = self.migrate(AFTER).get_model("notes", "Note")
        self.assertEqual(Note.objects.get(pk=untagged).tag, "legacy")
        self.assertEqual(Note.objects.get(pk=tagged).tag, "keep")

        Note = self.migrate(BEFORE).get_model("notes", "Note")
        self.assertIsNone(Note.objects.get(pk=untagged).tag)
        self.assertEqual(Note.objects.get(pk=tagged).tag, "keep")


class MarkerTests(SimpleTestCase):
    def test_backfill_is_marked_reviewed_safe(self):
        migration = import_module("notes.migrations.0003_backfill_tag").Migration
        self.assertIs(migration.greenlight_safe, True)
