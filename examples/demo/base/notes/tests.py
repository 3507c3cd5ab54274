"""Tests of the HTTP surface every release keeps: pages, the write API, /healthz, /version.

Notes are created through ``POST /notes/new`` with a ``title`` (the API contract),
so these tests hold for later releases whatever their columns are called.
"""

import json
from unittest import mock

from django.conf import settings
from django.db import OperationalError, connection
from django.test import Client, TestCase

from notes.models import Note


class NotesTestCase(TestCase):
    def create(self, client=None, **fields):
        response = (client or self.client).post("/notes/new", fields)
        self.assertEqual(response.status_code, 201, response.content)
        return response.json()["id"]

    def rejected(self, path, data=None, method="post", **extra):
        """A request the API refuses; Django logs those as warnings, which the test expects."""
        with self.assertLogs("django.request", "WARNING"):
            return getattr(self.client, method)(path, data, **extra)

    def listed(self):
        response = self.client.get("/notes/", {"format": "json"})
        self.assertEqual(response.status_code, 200)
        return response.json()


class PageTests(NotesTestCase):
    def setUp(self):
        self.first = self.create(title="First note", body="Hello from the test")
        self.second = self.create(title="Second <note>")

    def test_version_comes_from_the_version_file(self):
        self.assertRegex(settings.DEMO_VERSION, r"^(v\d+|legacy|srclayout)$")
        self.assertEqual(settings.DEMO_VERSION, (settings.BASE_DIR / "VERSION").read_text().strip())

    def test_home_shows_version_and_count(self):
        response = self.client.get("/")
        self.assertContains(response, f"demo {settings.DEMO_VERSION}")
        self.assertContains(response, "2 notes")

    def test_list_page_shows_notes_escaped(self):
        response = self.client.get("/notes/")
        self.assertContains(response, "First note")
        self.assertContains(response, "Second &lt;note&gt;")
        self.assertNotContains(response, "<note>")

    def test_json_list_newest_first(self):
        notes = self.listed()
        self.assertEqual([note["id"] for note in notes], [self.second, self.first])
        self.assertIn("First note", notes[1].values())
        self.assertTrue(all(note["created_at"] for note in notes))

    def test_version_endpoint(self):
        response = self.client.get("/version")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "text/plain; charset=utf-8")
        self.assertEqual(response.content.decode(), f"{settings.DEMO_VERSION}\n")

    def test_the_async_view_names_the_interface_wsgi(self):
        response = self.client.get("/served-by")
        self.assertEqual(response.content.decode(), f"wsgi {settings.DEMO_VERSION}\n")

    async def test_the_async_view_names_the_interface_asgi(self):
        response = await self.async_client.get("/served-by")
        self.assertEqual(response.content.decode(), f"asgi {settings.DEMO_VERSION}\n")


class WriteApiTests(NotesTestCase):
    def test_form_post_creates_a_row(self):
        note_id = self.create(title="from a form")
        self.assertTrue(Note.objects.filter(pk=note_id).exists())
        self.assertIn("from a form", self.listed()[0].values())

    def test_json_post_creates_a_row(self):
        response = self.client.post(
            "/notes/new", json.dumps({"title": "from JSON", "body": "b"}), content_type="application/json"
        )
        self.assertEqual(response.status_code, 201)
        self.assertEqual(response.json()["version"], settings.DEMO_VERSION)
        self.assertEqual(Note.objects.count(), 1)

    def test_no_csrf_token_needed(self):
        self.create(client=Client(enforce_csrf_checks=True), title="scripted")

    def test_title_is_required(self):
        response = self.rejected("/notes/new", {"body": "no title"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("errors", response.json())
        self.assertEqual(Note.objects.count(), 0)

    def test_title_length_is_limited(self):
        response = self.rejected("/notes/new", {"title": "x" * 201})
        self.assertEqual(response.status_code, 400)

    def test_bad_json_is_rejected(self):
        for body in ("{not json", "[1, 2]"):
            response = self.rejected("/notes/new", body, content_type="application/json")
            self.assertEqual(response.status_code, 400, body)

    def test_get_is_not_allowed(self):
        self.assertEqual(self.rejected("/notes/new", method="get").status_code, 405)


class HealthTests(TestCase):
    def test_ok_with_version(self):
        response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content.decode(), f"ok {settings.DEMO_VERSION}\n")
        self.assertIn("no-cache", response["Cache-Control"])

    def test_unavailable_when_the_database_does_not_answer(self):
        down = mock.patch.object(connection, "cursor", side_effect=OperationalError("server closed the connection"))
        with down, self.assertLogs("notes.views", "WARNING"), self.assertLogs("django.request", "ERROR"):
            response = self.client.get("/healthz")
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.content.decode(), f"unavailable {settings.DEMO_VERSION}: database OperationalError\n")
