"""A data migration that fails every time, to exercise a deploy that fails half way.

It runs in its own transaction after 0004 has been committed, so a failed
``migrate`` leaves 0004 applied (the ``rating`` column exists) and 0005 not.
It is marked ``greenlight_safe`` because its review passed - it is the run that
fails, which is the case under test.
"""

from django.db import migrations


def fill_rating(apps, schema_editor):
    raise RuntimeError("demo v5: this data migration fails on purpose")


class Migration(migrations.Migration):
    greenlight_safe = True

    dependencies = [
        ("notes", "0004_note_rating"),
    ]

    operations = [
        migrations.RunPython(fill_rating, migrations.RunPython.noop),
    ]
