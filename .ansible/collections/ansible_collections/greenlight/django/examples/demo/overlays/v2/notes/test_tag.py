"""Tags (since v2), through the HTTP API, so later releases that keep tags reuse these tests."""

import json

from django.test import TestCase


class TagTests(TestCase):
    def post(self, **fields):
        response = self.client.post("/notes/new", json.dumps(fields), content_type="application/json")
        self.assertEqual(response.status_code, 201, response.content)
        return response.json()["id"]

    def test_tag_is_stored_and_listed(self):
        note_id = self.post(title="tagged", tag="release")
        [note] = self.client.get("/notes/", {"format": "json"}).json()
        self.assertEqual((note["id"], note["tag"]), (note_id, "release"))
        self.assertContains(self.client.get("/notes/"), "[release]")

    def test_tag_is_optional(self):
        self.post(title="untagged")
        [note] = self.client.get("/notes/", {"format": "json"}).json()
        self.assertIsNone(note["tag"])
        self.assertNotContains(self.client.get("/notes/"), 'class="tag"')

    def test_tag_length_is_limited(self):
        with self.assertLogs("django.request", "WARNING"):
            response = self.client.post("/notes/new", {"title": "t", "tag": "x" * 51})
        self.assertEqual(response.status_code, 400)
