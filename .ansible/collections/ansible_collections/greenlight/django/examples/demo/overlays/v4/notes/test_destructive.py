"""Migration 0004 drops ``body`` and renames ``title``: what the running v2 code can no longer read."""

from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import SimpleTestCase, TestCase

from notes.test_migrations import MigrationTestCase

BEFORE = [("notes", "0003_backfill_tag")]
AFTER = [("notes", "0004_remove_note_body_rename_title_headline")]


def columns():
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, "notes_note")}


class DestructiveMigrationTests(MigrationTestCase):
    def test_title_becomes_headline_and_body_is_gone(self):
        OldNote = self.migrate(BEFORE).get_model("notes", "Note")
        note_id = OldNote.objects.create(title="kept", body="lost").pk
        self.assertLessEqual({"title", "body"}, columns())

        Note = self.migrate(AFTER).get_model("notes", "Note")
        self.assertEqual(Note.objects.get(pk=note_id).headline, "kept")
        self.assertEqual(columns() & {"title", "body", "headline"}, {"headline"})

    def test_reverse_restores_the_columns_but_not_the_bodies(self):
        OldNote = self.migrate(BEFORE).get_model("notes", "Note")
        note_id = OldNote.objects.create(title="kept", body="lost").pk
        self.migrate(AFTER)

        OldNote = self.migrate(BEFORE).get_model("notes", "Note")
        self.assertEqual(columns() & {"title", "body", "headline"}, {"title", "body"})
        note = OldNote.objects.get(pk=note_id)
        self.assertEqual((note.title, note.body), ("kept", ""))


class OperationsTests(SimpleTestCase):
    def test_operations_are_the_destructive_kinds(self):
        migration = MigrationLoader(None, ignore_no_migrations=True).get_migration("notes", AFTER[0][1])
        self.assertEqual([type(op).__name__ for op in migration.operations], ["RemoveField", "RenameField"])
        self.assertFalse(hasattr(migration, "greenlight_safe"))


class HeadlineApiTests(TestCase):
    def test_json_uses_headline_and_has_no_body(self):
        self.client.post("/notes/new", {"headline": "new name", "body": "ignored"})
        self.client.post("/notes/new", {"title": "old name"})
        notes = self.client.get("/notes/", {"format": "json"}).json()
        self.assertEqual([note["headline"] for note in notes], ["old name", "new name"])
        self.assertTrue(all("title" not in note and "body" not in note for note in notes))
