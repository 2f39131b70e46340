# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_snapshot / db_restore with MariaDB 11.8 (Debian 13's, fetched by scripts/fetch_engines.py), server and
client tools alike, and its client beside Debian 12's 10.11 server; and with Oracle's MySQL (the version Debian
unstable has, also fetched), whose own client tools take the MySQL side of every flavour rule: the dump flags,
the option file, caching_sha2_password, the checks.

From 11.4 on, MariaDB's clients require TLS unless told otherwise; an app host on Debian 13 (client 11.8)
whose database server is a Debian 12 one (10.11, no TLS unless configured) must still take and restore
snapshots, in plain text as the older clients did, when TLS was not asked for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import unique_name
from support.modules import COLLECTIONS_PATH, run_module
from support.mysql_data import content_digest, make_shop, mutate, schema, server_requiring_tls, tls_outcomes
from support.servers import MARIADB_SERIES, MYSQL_SERIES, MariaDBServer, MySQLServer, mariadb_series, mysql_series
from support.watch import assert_secret_absent, run_module_traced


@pytest.fixture(scope='module', params=MARIADB_SERIES)
def series_mariadb(request):
    server = MariaDBServer(basedir=mariadb_series(request.param)).start()
    yield server
    server.destroy()


@pytest.fixture(scope='module', params=MYSQL_SERIES)
def oracle_mysql(request):
    server = MySQLServer(mysql_series(request.param)).start()
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


def test_mysql_round_trip_with_its_own_client_tools(oracle_mysql, snapshot_root):
    db = shop_on(oracle_mysql)
    try:
        version = oracle_mysql.where.rstrip('/').split('/')[-1]
        assert oracle_mysql.sql('SELECT VERSION()')[0][0].startswith(version + '.')
        assert oracle_mysql.sql("SELECT plugin FROM mysql.user WHERE user = 'djangoops' AND host = '%'"
                                )[0][0] == 'caching_sha2_password'
        round_trip(oracle_mysql, db, snapshot_root, oracle_mysql.bindir, version)
    finally:
        oracle_mysql.drop_database(db)


def test_mysql_snapshot_records_the_flavour_and_keeps_the_password_out_of_argv(oracle_mysql, snapshot_root):
    db = shop_on(oracle_mysql)
    try:
        r, argvs = run_module_traced('db_snapshot', args(oracle_mysql, db, snapshot_root, oracle_mysql.bindir))
        assert not r.failed, r
        assert any(a and a[0].endswith('mysqldump') for a in argvs), argvs
        assert_secret_absent(oracle_mysql.password, argvs, r)
        part = r['manifest']['parts']['database']
        assert part['server_flavour'] == 'mysql' and part['client_flavour'] == 'mysql'
        assert part['client_tool'] == 'mysqldump'
        assert any('--set-gtid-purged=OFF' in c and '--column-statistics=0' in c for c in r['commands']), r['commands']
    finally:
        oracle_mysql.drop_database(db)


def test_mysqldump_cannot_leave_out_rows_and_says_so(oracle_mysql, snapshot_root):
    db = shop_on(oracle_mysql)
    try:
        r = run_module('db_snapshot', args(oracle_mysql, db, snapshot_root, oracle_mysql.bindir,
                                           exclude_table_data=['audit_log']), check=True)
        assert r.failed and r['msg'].startswith('exclude_table_data needs a dump tool with --ignore-table-data'), r
        assert r['msg'].endswith('mysqldump %s has none' % r['msg'].split('mysqldump ')[-1].split(' ')[0])
    finally:
        oracle_mysql.drop_database(db)


def test_mysql_with_the_mariadb_client_of_an_app_host(oracle_mysql, snapshot_root):
    """An app host on Debian has MariaDB's client tools (default-mysql-client); its database may be a MySQL
    server. They take and restore snapshots of it too (caching_sha2_password included)."""
    db = shop_on(oracle_mysql)
    try:
        version = '.'.join(subprocess.run(['mariadb-dump', '--version'], stdout=subprocess.PIPE, text=True,
                                          check=True).stdout.split('Distrib ')[1].split('.')[:2])
        round_trip(oracle_mysql, db, snapshot_root, '/usr/bin', version)
        # and mariadb-dump leaves out rows on a MySQL server too (--ignore-table-data is the client's own)
        before = content_digest(oracle_mysql, db)
        r = run_module('db_snapshot', args(oracle_mysql, db, snapshot_root, '/usr/bin', exclude_table_data=['audit_log']))
        assert not r.failed and r['excluded_table_data'] == ['audit_log'], r
        res = run_module('db_restore', args(oracle_mysql, db, snapshot_root, '/usr/bin', snapshot_id=r['snapshot_id']))
        assert not res.failed and res['tables_match'] is True, res
        after = content_digest(oracle_mysql, db)
        assert oracle_mysql.sql('SELECT COUNT(*) FROM audit_log', database=db)[0][0] == 0
        assert dict((t, d) for t, d in after.items() if t != 'audit_log') == \
            dict((t, d) for t, d in before.items() if t != 'audit_log')
    finally:
        oracle_mysql.drop_database(db)


@pytest.fixture(scope='module')
def tls_mysql():
    """A MySQL server that refuses every TCP connection without TLS, with a certificate of the tests' CA."""
    with server_requiring_tls(lambda extra_args: MySQLServer(mysql_series(MYSQL_SERIES[-1]),
                                                             extra_args=extra_args)) as server:
        yield server


def test_mysql_tls_modes_reach_pymysql_and_mysqls_own_tools(tls_mysql, snapshot_root):
    server = tls_mysql
    db = shop_on(server)
    bindir = server.bindir

    def snap(**kw):
        return run_module('db_snapshot', args(server, db, snapshot_root, bindir, **kw))
    r = snap(ssl_mode='disable')
    assert r.failed and 'insecure transport are prohibited' in r['msg'], r['msg']
    # require: TLS without verification (ssl-mode=REQUIRED for mysqldump and mysql); the server takes nothing else
    r = snap(ssl_mode='require')
    assert not r.failed, r
    res = run_module('db_restore', args(server, db, snapshot_root, bindir, ssl_mode='require',
                                        snapshot_id=r['snapshot_id']))
    assert not res.failed and res['tables_match'] is True, res
    # verify-ca and verify-full (VERIFY_CA / VERIFY_IDENTITY) with the CA that signed the server's certificate
    for mode in ('verify-ca', 'verify-full'):
        r = snap(ssl_mode=mode, ssl_ca=server.files['ca'])
        assert not r.failed, (mode, r.get('msg'))
    r = snap(ssl_mode='verify-full', ssl_ca=server.files['other-ca'])
    assert r.failed and 'certificate verify failed' in r['msg'], r['msg']


def test_mysql_option_lines_drive_mysqls_own_client(tls_mysql, tmp_path):
    """The option file the engine writes for a MySQL client makes MySQL's mysql verify the server (PyMySQL,
    which fails first in the module, is not involved here)."""
    sys.path.insert(0, COLLECTIONS_PATH)
    server = tls_mysql
    outcomes = tls_outcomes(server, 'mysql', os.path.join(server.bindir, 'mysql'), {
        'verify-ca': {'ssl_mode': 'verify-ca', 'ssl_ca': server.files['ca']},
        'verify-full': {'ssl_mode': 'verify-full', 'ssl_ca': server.files['ca']},
        'verify-other-ca': {'ssl_mode': 'verify-full', 'ssl_ca': server.files['other-ca']},
        'require': {'ssl_mode': 'require'},
        'disable': {'ssl_mode': 'disable'}}, tmp_path)
    for name in ('verify-ca', 'verify-full', 'require'):
        assert outcomes[name][0] == 0 and 'TLS' in outcomes[name][1], outcomes
    assert outcomes['verify-other-ca'][0] != 0, outcomes
    assert outcomes['disable'][0] != 0 and 'insecure transport' in outcomes['disable'][1], outcomes


def test_mysql_full_authentication_without_cryptography_is_named(oracle_mysql, snapshot_root, tmp_path):
    """caching_sha2_password (MySQL 8+'s default) over a connection without TLS sends the password RSA-encrypted
    whenever the server has not cached the account (after a restart or FLUSH PRIVILEGES); PyMySQL needs the
    cryptography package for that, and without it the module says so."""
    db = shop_on(oracle_mysql)
    shadow = tmp_path / 'shadow' / 'cryptography'
    shadow.mkdir(parents=True)
    (shadow / '__init__.py').write_text('raise ImportError("No module named \'cryptography\'")\n')
    env = {'PYTHONPATH': os.pathsep.join([COLLECTIONS_PATH, str(shadow.parent)])}
    try:
        oracle_mysql.root_sql('FLUSH PRIVILEGES')  # the server forgets the cached account
        r = run_module('db_snapshot', dict(oracle_mysql.conn_args(db), snapshot_root=snapshot_root, ssl_mode='disable'),
                       env=env)
        assert r.failed and 'caching_sha2_password' in r['msg'] and 'python3-cryptography' in r['msg'], r['msg']
        assert not os.path.exists(snapshot_root) or os.listdir(snapshot_root) == []
        # with TLS the password travels inside it: no cryptography needed
        oracle_mysql.root_sql('FLUSH PRIVILEGES')
        r = run_module('db_snapshot', dict(oracle_mysql.conn_args(db), snapshot_root=snapshot_root,
                                           client_bin_dir=oracle_mysql.bindir, ssl_mode='require'), env=env)
        assert not r.failed, r.get('msg')
    finally:
        oracle_mysql.drop_database(db)
