"""Build the demo's releases from demo/shop, the way a CI pipeline would produce release artefacts.

    python demo/releases.py DEST          # writes DEST/1.0, DEST/2.0 and DEST/3.0

- 1.0: the shop at migration 0006 (before `Order.priority`): what is live before the demo's first window.
- 2.0: the shop as it is (adds 0007_order_priority): a good release. With SHOP_FAIL_MIGRATION=1 in a host's
  environment its 0007 fails midway on that host, which the fleet tests use.
- 3.0: 2.0 plus 0008, a non-atomic migration that adds a column, rewrites prices and deletes orders, then crashes:
  a bad release that leaves real damage behind, for the window to restore.
"""

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHOP = os.path.join(HERE, 'shop')

PRIORITY_FIELD = '    priority = models.PositiveSmallIntegerField(default=0)\n'
SLUG_FIELD = "    slug = models.SlugField(max_length=220, blank=True, default='')\n"
DISCOUNT_FIELD = '    discount_percent = models.PositiveSmallIntegerField(default=0)\n'

BAD_MIGRATION = '''"""Release 3.0's migration: non-atomic, so each step commits - and it crashes halfway."""

from django.db import migrations, models


def reprice_and_prune(apps, schema_editor):
    db = schema_editor.connection.alias
    Product = apps.get_model('shop', 'Product')
    Order = apps.get_model('shop', 'Order')
    Product.objects.using(db).update(price=0, discount_percent=100)
    doomed = list(Order.objects.using(db).order_by('pk').values_list('pk', flat=True)[::2])
    apps.get_model('shop', 'OrderLine').objects.using(db).filter(order_id__in=doomed).delete()
    Order.objects.using(db).filter(pk__in=doomed).delete()
    raise RuntimeError('release 3.0: shop.0008 crashed after repricing every product and deleting '
                       '%d orders' % len(doomed))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('shop', '0007_order_priority'),
    ]

    operations = [
        migrations.AddField(
            model_name='product',
            name='discount_percent',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.RunPython(reprice_and_prune, migrations.RunPython.noop),
    ]
'''


def copy_shop(dest):
    shutil.copytree(SHOP, dest, ignore=shutil.ignore_patterns('__pycache__', '*.pyc', 'var', 'db.sqlite3'))


def edit(path, old, new):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if old not in text:
        raise SystemExit('%s no longer contains %r; update demo/releases.py' % (path, old))
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text.replace(old, new, 1))


def build(dest_root):
    os.makedirs(dest_root, exist_ok=True)
    one = os.path.join(dest_root, '1.0')
    copy_shop(one)
    os.unlink(os.path.join(one, 'shop', 'migrations', '0007_order_priority.py'))
    edit(os.path.join(one, 'shop', 'models.py'), PRIORITY_FIELD, '')

    copy_shop(os.path.join(dest_root, '2.0'))

    three = os.path.join(dest_root, '3.0')
    copy_shop(three)
    edit(os.path.join(three, 'shop', 'models.py'), SLUG_FIELD, SLUG_FIELD + DISCOUNT_FIELD)
    with open(os.path.join(three, 'shop', 'migrations', '0008_bad_release.py'), 'w', encoding='utf-8') as f:
        f.write(BAD_MIGRATION)
    return ['1.0', '2.0', '3.0']


if __name__ == '__main__':
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(' '.join(build(sys.argv[1])))
