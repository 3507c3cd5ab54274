"""Expand, before the switch: add ``headline`` next to ``title``.

* ``headline`` is nullable, so the v2 code still serving (which does not know
  it) keeps inserting rows;
* ``title`` loses its NOT NULL, so this release's code, which no longer has a
  ``title`` field, can insert rows too (it then copies the headline into
  ``title`` itself, see ``Note.save``).

Both are backward compatible with the v2 code.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notes", "0003_backfill_tag"),
    ]

    operations = [
        migrations.AddField(
            model_name="note",
            name="headline",
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        migrations.AlterField(
            model_name="note",
            name="title",
            field=models.CharField(max_length=200, null=True),
        ),
    ]
