from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="event",
            name="source",
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
    ]
