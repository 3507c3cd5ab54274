from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notes", "0001_initial"),
    ]

    operations = [
        # Nullable, no default: old code that does not know the column keeps inserting rows.
        migrations.AddField(
            model_name="note",
            name="tag",
            field=models.CharField(blank=True, max_length=50, null=True),
        ),
    ]
