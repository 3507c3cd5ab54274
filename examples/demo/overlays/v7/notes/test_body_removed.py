"""v7: the notes have no body any more; 0007 drops the column in one step."""

from importlib import import_module

from django.test import TestCase


class BodyRemovedTests(TestCase):
    def test_notes_are_written_and_listed_without_a_body(self):
        response = self.client.post("/notes/new", {"headline": "new name", "body": "ignored"})
        self.assertEqual(response.status_code, 201, response.content)
        notes = self.client.get("/notes/", {"format": "json"}).json()
        self.assertEqual([note["headline"] for note in notes], ["new name"])
        self.assertTrue(all("body" not in note for note in notes))

    def test_the_drop_is_not_marked_for_after_the_switch(self):
        migration = import_module("notes.migrations.0007_remove_note_body").Migration
        self.assertFalse(hasattr(migration, "greenlight_phase"))
        self.assertFalse(hasattr(migration, "greenlight_safe"))
