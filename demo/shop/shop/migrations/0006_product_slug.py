from django.db import migrations, models
from django.utils.text import slugify

BATCH = 500


def fill_slugs(apps, schema_editor):
    Product = apps.get_model('shop', 'Product')
    db = schema_editor.connection.alias
    last = 0
    while True:
        batch = list(Product.objects.using(db).filter(pk__gt=last).order_by('pk')[:BATCH])
        if not batch:
            break
        for p in batch:
            p.slug = slugify('%s-%s' % (p.sku, p.name))[:220]
        Product.objects.using(db).bulk_update(batch, ['slug'])
        last = batch[-1].pk


class Migration(migrations.Migration):
    """Non-atomic: a large table is backfilled in batches, each committed on its own, instead of one
    long transaction holding locks for the whole backfill."""

    atomic = False

    dependencies = [
        ('shop', '0005_remove_product_legacy_code'),
    ]

    operations = [
        migrations.AddField(
            model_name='product',
            name='slug',
            field=models.SlugField(blank=True, default='', max_length=220),
        ),
        migrations.RunPython(fill_slugs, migrations.RunPython.noop),
    ]
