# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""django_dumpdata / django_loaddata: fixtures as a snapshot part, on real databases. Content is
judged by a digest Django computes in the project's interpreter, outside the modules under test."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from support.background import InThread
from support.django_project import django_venvs, shop_factory  # noqa: F401  pylint: disable=unused-import


def seeded(shop, products=60, orders=25, images=True):
    r = shop.run('django_migrate')
    assert not r.failed, r
    shop.manage('seed_demo', '--products', str(products), '--orders', str(orders), '--customers', '4',
                *(['--with-images'] if images else []))
    return shop.digest()


@pytest.mark.parametrize('series,engine,fmt,compression', [
    ('5.2', 'sqlite', 'jsonl', 'zstd'),
    ('5.2', 'postgresql', 'xml', 'gzip'),
    ('5.2', 'mysql', 'json', 'none'),
    ('4.2', 'sqlite', 'jsonl', 'gzip'),
])
def test_dump_flush_load_round_trip(shop_factory, snapshot_root, series, engine, fmt, compression):  # noqa: F811
    thorough = (series, engine) == ('5.2', 'sqlite')  # check mode and drift once; the load itself everywhere
    shop = shop_factory(series, engine)
    before = seeded(shop, images=thorough)
    assert before['shop.product'][0] == 60 and before['shop.order'][0] == 25

    if thorough:
        check = shop.run('django_dumpdata', check=True, snapshot_root=snapshot_root)
        assert not check.failed and check['changed'] is True
        assert not os.path.exists(snapshot_root), 'check mode writes nothing'

    r = shop.run('django_dumpdata', snapshot_root=snapshot_root, format=fmt, compression=compression,
                 labels={'reason': 'test'})
    assert not r.failed, r
    assert r['finalized'] is True and r['format'] == fmt and r['compression'] == compression
    assert r['counts']['shop.product'] == 60 and r['counts']['auth.user'] == 4
    assert 'contenttypes.contenttype' not in r['counts'] and 'auth.permission' not in r['counts']
    assert r['objects'] == sum(r['counts'].values())
    snapdir = os.path.join(snapshot_root, r['snapshot_id'])
    for dirpath, dirs, files in os.walk(snapshot_root):
        assert os.stat(dirpath).st_mode & 0o777 == 0o700, dirpath
        for f in files:
            assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600, f
        del dirs
    with open(os.path.join(snapdir, 'manifest.json'), encoding='utf-8') as f:
        part = json.load(f)['parts']['fixtures']
    assert part['kind'] == 'fixture' and part['counts'] == r['counts'] and part['source'] == engine
    assert part['files'][0]['path'].endswith('fixture.%s%s' % (fmt, {'none': '', 'gzip': '.gz', 'zstd': '.zst'}
                                                               [compression]))

    if thorough:
        # The database drifts; check mode loads nothing.
        shop.manage('seed_demo', '--products', '70', '--orders', '30', '--seed', '7')
        assert shop.digest() != before
        check = shop.run('django_loaddata', check=True, snapshot_root=snapshot_root, flush=True)
        assert not check.failed, check
        assert shop.digest() != before, 'check mode loads nothing'
    else:
        shop.manage('seed_demo', '--products', '70', '--orders', '30', '--seed', '7')

    r = shop.run('django_loaddata', snapshot_root=snapshot_root, snapshot_id=r['snapshot_id'], flush=True)
    assert not r.failed, r
    assert r['flushed'] is True and r['counts_match'] is True
    assert r['table_counts']['shop.product'] == 60
    assert shop.digest() == before
    assert shop.recorded_ids() and 'shop.0007_order_priority' in shop.recorded_ids(), 'flush keeps the migrations'


def test_fixture_from_sqlite_loads_into_postgresql(shop_factory, snapshot_root):  # noqa: F811
    source = shop_factory('5.2', 'sqlite')
    before = seeded(source)
    r = source.run('django_dumpdata', snapshot_root=snapshot_root)
    assert not r.failed, r

    target = shop_factory('5.2', 'postgresql')
    assert not target.run('django_migrate').failed
    r2 = target.run('django_loaddata', snapshot_root=snapshot_root, snapshot_id='latest')
    assert not r2.failed, r2
    assert r2['flushed'] is False and r2['counts_match'] is True and r2['objects'] == r['objects']
    assert target.digest() == before
    # Sequences were moved past the loaded ids: the application can insert again.
    target.manage('seed_demo', '--products', '65', '--orders', '0')
    assert target.digest()['shop.product'][0] == 65


def test_a_dumpdata_waiting_for_a_table_lock_is_stopped_at_the_timeout(shop_factory, snapshot_root):  # noqa: F811
    # Django reads the project first, then streams the fixture; here the stream waits for a table another
    # session holds ACCESS EXCLUSIVE on, and writes nothing. timeout must still stop it.
    shop = shop_factory('5.2', 'postgresql')
    seeded(shop, products=5, orders=2, images=False)
    holder = shop.server.connect(shop.dbname, autocommit=False)
    job = InThread(lambda: shop.run('django_dumpdata', snapshot_root=snapshot_root, compression='zstd', timeout=5))
    try:
        holder.execute('LOCK TABLE shop_product IN ACCESS EXCLUSIVE MODE')
        job.start()
        took = job.wait(90, 'django_dumpdata ignores its timeout')
    finally:
        holder.rollback()
        holder.close()
        job.join(600)
    r = job.result
    assert r.failed and 'Django did not finish within timeout=5s' in r['msg'], r['msg']
    assert took < 5 + 40, took
    assert not os.path.isdir(snapshot_root) or os.listdir(snapshot_root) == [], 'nothing that looks complete'


def test_damaged_fixture_is_refused_and_database_untouched(shop_factory, snapshot_root):  # noqa: F811
    shop = shop_factory('5.2', 'sqlite')
    seeded(shop, products=20, orders=5, images=False)
    r = shop.run('django_dumpdata', snapshot_root=snapshot_root, compression='none')
    assert not r.failed, r
    shop.manage('seed_demo', '--products', '61', '--orders', '0', '--seed', '3')
    drifted = shop.digest()
    path = os.path.join(snapshot_root, r['snapshot_id'], r['files'][0]['path'])
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x20]))
    r2 = shop.run('django_loaddata', snapshot_root=snapshot_root, snapshot_id=r['snapshot_id'], flush=True)
    assert r2.failed and 'checksum verification' in r2['msg'] and 'refusing' in r2['msg']
    assert shop.digest() == drifted


def test_failed_load_after_flush_rolls_back(shop_factory, snapshot_root):  # noqa: F811
    """A sound file whose content cannot load (its last object names a product that does not exist)
    fails the task, and PostgreSQL keeps the rows the flush had removed: flush and load are one
    transaction."""
    shop = shop_factory('5.2', 'postgresql')
    before = seeded(shop, products=20, orders=5, images=False)
    r = shop.run('django_dumpdata', snapshot_root=snapshot_root, compression='none')
    assert not r.failed, r
    snapdir = os.path.join(snapshot_root, r['snapshot_id'])
    path = os.path.join(snapdir, r['files'][0]['path'])
    bad = {'model': 'shop.orderline', 'pk': 999999,
           'fields': {'order': ['ORD-000000'], 'product': ['NO-SUCH-SKU'], 'quantity': 1, 'unit_price': '1.00'}}
    with open(path, 'a', encoding='utf-8') as f:
        f.write(json.dumps(bad) + '\n')
    # Re-seal the manifest so the checksum passes: this is about content, not damage.
    with open(os.path.join(snapdir, 'manifest.json'), encoding='utf-8') as f:
        manifest = json.load(f)
    entry = manifest['parts']['fixtures']['files'][0]
    with open(path, 'rb') as f:
        data = f.read()
    entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    with open(os.path.join(snapdir, 'manifest.json'), 'w', encoding='utf-8') as f:
        json.dump(manifest, f)

    r2 = shop.run('django_loaddata', snapshot_root=snapshot_root, snapshot_id=r['snapshot_id'], flush=True)
    assert r2.failed
    assert 'Could not load shop.OrderLine(pk=999999)' in r2['msg'], r2['msg']
    assert shop.digest() == before


def test_unknown_labels_are_refused(shop_factory, snapshot_root):  # noqa: F811
    shop = shop_factory('5.2', 'sqlite')
    assert not shop.run('django_migrate').failed
    r = shop.run('django_dumpdata', snapshot_root=snapshot_root, apps=['shop', 'nosuchapp'])
    assert r.failed and "unknown app 'nosuchapp'" in r['msg']
    r = shop.run('django_dumpdata', snapshot_root=snapshot_root, exclude=['shop.nosuchmodel'])
    assert r.failed and "'shop.nosuchmodel'" in r['msg']
    assert not os.path.exists(snapshot_root) or os.listdir(snapshot_root) == [], 'a failed dump leaves nothing'
