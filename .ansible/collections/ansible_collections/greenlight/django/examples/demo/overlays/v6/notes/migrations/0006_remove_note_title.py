"""Contract, after the switch: drop ``title`` once only this release's code serves.

``greenlight_phase = "after_switch"`` tells greenlight to apply it only after
traffic has moved to this release; before that, the v2 code still reads
``title``. It first copies the titles of rows the v2 code inserted after 0005
ran (their headline is still empty), then drops the column and makes
``headline`` required. The data step only fills empty headlines, hence
``greenlight_safe``. Reversible: ``title`` comes back filled from ``headline``.
"""

from django.db import migrations, models
from django.db.models import F


def copy_late_titles(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(headline__isnull=True).update(headline=F("title"))


def restore_titles(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(title__isnull=True).update(title=F("headline"))


class Migration(migrations.Migration):
    greenlight_phase = "after_switch"
    greenlight_safe = True

    dependencies = [
        ("notes", "0005_backfill_headline"),
    ]

    operations = [
        migrations.RunPython(copy_late_titles, restore_titles),
        migrations.RemoveField(
            model_name="note",
            name="title",
        ),
        migrations.AlterField(
            model_name="note",
            name="headline",
            field=models.CharField(max_length=200),
        ),
    ]
