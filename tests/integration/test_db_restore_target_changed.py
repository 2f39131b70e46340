# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_restore says, when it fails, whether it touched the target (``target_changed``): the restore role and
playbook decide from it whether a failed restore changed anything (and so whether the app may simply be started
again). Each engine, refused before it touched the target - and failing after it did."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from conftest import unique_name
from support import mysql_data, pg_data, sqlite_data
from support.modules import run_module


def part_of(root, snapshot_id):
    """(manifest, its database part, path of the manifest)."""
    path = os.path.join(root, snapshot_id, 'manifest.json')
    with open(path, encoding='utf-8') as f:
        manifest = json.load(f)
    return manifest, manifest['parts']['database'], path


def forge(root, snapshot_id, change):
    """Change the database part's record with ``change(part, snapshot_dir)`` and save the manifest."""
    manifest, part, path = part_of(root, snapshot_id)
    change(part, os.path.join(root, snapshot_id))
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(manifest, f)


def replace_dump(data):
    """A ``forge`` change: the dump's bytes become ``data``, and the manifest lists their size and sha256 - the
    checksums hold, and only reading the dump finds it is none."""
    def change(part, snapdir):
        entry = part['files'][0]
        with open(os.path.join(snapdir, entry['path']), 'wb') as f:
            f.write(data)
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return change


def one_row_more(part, snapdir):  # pylint: disable=unused-argument
    """A ``forge`` change: the manifest records one row more in a table than the dump holds."""
    table = sorted(part['tables'])[0]
    part['tables'][table]['rows'] += 1


def assert_untouched(res, message):
    assert res.failed and message in res['msg'], res.get('msg')
    assert res['target_changed'] is False, res
    assert res['changed'] is False, 'a refusal that changed nothing reports no change: %s' % res


def assert_touched(res, message):
    assert res.failed and message in res['msg'], res.get('msg')
    assert res['target_changed'] is True, res
    assert res['changed'] is True, res


# -- SQLite --------------------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_shop(tmp_path):
    path = str(tmp_path / 'app' / 'db.sqlite3')
    os.makedirs(os.path.dirname(path))
    sqlite_data.make_shop(path, customers=40, products=10, orders=60)
    return path


def sqlite_args(path, root, **kw):
    return dict(dict(engine='sqlite', database=path, snapshot_root=root), **kw)


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_sqlite_refused_before_the_rename_did_not_change_the_target(sqlite_shop, snapshot_root, compression):
    r = run_module('db_snapshot', sqlite_args(sqlite_shop, snapshot_root, compression=compression))
    assert not r.failed, r
    sqlite_data.mutate(sqlite_shop)
    mutated = sqlite_data.content_digest(sqlite_shop)

    # A damaged file: refused by the checksums, before the engine starts.
    dump = os.path.join(snapshot_root, r['snapshot_id'], r['files'][0]['path'])
    with open(dump, 'r+b') as f:
        f.write(b'\0' * 16)
    res = run_module('db_restore', sqlite_args(sqlite_shop, snapshot_root))
    assert_untouched(res, 'checksum verification')

    # Bytes that are no database (and, compressed, no zstd frame either) with checksums that hold: refused
    # when the copy beside the target is checked, before it is renamed over the target.
    forge(snapshot_root, r['snapshot_id'], replace_dump(os.urandom(8192)))
    res = run_module('db_restore', sqlite_args(sqlite_shop, snapshot_root))
    assert_untouched(res, 'zstd' if compression == 'zstd' else 'integrity_check')
    assert sqlite_data.content_digest(sqlite_shop) == mutated
    assert sorted(os.listdir(os.path.dirname(sqlite_shop))) == ['db.sqlite3'], 'no copy left beside the target'


def test_sqlite_a_mismatch_found_after_the_rename_changed_the_target(sqlite_shop, snapshot_root):
    r = run_module('db_snapshot', sqlite_args(sqlite_shop, snapshot_root))
    assert not r.failed, r
    check = run_module('db_restore', sqlite_args(sqlite_shop, snapshot_root), check=True)
    assert not check.failed and check['target_changed'] is False and check['changed'] is True, check
    forge(snapshot_root, r['snapshot_id'], one_row_more)
    sqlite_data.mutate(sqlite_shop)
    res = run_module('db_restore', sqlite_args(sqlite_shop, snapshot_root))
    assert_touched(res, 'differs from snapshot')
    res = run_module('db_restore', sqlite_args(sqlite_shop, snapshot_root, fail_on_mismatch=False))
    assert not res.failed and res['target_changed'] is True and res['changed'] is True, res


# -- PostgreSQL ----------------------------------------------------------------------------------------------

def pg_args(server, database, root, **kw):
    return dict(dict(server.conn_args(database), snapshot_root=root), **kw)


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_postgresql_refused_or_rolled_back_did_not_change_the_target(pg_server, pg_db, snapshot_root, pg_clean):
    pg_data.make_shop(pg_server, pg_db, customers=30, products=10, orders=40)
    role = unique_name('gone')
    pg_server.sql('CREATE ROLE %s' % role)
    pg_server.sql('GRANT SELECT ON public.customer TO %s' % role, database=pg_db)
    r = run_module('db_snapshot', pg_args(pg_server, pg_db, snapshot_root))
    assert not r.failed, r
    pg_server.sql('REVOKE ALL ON public.customer FROM %s' % role, database=pg_db)
    pg_server.sql('DROP ROLE %s' % role)
    pg_data.mutate(pg_server, pg_db)
    mutated = pg_data.content_digest(pg_server, pg_db)

    # A session on the target, and no terminate_connections: refused before the target is touched.
    app = pg_server.connect(pg_db)
    try:
        res = run_module('db_restore', pg_args(pg_server, pg_db, snapshot_root, pg_clean=pg_clean))
        assert_untouched(res, 'in use by 1 other session')
    finally:
        app.close()
    # The load fails part-way (a GRANT to a role that is gone): into the scratch database, or in the one
    # transaction that is rolled back - the target is as it was.
    res = run_module('db_restore', pg_args(pg_server, pg_db, snapshot_root, pg_clean=pg_clean))
    assert_untouched(res, 'role "%s" does not exist' % role)
    assert pg_data.content_digest(pg_server, pg_db) == mutated


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_postgresql_a_mismatch_found_after_the_swap_changed_the_target(pg_server, pg_db, snapshot_root, pg_clean):
    pg_data.make_shop(pg_server, pg_db, customers=30, products=10, orders=40)
    r = run_module('db_snapshot', pg_args(pg_server, pg_db, snapshot_root))
    assert not r.failed, r
    forge(snapshot_root, r['snapshot_id'], one_row_more)
    res = run_module('db_restore', pg_args(pg_server, pg_db, snapshot_root, pg_clean=pg_clean,
                                           terminate_connections=True))
    assert_touched(res, 'differs from snapshot')


# -- MySQL / MariaDB -----------------------------------------------------------------------------------------

def my_args(server, database, root, **kw):
    return dict(dict(server.conn_args(database), snapshot_root=root), **kw)


def test_mysql_refused_before_the_drop_did_not_change_the_target(mariadb_server, mysql_db, snapshot_root):
    server = mariadb_server
    mysql_data.make_shop(server, mysql_db, customers=30, products=10, orders=40)
    ghost = unique_name('ghost')
    server.sql("CREATE DEFINER = `%s`@`%%` SQL SECURITY DEFINER VIEW ghost_view AS SELECT COUNT(*) AS n FROM customer"
               % ghost, database=mysql_db)
    r = run_module('db_snapshot', my_args(server, mysql_db, snapshot_root))
    assert not r.failed, r
    mysql_data.mutate(server, mysql_db)
    mutated = mysql_data.content_digest(server, mysql_db)
    res = run_module('db_restore', my_args(server, mysql_db, snapshot_root))  # the definer check
    assert_untouched(res, '%s@%%' % ghost)
    res = run_module('db_restore', dict(my_args(server, mysql_db, snapshot_root), login_password='not-the-password'))
    assert res.failed and res['target_changed'] is False and res['changed'] is False, res
    assert mysql_data.content_digest(server, mysql_db) == mutated


def test_mysql_a_failure_after_the_drop_changed_the_target(mariadb_server, mysql_db, snapshot_root):
    server = mariadb_server
    mysql_data.make_shop(server, mysql_db, customers=30, products=10, orders=40)
    r = run_module('db_snapshot', my_args(server, mysql_db, snapshot_root, compression='none'))
    assert not r.failed, r

    def not_sql(part, snapdir):
        with open(os.path.join(snapdir, part['files'][0]['path']), 'rb') as f:
            text = f.read()
        marker = b'-- Table structure for table `order_item`'
        replace_dump(text.replace(marker, b'THIS IS NOT SQL;\n' + marker))(part, snapdir)

    forge(snapshot_root, r['snapshot_id'], not_sql)
    res = run_module('db_restore', my_args(server, mysql_db, snapshot_root))
    assert_touched(res, 'PARTLY restored')
