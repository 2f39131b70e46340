# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the Django modules: operation flags, plan policy, failed-step detection, settings
from manage.py, DATABASES to db_snapshot options, applied-state arithmetic, fixture count checks."""

from __future__ import annotations

import sys

import pytest

from support.modules import COLLECTIONS_PATH

if COLLECTIONS_PATH not in sys.path:
    sys.path.insert(0, COLLECTIONS_PATH)

# pylint: disable=wrong-import-position
from ansible_collections.djangoops.maintenance.plugins.module_utils._django import (  # noqa: E402
    connection_options, env_value, helper_source, password_source, settings_from_manage_py)
from ansible_collections.djangoops.maintenance.plugins.module_utils._django_fixtures import compare_counts  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._django_helper import (  # noqa: E402
    effect_left, failed_step, operation_flags, plan_problems, scrub)
from ansible_collections.djangoops.maintenance.plugins.module_utils._django_migrations import (  # noqa: E402
    applied_diff, applied_per_app, predicted_after)


@pytest.mark.parametrize('op,reversible,backwards,expected', [
    ('RunPython', False, False, (True, False)),
    ('RunPython', True, False, (False, False)),
    ('RunSQL', True, False, (False, True)),
    ('RunSQL', False, True, (True, True)),
    ('DeleteModel', True, False, (False, True)),
    ('RemoveField', True, False, (False, True)),
    ('RemoveField', True, True, (False, False)),
    ('AddField', True, False, (False, False)),
    ('AddField', True, True, (False, True)),
    ('CreateModel', True, True, (False, True)),
    ('AlterField', True, False, (False, False)),
])
def test_operation_flags(op, reversible, backwards, expected):
    assert operation_flags(op, reversible, backwards) == expected


def test_separate_database_and_state_is_judged_by_its_database_operations():
    assert operation_flags('SeparateDatabaseAndState', True, False, inner=[(False, False)]) == (False, False)
    assert operation_flags('SeparateDatabaseAndState', True, False, inner=[(False, True), (True, False)]) == (
        True, True)


def step(mid, backwards=False, irreversible=False, destructive=False):
    ops = [{'type': 'RunPython', 'description': 'Raw Python operation', 'code': 'f', 'irreversible': irreversible,
            'destructive': destructive}]
    return {'id': mid, 'backwards': backwards, 'irreversible': irreversible, 'destructive': destructive,
            'operations': ops}


def test_backwards_irreversible_is_always_refused_and_named():
    plan = [step('shop.0007', backwards=True), step('shop.0004', backwards=True, irreversible=True)]
    problems = plan_problems(plan)
    assert problems == ['shop.0004 cannot be unapplied: Raw Python operation f (no reverse)']


def test_forward_policies():
    plan = [step('a.0001'), step('a.0002', irreversible=True), step('a.0003', destructive=True)]
    assert plan_problems(plan) == []
    assert [p.split(' ')[0] for p in plan_problems(plan, allow_irreversible=False)] == ['a.0002']
    assert [p.split(' ')[0] for p in plan_problems(plan, allow_destructive=False)] == ['a.0003']


def test_failed_step_is_the_first_without_its_effect():
    plan = [step('a.1'), step('a.2'), step('a.3')]
    assert failed_step(plan, {'a.1'})['id'] == 'a.2'
    assert failed_step(plan, {'a.1', 'a.2', 'a.3'}) is None
    back = [step('a.3', backwards=True), step('a.2', backwards=True)]
    assert failed_step(back, {'a.1', 'a.2'})['id'] == 'a.2'
    assert failed_step(back, {'a.1', 'a.2', 'a.3'})['id'] == 'a.3'


@pytest.mark.parametrize('op,present,backwards,left', [
    ('AddField', True, False, True), ('AddField', False, False, False),
    ('RemoveField', False, False, True), ('RemoveField', True, False, False),
    ('CreateModel', True, False, True), ('DeleteModel', False, False, True),
    ('AddField', False, True, True), ('AddField', True, True, False),
    ('RemoveField', True, True, True),
])
def test_effect_left(op, present, backwards, left):
    assert effect_left(op, present, backwards) is left


def test_scrub_masks_secrets_but_not_short_noise():
    assert scrub('dsn user:hunter2@db', ['hunter2', '', 'x']) == 'dsn user:********@db'


@pytest.mark.parametrize('source,expected', [
    ("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n", 'shop.settings'),
    ('def main():\n    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "a.b.c")\n', 'a.b.c'),
    ("os.environ.setdefault('OTHER', 'x')\n", None),
    ("os.environ['DJANGO_SETTINGS_MODULE'] = 'x'\n", None),
    ('this is not python (\n', None),
])
def test_settings_from_manage_py(source, expected):
    assert settings_from_manage_py(source) == expected


def test_env_values_are_strings():
    assert [env_value(v) for v in (5432, True, False, None, 'x')] == ['5432', 'true', 'false', '', 'x']


def test_connection_options_postgresql():
    db = {'vendor': 'postgresql', 'name': 'shop', 'host': 'db1', 'port': '5433', 'user': 'u', 'password': 'pw',
          'options': {'sslmode': 'verify-full', 'sslrootcert': '/ca.pem', 'service': 'x'}}
    conn, unmapped = connection_options(db)
    assert conn == {'engine': 'postgresql', 'database': 'shop', 'login_host': 'db1', 'login_port': 5433,
                    'login_user': 'u', 'ssl_mode': 'verify-full', 'ssl_ca': '/ca.pem'}
    assert unmapped == ['service']
    assert connection_options(db, include_password=True)[0]['login_password'] == 'pw'


def test_connection_options_mysql_socket_and_ssl():
    db = {'vendor': 'mysql', 'name': 'shop', 'host': '/run/mysqld/mysqld.sock', 'port': '', 'user': 'u',
          'options': {'ssl': {'ca': '/ca.pem'}, 'ssl_mode': 'REQUIRED', 'connect_timeout': '5'}}
    conn, unmapped = connection_options(db)
    assert conn == {'engine': 'mysql', 'database': 'shop', 'login_unix_socket': '/run/mysqld/mysqld.sock',
                    'login_user': 'u', 'ssl_ca': '/ca.pem', 'ssl_mode': 'require', 'connect_timeout': 5}
    assert unmapped == []


def test_connection_options_sqlite_and_unknown():
    assert connection_options({'vendor': 'sqlite', 'name': '/srv/db.sqlite3', 'host': 'ignored'})[0] == {
        'engine': 'sqlite', 'database': '/srv/db.sqlite3'}
    assert connection_options({'vendor': 'oracle', 'name': 'x'})[0]['engine'] is None


def test_applied_state_arithmetic():
    applied = ['contenttypes.0001_initial', 'shop.0001_initial', 'shop.0002_x']
    assert applied_per_app(applied) == {'contenttypes': ['0001_initial'], 'shop': ['0001_initial', '0002_x']}
    plan = [{'id': 'shop.0002_x', 'backwards': True}]
    assert predicted_after(applied, plan) == applied[:2]
    plan = [{'id': 'shop.0003_y', 'backwards': False}]
    after = predicted_after(applied, plan)
    assert after[-1] == 'shop.0003_y'
    diff = applied_diff(applied, after)
    assert diff['before'].splitlines() == applied and diff['after'].endswith('shop.0003_y\n')


def test_compare_counts():
    recorded = {'shop.product': 3, 'auth.user': 1}
    assert compare_counts(recorded, dict(recorded), {'shop.product': 3, 'auth.user': 1}) == []
    assert compare_counts(recorded, dict(recorded)) == []
    m = compare_counts(recorded, {'shop.product': 2, 'auth.user': 1})
    assert [x['model'] for x in m] == ['shop.product'] and 'loaded 2 objects' in m[0]['problem']
    m = compare_counts(recorded, dict(recorded), {'shop.product': 5, 'auth.user': 1})
    assert m[0]['rows'] == 5
    assert compare_counts({}, {'x.y': 1})[0]['recorded'] == 0


def test_helper_source_is_the_helper():
    source = helper_source()
    assert 'def main(argv)' in source and 'ansible' not in source.split('"""')[2].split('def ')[0]
    compile(source, 'helper', 'exec')


def test_password_source_names_the_variable_never_the_value():
    params = {'environment': {'SHOP_DB_NAME': 'shop'}, 'secret_environment': {'SHOP_DB_PASSWORD': 's3cret', 'K': 1}}
    assert password_source('s3cret', params) == 'SHOP_DB_PASSWORD'
    assert password_source('other', params) is None
    assert password_source('', params) is None
