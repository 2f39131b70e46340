from django.db import migrations
from django.db.models import F, Sum


def compute_totals(apps, schema_editor):
    Order = apps.get_model('shop', 'Order')
    for order in Order.objects.using(schema_editor.connection.alias).iterator():
        total = order.lines.aggregate(t=Sum(F('quantity') * F('unit_price')))['t'] or 0
        Order.objects.using(schema_editor.connection.alias).filter(pk=order.pk).update(total=total)


def clear_totals(apps, schema_editor):
    Order = apps.get_model('shop', 'Order')
    Order.objects.using(schema_editor.connection.alias).update(total=0)


class Migration(migrations.Migration):
    """A reversible data migration: totals are computed from the lines, and cleared going back."""

    dependencies = [
        ('shop', '0002_product_stock_order_total'),
    ]

    operations = [
        migrations.RunPython(compute_totals, clear_totals),
    ]
