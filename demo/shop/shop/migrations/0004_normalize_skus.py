from django.db import migrations
from django.db.models.functions import Upper


def upper_case_skus(apps, schema_editor):
    Product = apps.get_model('shop', 'Product')
    Product.objects.using(schema_editor.connection.alias).update(sku=Upper('sku'))


class Migration(migrations.Migration):
    """An irreversible data migration: the original spelling of each SKU is lost, so there is no way back
    past this point except a snapshot."""

    dependencies = [
        ('shop', '0003_backfill_order_totals'),
    ]

    operations = [
        migrations.RunPython(upper_case_skus),
    ]
