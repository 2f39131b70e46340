from django.db import migrations


class Migration(migrations.Migration):
    """Destructive: the column and its data are dropped (unapplying brings back an empty column)."""

    dependencies = [
        ('shop', '0004_normalize_skus'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='product',
            name='legacy_code',
        ),
    ]
