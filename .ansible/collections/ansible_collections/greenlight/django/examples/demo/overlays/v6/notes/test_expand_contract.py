"""The v2 -> v6 rename of ``title`` to ``headline``, step by step, on the test database.

The v2 code is stood in for by the historical model at 0003 (exactly v2's
model); this release's code is the real ``Note``.
"""

from importlib import import_module

from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import SimpleTestCase, TestCase

from notes.models import Note, legacy_title_present
from notes.test_migrations import MigrationTestCase

V2 = [("notes", "0003_backfill_tag")]
EXPANDED = [("notes", "0005_backfill_headline")]  # applied before the switch
CONTRACTED = [("notes", "0006_remove_note_title")]  # applied after the switch


def columns():
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, "notes_note")}


def raw_title(pk):
    with connection.cursor() as cursor:
        cursor.execute("SELECT title FROM notes_note WHERE id = %s", [pk])
        return cursor.fetchone()[0]


class ExpandContractTests(MigrationTestCase):
    def v2_note_model(self):
        return MigrationLoader(connection).project_state(V2).apps.get_model("notes", "Note")

    def test_v2_code_keeps_working_after_the_expand_step(self):
        V2Note = self.migrate(V2).get_model("notes", "Note")
        before = V2Note.objects.create(title="written before the deploy").pk

        self.migrate(EXPANDED)
        self.assertEqual(Note.objects.get(pk=before).headline, "written before the deploy")
        during = V2Note.objects.create(title="written by v2 during the deploy").pk
        self.assertEqual(
            list(V2Note.objects.order_by("pk").values_list("title", flat=True)),
            ["written before the deploy", "written by v2 during the deploy"],
        )
        self.assertIsNone(Note.objects.get(pk=during).headline)

    def test_this_release_dual_writes_and_falls_back_while_title_exists(self):
        self.migrate(EXPANDED)
        self.assertTrue(legacy_title_present("default"))
        late = self.v2_note_model().objects.create(title="late v2 row").pk
        new = Note.objects.create(headline="written by v6").pk

        self.assertEqual(raw_title(new), "written by v6")
        self.assertEqual(self.v2_note_model().objects.get(pk=new).title, "written by v6")
        shown = {note.pk: note.display_headline for note in Note.objects.for_listing()}
        self.assertEqual(shown, {late: "late v2 row", new: "written by v6"})

    def test_contract_copies_late_rows_then_drops_title(self):
        self.migrate(EXPANDED)
        late = self.v2_note_model().objects.create(title="late v2 row").pk

        self.migrate(CONTRACTED)
        self.assertNotIn("title", columns())
        self.assertFalse(legacy_title_present("default"))
        self.assertEqual(Note.objects.get(pk=late).headline, "late v2 row")
        self.assertEqual(Note.objects.create(headline="after the contract").display_headline, "after the contract")

    def test_rollback_to_v2_restores_titles(self):
        self.migrate(CONTRACTED)
        pk = Note.objects.create(headline="written by v6 only").pk

        V2Note = self.migrate(V2).get_model("notes", "Note")
        self.assertNotIn("headline", columns())
        self.assertEqual(V2Note.objects.get(pk=pk).title, "written by v6 only")


class MarkerTests(SimpleTestCase):
    def migration(self, name):
        return import_module(f"notes.migrations.{name}").Migration

    def test_expand_steps_run_before_the_switch(self):
        self.assertFalse(hasattr(self.migration("0004_note_headline"), "greenlight_phase"))
        self.assertIs(self.migration("0005_backfill_headline").greenlight_safe, True)

    def test_contract_step_runs_after_the_switch(self):
        self.assertEqual(self.migration("0006_remove_note_title").greenlight_phase, "after_switch")


class HeadlineApiTests(TestCase):
    def test_json_and_pages_use_headline(self):
        self.client.post("/notes/new", {"headline": "new name", "body": "kept"})
        self.client.post("/notes/new", {"title": "old name"})
        notes = self.client.get("/notes/", {"format": "json"}).json()
        self.assertEqual([(note["headline"], note["body"]) for note in notes], [("old name", ""), ("new name", "kept")])
        self.assertTrue(all("title" not in note for note in notes))
        self.assertContains(self.client.get("/notes/"), "<strong>new name</strong>")
