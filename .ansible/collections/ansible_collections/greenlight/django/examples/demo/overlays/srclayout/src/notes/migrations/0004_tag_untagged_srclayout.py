"""Tag every untagged note "srclayout": what the src layout variant migrates when it deploys."""

from django.db import migrations

SRCLAYOUT = "srclayout"


def tag_untagged(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(tag__isnull=True).update(tag=SRCLAYOUT)


def untag(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(tag=SRCLAYOUT).update(tag=None)


class Migration(migrations.Migration):
    greenlight_safe = True

    dependencies = [
        ("notes", "0003_backfill_tag"),
    ]

    operations = [
        migrations.RunPython(tag_untagged, untag, elidable=True),
    ]
