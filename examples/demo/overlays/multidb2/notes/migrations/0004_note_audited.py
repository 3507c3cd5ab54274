from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0003_backfill_tag")]

    operations = [
        migrations.AddField(model_name="note", name="audited", field=models.BooleanField(null=True)),
    ]
