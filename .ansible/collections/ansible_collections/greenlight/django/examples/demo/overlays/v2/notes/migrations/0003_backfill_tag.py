"""Tag every existing untagged note "legacy".

Reviewed as compatible with the code already running: it only fills a column
that the old code neither reads nor writes, so it is marked ``greenlight_safe``.
"""

from django.db import migrations

LEGACY = "legacy"


def tag_untagged(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(tag__isnull=True).update(tag=LEGACY)


def untag_legacy(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(tag=LEGACY).update(tag=None)


class Migration(migrations.Migration):
    greenlight_safe = True

    dependencies = [
        ("notes", "0002_note_tag"),
    ]

    operations = [
        migrations.RunPython(tag_untagged, untag_legacy, elidable=True),
    ]
