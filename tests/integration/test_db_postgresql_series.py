# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_snapshot / db_restore with PostgreSQL 17 and 18, servers and client tools alike (fetched by
scripts/fetch_engines.py), and a newer client beside an older server.

Their archives are newer than 15's (version 1.16: a table's relkind in the table of contents, the
compression method in the header), which the archive reader must understand to load the tables
frozen and give the parallel workers their data offsets. And their pg_restore sets
transaction_timeout in every session, which a server before 17 refuses: such a client must never be
used to take a snapshot of, or to restore into, an older server."""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _pg_archive as pg_archive
from conftest import unique_name
from support.modules import run_module
from support.pg_data import content_digest, databases, make_shop, mutate, schema_dump, sequences
from support.servers import PG_OLD_CLIENT, PG_SERIES, PostgresServer, pg_client, pg_series

FROZEN = 'tables loaded frozen (TRUNCATE ONLY, then COPY ... WITH (FREEZE)): %d'
OFFSETS = 'data offsets for the parallel workers: written for %d tables'


@pytest.fixture(scope='module', params=PG_SERIES)
def series_server(request):
    bindir, client = pg_series(request.param)
    server = PostgresServer(bindir=bindir, client_bindir=client).start()
    yield server
    server.destroy()


@pytest.fixture
def series_shop(series_server):
    name = unique_name('pgs')
    series_server.create_database(name)
    make_shop(series_server, name)
    yield name
    series_server.drop_database(name)


def module_args(server, database, root, **kw):
    args = dict(server.conn_args(database), snapshot_root=root, client_bin_dir=server.client_bindir)
    args.update(kw)
    return args


def archive_version(root, result):
    """(major, minor) of the custom-format archive in a zstd snapshot."""
    path = os.path.join(root, result['snapshot_id'], result['files'][0]['path'])
    head = subprocess.run(['zstd', '-dc', path], stdout=subprocess.PIPE, check=True).stdout[:64]
    assert head[:5] == pg_archive.MAGIC
    return head[5], head[6]


def state(server, database):
    return schema_dump(server, database), content_digest(server, database), sequences(server, database)


@pytest.mark.parametrize('dump_opts, restore_opts', [
    pytest.param(dict(), dict(jobs=2), id='custom-zstd-jobs2'),
    pytest.param(dict(), dict(jobs=1), id='custom-zstd-jobs1'),
    pytest.param(dict(), dict(pg_clean='schemas'), id='custom-zstd-schemas'),
    pytest.param(dict(format='directory', compression='zstd', jobs=2), dict(jobs=2), id='directory-zstd'),
    pytest.param(dict(format='plain', compression='gzip'), dict(), id='plain-gzip'),
])
def test_round_trip_with_the_servers_own_client_tools(
        series_server, series_shop, snapshot_root, dump_opts, restore_opts):
    server, shop = series_server, series_shop
    before = state(server, shop)
    r = run_module('db_snapshot', module_args(server, shop, snapshot_root, table_stats='checksums', **dump_opts))
    assert not r.failed, r
    major = server.client_bindir.split(os.sep)[-2]
    assert r['client_version'].startswith(major + '.') and r['server_version'].startswith(major + '.'), r
    fmt = dump_opts.get('format', 'custom')
    if fmt == 'custom':
        assert archive_version(snapshot_root, r) == (1, 16), 'not the newer archive layout this test is about'
    if fmt == 'directory':
        files = [f['path'] for f in r['files']]
        assert any(p.endswith('.dat.zst') for p in files), files  # pg_dump 16+ compresses with zstd itself

    mutate(server, shop)
    res = run_module('db_restore', module_args(server, shop, snapshot_root, snapshot_id=r['snapshot_id'],
                                               **restore_opts))
    assert not res.failed, res
    assert res['tables_compared'] == 'checksums' and res['tables_match'] is True
    assert state(server, shop) == before
    if fmt == 'custom':
        # The archive reader understood the 1.16 table of contents: every table loaded frozen, and the
        # parallel workers got their data offsets.
        assert FROZEN % 6 in res['commands'], res['commands']
        if restore_opts.get('jobs') == 2:
            assert OFFSETS % 6 in res['commands'], res['commands']


def test_a_snapshot_of_postgresql_15_restores_into_a_newer_server(pg_server, pg_db, series_server, snapshot_root):
    """The upgrade path: a snapshot taken of the 15 server with its own tools, restored into a new database
    on the newer server by that server's tools."""
    make_shop(pg_server, pg_db)
    r = run_module('db_snapshot', dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root,
                                       table_stats='checksums'))
    assert not r.failed, r
    assert r['client_version'].startswith('15.'), r
    target = unique_name('up')
    try:
        res = run_module('db_restore', module_args(series_server, target, snapshot_root, create=True))
        assert not res.failed, res
        assert res['tables_compared'] == 'checksums' and res['tables_match'] is True
        assert content_digest(series_server, target) == content_digest(pg_server, pg_db)
        assert sequences(series_server, target) == sequences(pg_server, pg_db)
    finally:
        series_server.drop_database(target)


@pytest.mark.parametrize('major', PG_SERIES)
def test_newer_client_tools_are_refused_for_an_older_server_before_anything_is_written(
        pg_server, pg_db, snapshot_root, major):
    """pg_dump 17 or 18 can dump PostgreSQL 15, but only pg_restore 17 or later reads what it writes, and that
    sets transaction_timeout, which 15 refuses: the snapshot could never be restored into its own server. So
    the pre-flight refuses, in check mode too, and nothing is written."""
    make_shop(pg_server, pg_db)
    client = pg_series(major)[1]
    args = dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root, client_bin_dir=client)
    for check in (True, False):
        r = run_module('db_snapshot', args, check=check)
        assert r.failed, r
        assert r['msg'].startswith('pg_dump %s.' % major), r['msg']
        assert 'cannot be restored into the PostgreSQL server 15.' in r['msg'], r['msg']
        assert 'transaction_timeout (new in PostgreSQL 17)' in r['msg'] and 'postgresql-client-15' in r['msg']
        assert not os.path.exists(snapshot_root) or os.listdir(snapshot_root) == []


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_a_newer_pg_restore_is_refused_for_an_older_server_before_the_target_is_touched(
        pg_server, pg_db, snapshot_root, pg_clean):
    make_shop(pg_server, pg_db)
    r = run_module('db_snapshot', dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root))
    assert not r.failed, r
    mutate(pg_server, pg_db)
    mutated = state(pg_server, pg_db)
    before = databases(pg_server)
    args = dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root, client_bin_dir=pg_series('17')[1],
                pg_clean=pg_clean)
    for check in (True, False):
        res = run_module('db_restore', args, check=check)
        assert res.failed, res
        assert res['msg'].startswith('pg_restore 17.') and 'cannot restore into the PostgreSQL server 15.' in res['msg']
        assert 'transaction_timeout' in res['msg'] and 'postgresql-client-15' in res['msg'], res['msg']
    assert state(pg_server, pg_db) == mutated and databases(pg_server) == before
    # the server's own tools restore it
    res = run_module('db_restore', dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root, pg_clean=pg_clean))
    assert not res.failed and res['tables_match'] is True, res


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_a_plain_snapshot_is_refused_by_a_psql_older_than_its_restrict_line(pg_server, pg_db, snapshot_root,
                                                                            pg_clean):
    """pg_dump 15.14 and later (13.22, 14.19, 16.10, 17.6, 18) begin a plain SQL script with ``\\restrict``
    (CVE-2025-8714), and a psql from before those releases stops at that first line. A host with such a psql
    must be told before the target is touched, in check mode too, not find out in the middle of a rollback.
    psql 14.1 here is a real one (fetched from PyPI); the same snapshot restores with the server's own psql."""
    make_shop(pg_server, pg_db)
    r = run_module('db_snapshot', dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root, format='plain',
                                       compression='none'))
    assert not r.failed, r
    with open(os.path.join(snapshot_root, r['snapshot_id'], r['files'][0]['path']), 'rb') as f:
        assert any(line.startswith(b'\\restrict ') for line in f), 'no \\restrict from pg_dump ' + r['client_version']
    mutate(pg_server, pg_db)
    mutated = state(pg_server, pg_db)
    before = databases(pg_server)
    args = dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root, client_bin_dir=pg_client(PG_OLD_CLIENT),
                pg_clean=pg_clean)
    for check in (True, False):
        res = run_module('db_restore', args, check=check)
        assert res.failed, res
        assert res['msg'].startswith("psql 14.1 cannot run this snapshot's SQL script, which pg_dump %s wrote"
                                     % r['client_version']), res['msg']
        assert '\\restrict' in res['msg'] and 'postgresql-client-15' in res['msg'], res['msg']
    assert state(pg_server, pg_db) == mutated and databases(pg_server) == before
    res = run_module('db_restore', dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root, pg_clean=pg_clean))
    assert not res.failed and res['tables_match'] is True, res
