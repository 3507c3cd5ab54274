"""Drops ``body`` in one step, not split into expand and contract: the v6 code
still serving reads the column, so blue-green refuses this migration, and the
deploy's strategy auto takes a downtime window for it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("notes", "0006_remove_note_title"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="note",
            name="body",
        ),
    ]
