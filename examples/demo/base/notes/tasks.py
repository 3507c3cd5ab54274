"""Background tasks of the demo (demo/celery.py): record and slow write notes, so that a test can count how often
they ran and which release ran them (the note's body is the version); beat's tick writes nothing."""

from __future__ import annotations

import os
import time

from celery import shared_task
from django.conf import settings

from notes.models import Note


def _write(title: str) -> int:
    """One note: its title (headline from v6), and the version that wrote it as its body (while it has one)."""
    fields = {field.name for field in Note._meta.concrete_fields}
    values = {("title" if "title" in fields else "headline"): title[:200]}
    if "body" in fields:
        values["body"] = settings.DEMO_VERSION
    return Note.objects.create(**values).pk


@shared_task(name="notes.tasks.record")
def record(key: str) -> int:
    """Write one note titled `key`."""
    return _write(key)


@shared_task(name="notes.tasks.slow")
def slow(key: str, seconds: float) -> int:
    """Write `<key> begin`, work for `seconds`, write `<key> end`: a task a deploy catches half way."""
    _write(f"{key} begin")
    time.sleep(seconds)
    return _write(f"{key} end")


@shared_task(name="notes.tasks.tick")
def tick() -> str:
    """Sent by beat every DEMO_BEAT_SECONDS; writes nothing (the worker's log shows it ran, and where)."""
    return f"tick {settings.DEMO_VERSION} {os.environ.get('GREENLIGHT_INSTANCE', '')}"
