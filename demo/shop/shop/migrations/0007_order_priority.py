from django.conf import settings
from django.db import migrations, models


class DemoMigrationFailure(RuntimeError):
    pass


def set_priorities(apps, schema_editor):
    db = schema_editor.connection.alias
    Order = apps.get_model('shop', 'Order')
    Tag = apps.get_model('shop', 'Tag')
    Order.objects.using(db).filter(total__gte=100).update(priority=1)
    Tag.objects.using(db).get_or_create(name='priority')
    if settings.SHOP_FAIL_MIGRATION:
        # Fails after the schema and the data have changed: on PostgreSQL and SQLite everything rolls
        # back; on MySQL the ALTER TABLE has already been committed.
        raise DemoMigrationFailure('SHOP_FAIL_MIGRATION is set: failing shop.0007 after it changed data')


class Migration(migrations.Migration):
    """Adds a field and fills it; fails midway when SHOP_FAIL_MIGRATION=1."""

    dependencies = [
        ('shop', '0006_product_slug'),
    ]

    operations = [
        migrations.AddField(
            model_name='order',
            name='priority',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.RunPython(set_priorities, migrations.RunPython.noop),
    ]
