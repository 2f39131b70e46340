# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""django_info and django_migrate on the demo shop: real Django 4.2 and 5.2, real SQLite, PostgreSQL
and MariaDB, and MySQL 9.7. The django_migrations table is read straight from the database to judge the modules."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import unique_name
from support.django_project import PROJECT, Shop, django_venvs, shop_factory  # noqa: F401  pylint: disable=unused-import
from support.modules import run_module
from support.servers import MYSQL_SERIES, MySQLServer, mysql_series

SHOP = ['0001_initial', '0002_product_stock_order_total', '0003_backfill_order_totals', '0004_normalize_skus',
        '0005_remove_product_legacy_code', '0006_product_slug', '0007_order_priority']
SHOP_IDS = ['shop.' + n for n in SHOP]

# The full engine matrix on 5.2; 4.2 on SQLite here, and on PostgreSQL in the failing-migration test.
MATRIX = [('5.2', 'sqlite'), ('5.2', 'postgresql'), ('5.2', 'mysql'), ('4.2', 'sqlite')]


def shop_steps(plan):
    return dict((s['id'], s) for s in plan if s['app'] == 'shop')


def assert_known_flags(plan):
    steps = shop_steps(plan)
    assert list(steps) == SHOP_IDS
    assert [i for i, s in steps.items() if s['irreversible']] == ['shop.0004_normalize_skus']
    assert [i for i, s in steps.items() if s['destructive']] == ['shop.0005_remove_product_legacy_code']
    assert [i for i, s in steps.items() if not s['atomic']] == ['shop.0006_product_slug']
    op = steps['shop.0004_normalize_skus']['operations'][0]
    assert op['type'] == 'RunPython' and op['code'] == 'upper_case_skus' and op['irreversible'] is True
    assert steps['shop.0005_remove_product_legacy_code']['operations'][0]['type'] == 'RemoveField'
    assert [o['type'] for o in steps['shop.0007_order_priority']['operations']] == ['AddField', 'RunPython']


@pytest.mark.parametrize('series,engine', MATRIX)
def test_forward_back_forward(shop_factory, series, engine):  # noqa: F811
    shop = shop_factory(series, engine)

    info = shop.run('django_info', check_deploy=True)
    assert not info.failed, info
    assert info['django_version'].startswith(series)
    assert info['database']['engine'] == engine
    assert info['applied_count'] == 0 and info['applied_migrations'] == {}
    assert_known_flags(info['plan'])
    assert info['plan_irreversible'] == ['shop.0004_normalize_skus']
    assert 'shop.0005_remove_product_legacy_code' in info['plan_destructive']
    assert info['model_changes'] == {}
    assert info['checks']['deploy'] is True and info['checks']['errors'] == 0
    assert any(m['id'].startswith('security.') for m in info['checks']['messages'])
    assert shop.recorded() is None, 'django_info must not create the django_migrations table'
    if engine == 'sqlite':
        assert shop.tables() == [], 'django_info must not create the SQLite file'

    # Check mode: the plan, nothing touched.
    r = shop.run('django_migrate', check=True, diff=True)
    assert not r.failed, r
    assert r['changed'] is True and len(r['plan']) == info['pending_count']
    assert 'shop.0007_order_priority' in r['diff']['after'] and r['diff']['before'] == ''
    assert shop.recorded() is None

    r = shop.run('django_migrate', diff=True)
    assert not r.failed, r
    assert r['changed'] is True
    assert r['applied_after']['shop'] == SHOP
    assert r['migrations_applied'] == [s['id'] for s in r['plan']]
    assert shop.recorded_ids() == set(r['migrations_applied'])
    assert r['diff']['before'] == '' and 'shop.0004_normalize_skus\n' in r['diff']['after']

    r = shop.run('django_migrate')
    assert not r.failed and r['changed'] is False and r['plan'] == [] and r['migrations_applied'] == []

    shop.manage('seed_demo', '--products', '12', '--orders', '5')
    assert 'priority' in shop.columns('shop_order')

    # Back to a target: unapplies 0007 and 0006, in that order.
    r = shop.run('django_migrate', app='shop', target='0005')
    assert not r.failed, r
    assert r['changed'] is True
    assert r['migrations_unapplied'] == ['shop.0007_order_priority', 'shop.0006_product_slug']
    assert r['applied_after']['shop'] == SHOP[:5]
    assert shop.recorded_ids() >= set(SHOP_IDS[:5]) and not shop.recorded_ids() & set(SHOP_IDS[5:])
    assert 'priority' not in shop.columns('shop_order') and 'slug' not in shop.columns('shop_product')
    r = shop.run('django_migrate', app='shop', target='0005_remove_product_legacy_code')
    assert not r.failed and r['changed'] is False

    # Back past the irreversible 0004: refused before anything runs, naming the step.
    before = shop.recorded()
    r = shop.run('django_migrate', app='shop', target='0002')
    assert r.failed
    assert 'shop.0004_normalize_skus cannot be unapplied' in r['msg'] and 'upper_case_skus' in r['msg']
    assert 'nothing was run' in r['msg']
    assert r['changed'] is False and shop.recorded() == before

    # Forward again: check mode first, then for real, then nothing to do.
    r = shop.run('django_migrate', check=True, diff=True)
    assert not r.failed and r['changed'] is True
    assert [s['id'] for s in r['plan']] == SHOP_IDS[5:]
    assert r['migrations_applied'] == SHOP_IDS[5:]
    assert shop.recorded() == before
    r = shop.run('django_migrate', plan_only=True)
    assert not r.failed and r['changed'] is False and [s['id'] for s in r['plan']] == SHOP_IDS[5:]
    assert shop.recorded() == before
    r = shop.run('django_migrate')
    assert not r.failed, r
    assert r['changed'] is True and r['migrations_applied'] == SHOP_IDS[5:]
    assert 'priority' in shop.columns('shop_order')
    r = shop.run('django_migrate')
    assert not r.failed and r['changed'] is False and r['applied_after']['shop'] == SHOP


@pytest.mark.parametrize('series,engine', [('5.2', 'postgresql'), ('5.2', 'sqlite'), ('4.2', 'postgresql')])
def test_failing_migration_rolls_back_where_ddl_is_transactional(shop_factory, series, engine):  # noqa: F811
    shop = shop_factory(series, engine)
    r = shop.run('django_migrate', app='shop', target='0005')
    assert not r.failed, r
    before = shop.recorded_ids()
    r = shop.run('django_migrate', extra_env={'SHOP_FAIL_MIGRATION': '1'})
    assert r.failed
    assert r['failed_migration'] == 'shop.0007_order_priority'
    assert 'migration shop.0007_order_priority failed' in r['msg'] and 'SHOP_FAIL_MIGRATION' in r['msg']
    assert 'DemoMigrationFailure' in r['django_error']
    # Everything before 0007 in the plan was applied, and is reported as such.
    assert 'shop.0006_product_slug' in r['migrations_applied']
    assert 'shop.0007_order_priority' not in r['migrations_applied']
    assert r['changed'] is True
    recorded = shop.recorded_ids()
    assert recorded == before | set(r['migrations_applied'])
    assert 'shop.0007_order_priority' not in recorded
    # The transaction took the column and the data change with it.
    assert r['transactional_ddl'] is True and r['partial_state'] is False
    assert 'priority' not in shop.columns('shop_order')
    assert shop.query("SELECT count(*) FROM shop_tag WHERE name = 'priority'") == [(0,)]
    effect = [e for e in r['schema_effects'] if e['type'] == 'AddField'][0]
    assert effect['checked'] is True and effect['present'] is False and effect['column'] == 'priority'

    r = shop.run('django_migrate')
    assert not r.failed, r
    assert r['migrations_applied'] == ['shop.0007_order_priority'] and r['changed'] is True


def test_failing_migration_on_mysql_reports_the_partial_state(shop_factory):  # noqa: F811
    shop = shop_factory('5.2', 'mysql')
    r = shop.run('django_migrate', app='shop', target='0006')
    assert not r.failed, r
    r = shop.run('django_migrate', app='shop', extra_env={'SHOP_FAIL_MIGRATION': '1'})
    assert r.failed
    assert r['failed_migration'] == 'shop.0007_order_priority'
    assert r['migrations_applied'] == [] and r['changed'] is False
    assert 'shop.0007_order_priority' not in shop.recorded_ids()
    # MariaDB committed the ALTER TABLE; the row the RunPython wrote was rolled back.
    assert r['transactional_ddl'] is False
    assert r['partial_state'] is True
    effect = [e for e in r['schema_effects'] if e['type'] == 'AddField'][0]
    assert effect == dict(effect, table='shop_order', column='priority', present=True, changed=True)
    assert 'priority' in shop.columns('shop_order')
    assert shop.query("SELECT count(*) FROM shop_tag WHERE name = 'priority'") == [(0,)]
    # The honest consequence: running it again cannot work until the database is restored.
    r = shop.run('django_migrate', app='shop')
    assert r.failed and r['failed_migration'] == 'shop.0007_order_priority'
    assert 'Duplicate column' in r['django_error'] or 'priority' in r['django_error']


def test_policies_refuse_before_running(shop_factory):  # noqa: F811
    shop = shop_factory('5.2', 'sqlite')
    r = shop.run('django_migrate', allow_irreversible=False)
    assert r.failed and 'shop.0004_normalize_skus is irreversible' in r['msg'] and 'upper_case_skus' in r['msg']
    assert shop.recorded() is None
    r = shop.run('django_migrate', allow_destructive=False)
    assert r.failed and 'shop.0005_remove_product_legacy_code is destructive' in r['msg']
    assert 'Remove field legacy_code from product' in r['msg']
    assert shop.recorded() is None
    # The same refusal in check mode, so a dry run predicts it.
    r = shop.run('django_migrate', allow_destructive=False, check=True)
    assert r.failed and 'destructive' in r['msg']

    pending = {'SHOP_PENDING_CHANGE': '1'}
    info = shop.run('django_info', gather=['model_changes'], extra_env=pending)
    assert not info.failed, info
    assert info['model_changes'] == {'shop': ['Add field weight_grams to product']}
    r = shop.run('django_migrate', fail_on_model_changes=True, extra_env=pending)
    assert r.failed and 'models have changes without a migration' in r['msg'] and 'weight_grams' in r['msg']
    assert shop.recorded() is None
    r = shop.run('django_migrate', fail_on_model_changes=True)
    assert not r.failed and r['model_changes'] == {}


def test_fake_and_fake_initial(shop_factory):  # noqa: F811
    shop = shop_factory('5.2', 'postgresql')
    r = shop.run('django_migrate')
    assert not r.failed and r['changed']
    r = shop.run('django_migrate', app='shop', target='0006', fake=True)
    assert not r.failed, r
    assert r['changed'] is True and r['migrations_unapplied'] == ['shop.0007_order_priority']
    assert 'priority' in shop.columns('shop_order'), '--fake must not touch the schema'
    assert 'shop.0007_order_priority' not in shop.recorded_ids()
    r = shop.run('django_migrate', app='shop', fake=True)
    assert not r.failed and r['migrations_applied'] == ['shop.0007_order_priority']

    # A database that predates the migrations: the tables exist, the records do not.
    shop.query("DELETE FROM django_migrations WHERE app = 'shop' RETURNING id")
    assert not [i for i in shop.recorded_ids() if i.startswith('shop.')]
    r = shop.run('django_migrate', app='shop', target='0001', fake_initial=True)
    assert not r.failed, r
    assert r['changed'] is True and r['migrations_applied'] == ['shop.0001_initial']
    r = shop.run('django_migrate', app='shop', fake=True)
    assert not r.failed and r['migrations_applied'] == SHOP_IDS[1:]
    # Without fake_initial Django would try to CREATE TABLE and fail; prove that it is the flag that worked.
    shop.query("DELETE FROM django_migrations WHERE app = 'shop' RETURNING id")
    r = shop.run('django_migrate', app='shop', target='0001')
    assert r.failed and r['failed_migration'] == 'shop.0001_initial' and 'already exists' in r['django_error']


def test_a_squash_whose_migrations_are_applied_gets_recorded(shop_factory, tmp_path):  # noqa: F811
    # A release ships a squash of migrations every host has applied: nothing to run, but Django's migrate records
    # the squash, so that deleting the replaced files later does not make it run again (CREATE TABLE ...).
    shop = shop_factory('5.2', 'sqlite')
    project = str(tmp_path / 'project')
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns('__pycache__'))
    r = shop.run('django_migrate', project_path=project)
    assert not r.failed and r['changed'] is True, r
    shop.manage('squashmigrations', 'shop', '0002', '--noinput', cwd=project)
    squash = [f[:-3] for f in os.listdir(os.path.join(project, 'shop', 'migrations')) if '_squashed_' in f]
    assert len(squash) == 1, squash
    assert 'shop.' + squash[0] not in shop.recorded_ids()
    r = shop.run('django_migrate', project_path=project)
    assert not r.failed and r['changed'] is True and r['plan'] == [], r
    assert 'shop.' + squash[0] in shop.recorded_ids() and squash[0] in r['applied_after']['shop'], r['applied_after']
    again = shop.run('django_migrate', project_path=project)
    assert not again.failed and again['changed'] is False, again


HEALTH = r'''
import json
from django.test import Client
r = Client().get('/health/')
print(json.dumps({'status': r.status_code, 'body': json.loads(r.content)}))
'''


def test_demo_health_view_tells_pending_from_done(shop_factory):  # noqa: F811
    shop = shop_factory('5.2', 'sqlite')
    assert not shop.run('django_migrate', app='shop', target='0005').failed

    def health():
        return json.loads(shop.manage('shell', '-c', HEALTH).strip().splitlines()[-1])

    h = health()
    assert h['status'] == 503 and h['body']['ok'] is False
    assert 'shop.0007_order_priority' in h['body']['pending_migrations']
    assert not shop.run('django_migrate').failed
    shop.manage('seed_demo', '--products', '5', '--orders', '2')
    h = health()
    assert h['status'] == 200 and h['body']['ok'] is True and h['body']['pending_migrations'] == []
    assert h['body']['rows']['product'] == 5 and h['body']['applied_migrations'] == len(shop.recorded())


@pytest.fixture(scope='module')
def oracle_mysql():
    server = MySQLServer(mysql_series(MYSQL_SERIES[-1])).start()
    yield server
    server.destroy()


def test_a_shop_on_mysql_is_snapshot_migrated_back_and_restored(django_venvs, tmp_path, oracle_mysql,  # noqa: F811
                                                                snapshot_root):
    """Django 5.2 on MySQL 9.7 through PyMySQL, the account on MySQL's default caching_sha2_password. Django's
    first login after a server restart (here FLUSH PRIVILEGES) is a full authentication; PyMySQL 2 makes it inside
    the TLS that the server offers. The shop is migrated, snapshot, migrated back past a destructive step, and
    restored to exactly what it was."""
    db = unique_name('djm')
    oracle_mysql.create_database(db)
    try:
        oracle_mysql.root_sql('FLUSH PRIVILEGES')
        shop = Shop('5.2', 'mysql', tmp_path, server=oracle_mysql, dbname=db)
        r = shop.run('django_migrate')
        assert not r.failed, r.get('msg')
        assert r['applied_after']['shop'] == SHOP
        shop.manage('seed_demo', '--products', '12', '--orders', '5')
        before = shop.digest()
        conn = dict(oracle_mysql.conn_args(db), snapshot_root=snapshot_root, client_bin_dir=oracle_mysql.bindir)
        snap = run_module('db_snapshot', dict(conn, table_stats='checksums'))
        assert not snap.failed, snap.get('msg')
        r = shop.run('django_migrate', app='shop', target='0005')  # drops Order.priority and Product.slug
        assert not r.failed, r.get('msg')
        assert 'priority' not in shop.columns('shop_order')
        res = run_module('db_restore', dict(conn, snapshot_id=snap['snapshot_id']))
        assert not res.failed and res['tables_match'] is True, res.get('msg')
        assert shop.digest() == before
        assert shop.run('django_info')['applied_migrations']['shop'] == SHOP
    finally:
        oracle_mysql.drop_database(db)
