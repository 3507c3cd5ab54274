from django.db import migrations, models


def fill_source(apps, schema_editor):
    raise RuntimeError("the audit backfill failed")


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="event",
            name="source",
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
        migrations.RunPython(fill_source, migrations.RunPython.noop),
    ]
