"""Expand, before the switch: copy every title into the new headline column.

Reviewed as compatible with the v2 code still serving: it writes only the
column that code does not know about, so it is marked ``greenlight_safe``.
Rows the v2 code inserts after this ran are picked up again by 0006.
Backwards, it gives any row written without a title (by this release) its
headline as title, so the v2 code finds a title everywhere after a rollback.
"""

from django.db import migrations
from django.db.models import F


def copy_title_to_headline(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(headline__isnull=True).update(headline=F("title"))


def copy_headline_to_title(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(title__isnull=True).update(title=F("headline"))


class Migration(migrations.Migration):
    greenlight_safe = True

    dependencies = [
        ("notes", "0004_note_headline"),
    ]

    operations = [
        migrations.RunPython(copy_title_to_headline, copy_headline_to_title),
    ]
