from django.db import migrations


def tag_untagged(apps, schema_editor):
    apps.get_model("notes", "Note").objects.filter(tag__isnull=True).update(tag="untagged")


class Migration(migrations.Migration):
    dependencies = [("notes", "0004_note_audited")]

    operations = [migrations.RunPython(tag_untagged, migrations.RunPython.noop)]
