# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_snapshot / db_restore with MariaDB 11.8 (Debian 13's, fetched by scripts/fetch_engines.py), server and
client tools alike, and its client beside Debian 12's 10.11 server.

From 11.4 on, MariaDB's clients require TLS unless told otherwise; an app host on Debian 13 (client 11.8)
whose database server is a Debian 12 one (10.11, no TLS unless configured) must still take and restore
snapshots, in plain text as the older clients did, when TLS was not asked for."""

from __future__ import annotations

import pytest

from conftest import unique_name
from support.modules import run_module
from support.mysql_data import content_digest, make_shop, mutate, schema
from support.servers import MARIADB_SERIES, MariaDBServer, mariadb_series


@pytest.fixture(scope='module', params=MARIADB_SERIES)
def series_mariadb(request):
    server = MariaDBServer(basedir=mariadb_series(request.param)).start()
    yield server
    server.destroy()


def shop_on(server):
    name = unique_name('mys')
    server.create_database(name)
    make_shop(server, name)
    return name


def args(server, db, root, client_bin_dir, **kw):
    a = dict(server.conn_args(db), snapshot_root=root, client_bin_dir=client_bin_dir)
    a.update(kw)
    return a


def round_trip(server, db, root, client_bin_dir, version):
    """Snapshot ``db`` with the tools in ``client_bin_dir``, wreck it, restore it with one client and with the
    parallel loading: each time exactly the snapshot's schema and rows."""
    before = schema(server, db), content_digest(server, db)
    r = run_module('db_snapshot', args(server, db, root, client_bin_dir, table_stats='checksums'))
    assert not r.failed, r
    assert r['client_version'].startswith(version + '.'), r
    for jobs in (1, 2):
        mutate(server, db)
        assert (schema(server, db), content_digest(server, db)) != before
        res = run_module('db_restore', args(server, db, root, client_bin_dir, snapshot_id=r['snapshot_id'], jobs=jobs))
        assert not res.failed, res
        assert res['tables_compared'] == 'checksums' and res['tables_match'] is True
        assert (schema(server, db), content_digest(server, db)) == before, 'jobs=%d' % jobs
    assert str(server.sql('SELECT price_with_tax(10.00)', database=db)[0][0]) == '11.90'
    server.sql("INSERT INTO product (sku, title) VALUES ('T-1', 'triggered')", database=db)
    assert server.sql("SELECT COUNT(*) FROM audit_log WHERE msg = 'product T-1'", database=db)[0][0] == 1


def test_round_trip_with_the_servers_own_client_tools(series_mariadb, snapshot_root):
    db = shop_on(series_mariadb)
    try:
        version = series_mariadb.bindir.split('/')[-3]
        assert series_mariadb.sql('SELECT VERSION()')[0][0].startswith(version + '.')
        round_trip(series_mariadb, db, snapshot_root, series_mariadb.bindir, version)
    finally:
        series_mariadb.drop_database(db)


def test_a_newer_client_works_with_a_server_without_tls(mariadb_server, mysql_db, snapshot_root):
    """Debian 12's MariaDB 10.11 offers no TLS (none configured); the 11.8 client tools would refuse it ("SSL is
    required, but the server does not support it") unless told to speak plain text, as the module's own
    connection does when ssl_mode does not ask for TLS."""
    make_shop(mariadb_server, mysql_db)
    assert mariadb_server.sql("SHOW GLOBAL VARIABLES LIKE 'have_ssl'")[0][1] != 'YES'
    version = MARIADB_SERIES[-1]
    round_trip(mariadb_server, mysql_db, snapshot_root, mariadb_series(version) + '/bin', version)


def test_tls_asked_for_from_a_server_without_is_refused_before_anything_runs(
        mariadb_server, mysql_db, snapshot_root):
    make_shop(mariadb_server, mysql_db)
    r = run_module('db_snapshot', args(mariadb_server, mysql_db, snapshot_root,
                                       mariadb_series(MARIADB_SERIES[-1]) + '/bin', ssl_mode='require'))
    # PyMySQL refuses by itself ("SSL is required but the server doesn't support it"); an older one falls back to
    # plain text and the module refuses ("ssl_mode=require, but ... did not accept TLS")
    assert r.failed and r['msg'].startswith(('cannot connect to the MySQL/MariaDB server at',
                                             'ssl_mode=require, but the MySQL/MariaDB server at')), r['msg']
    assert 'SSL is required' in r['msg'] or r['msg'].endswith('did not accept TLS'), r['msg']
    assert not r.get('commands'), 'no tool ran'


def test_an_older_client_is_refused_for_a_newer_server(series_mariadb, snapshot_root):
    db = shop_on(series_mariadb)
    try:
        r = run_module('db_snapshot', dict(series_mariadb.conn_args(db), snapshot_root=snapshot_root))
        assert r.failed, r
        assert 'is older than the MariaDB %s' % series_mariadb.sql('SELECT VERSION()')[0][0].split('-')[0] \
            in r['msg'], r['msg']
    finally:
        series_mariadb.drop_database(db)
