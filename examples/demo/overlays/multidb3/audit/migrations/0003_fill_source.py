from django.db import migrations


def fill_source(apps, schema_editor):
    raise RuntimeError("the audit backfill failed")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_event_source")]

    operations = [migrations.RunPython(fill_source, migrations.RunPython.noop)]
