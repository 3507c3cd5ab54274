"""Backward-incompatible on purpose: the v2 code still serving during a deploy
selects ``body`` and ``title``, and both disappear here. Greenlight must refuse
to apply this before the switch."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("notes", "0003_backfill_tag"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="note",
            name="body",
        ),
        migrations.RenameField(
            model_name="note",
            old_name="title",
            new_name="headline",
        ),
    ]
