# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_snapshot / db_restore against a real MariaDB server, with the real mariadb-dump and mariadb."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time

import pytest

from conftest import unique_name
from support.background import InThread
from support.disk import assert_full_disk_fails_cleanly, small_tmpfs
from support.modules import COLLECTIONS_PATH, assert_exclusions_refused, run_module
from support.mysql_data import (content_digest, fill_blobs, make_shop, mutate, next_auto_increment,
                                schema, server_requiring_tls, tls_outcomes)
from support.servers import MariaDBServer
from support.watch import assert_secret_absent, process_argvs, run_module_traced
from support.wrappers import make_wrapper


def snap(server, db, root, **kw):
    args = server.conn_args(db)
    args.update(snapshot_root=root)
    args.update(kw)
    return run_module('db_snapshot', args)


def restore(server, db, root, **kw):
    args = server.conn_args(db)
    args.update(snapshot_root=root)
    args.update(kw)
    return run_module('db_restore', args)


def root_entries(root):
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


@pytest.fixture
def shop(mariadb_server, mysql_db):
    make_shop(mariadb_server, mysql_db)
    return mysql_db


@pytest.fixture
def other_db(mariadb_server):
    """A name for a database a test creates; dropped afterwards whatever happened."""
    name = unique_name('myo')
    yield name
    mariadb_server.drop_database(name)


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_round_trip_is_exact(mariadb_server, shop, snapshot_root, compression):
    server = mariadb_server
    before_schema, before_rows = schema(server, shop), content_digest(server, shop)
    next_id = next_auto_increment(server, shop, 'customer')
    assert next_id == 301  # five rows were deleted from the tail: it is not max(id) + 1
    r = snap(server, shop, snapshot_root, compression=compression, table_stats='checksums')
    assert not r.failed, r
    assert r['changed'] is True and r['finalized'] is True and r['compression'] == compression
    assert r['files'][0]['path'] == 'database/database.sql' + {'none': '', 'zstd': '.zst'}[compression]
    assert r['tables']['customer']['rows'] == 295 and len(r['tables']['customer']['checksum']) == 16
    assert set(r['tables']) == {'customer', 'product', 'order', 'order_item', 'legacy_note', 'audit_log',
                                'odd name é'}, 'base tables only, no views'
    for dirpath, dirs, files in os.walk(snapshot_root):
        assert os.stat(dirpath).st_mode & 0o777 == 0o700, dirpath
        for f in files:
            assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600, f
        del dirs

    mutate(server, shop)
    assert schema(server, shop) != before_schema and content_digest(server, shop) != before_rows

    r2 = restore(server, shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert not r2.failed, r2
    assert r2['tables_compared'] == 'checksums' and r2['tables_match'] is True
    assert r2['mysql_definers'] == 'keep'
    assert schema(server, shop) == before_schema
    assert content_digest(server, shop) == before_rows
    server.sql("INSERT INTO customer (email) VALUES ('after@example.org')", database=shop)
    assert server.sql("SELECT id FROM customer WHERE email = 'after@example.org'", database=shop)[0][0] == next_id
    assert str(server.sql('SELECT price_with_tax(10.00)', database=shop)[0][0]) == '11.90'
    server.sql("CALL add_customer('proc@example.org')", database=shop)
    server.sql("INSERT INTO product (sku, title) VALUES ('T-1', 'triggered')", database=shop)
    assert server.sql("SELECT COUNT(*) FROM audit_log WHERE msg = 'product T-1'", database=shop)[0][0] == 1


def test_manifest_records_what_the_restore_needs(mariadb_server, shop, snapshot_root):
    r = snap(mariadb_server, shop, snapshot_root)
    assert not r.failed, r
    with open(os.path.join(snapshot_root, r['snapshot_id'], 'manifest.json'), encoding='utf-8') as f:
        part = json.load(f)['parts']['database']
    assert part['engine'] == 'mysql' and part['format'] == 'sql' and part['database'] == shop
    assert part['server_flavour'] == 'mariadb' and part['client_flavour'] == 'mariadb'
    assert part['client_tool'] == 'mariadb-dump' and part['server_version'] == r['server_version']
    assert (part['charset'], part['collation']) == ('utf8mb4', 'utf8mb4_bin')
    assert part['views'] == ['order_totals'] and part['definers'] == ['djangoops@%']
    # auto is zstd here, at the default level: level 3 with the parameters for SQL text, recorded.
    assert part['compression'] == 'zstd' and part['compression_level'] == 3, part
    assert part['compression_params'] == 'mml=6,hlog=18,clog=17', part
    assert any('zstd -q -c -3 --zstd=mml=6,hlog=18,clog=17 -T0' in c for c in r['commands']), r['commands']
    assert part['tables']['order_item'] == {'rows': 1500, 'checksum': None}
    dump_cmd = [c for c in part['commands'] if 'mariadb-dump' in c][0]
    for flag in ('--single-transaction', '--routines', '--triggers', '--events', '--hex-blob', '--quick',
                 '--default-character-set=utf8mb4'):
        assert flag in dump_cmd
    assert dump_cmd.split()[1].startswith('--defaults-extra-file=')
    assert '--databases' not in dump_cmd


def test_restore_into_another_created_database_keeps_charset(mariadb_server, shop, snapshot_root, other_db):
    server = mariadb_server
    r = snap(server, shop, snapshot_root, compression='gzip', table_stats='checksums')
    assert not r.failed, r
    res = restore(server, other_db, snapshot_root)
    assert res.failed and 'does not exist' in res['msg'] and 'create: true' in res['msg']
    res = restore(server, other_db, snapshot_root, create=True)
    assert not res.failed, res
    assert res['snapshot_id'] == r['snapshot_id'] and res['tables_match'] is True
    assert server.sql('SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA '
                      'WHERE SCHEMA_NAME = %s', params=(other_db,))[0] == ('utf8mb4', 'utf8mb4_bin')
    assert schema(server, other_db, rename=other_db) == dict(
        (k, v) for k, v in schema(server, shop).items() if k != 'database') | {
        'database': ('utf8mb4', 'utf8mb4_bin')}
    assert content_digest(server, other_db) == content_digest(server, shop)


def test_restore_into_another_database_leaves_the_dumped_one_alone(mariadb_server, mysql_db, snapshot_root, other_db):
    # A routine created while the database had another collation: the dump switches the database's collation
    # around it with ALTER DATABASE `<dumped db>` lines, which must name the target in a restore elsewhere.
    server, db = mariadb_server, mysql_db
    server.sql('ALTER DATABASE `%s` CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci' % db)
    server.sql('CREATE TABLE t (id INT PRIMARY KEY)', database=db)
    server.sql('CREATE PROCEDURE p() SELECT COUNT(*) FROM t', database=db)
    server.sql('ALTER DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci' % db)
    r = snap(server, db, snapshot_root, compression='none')
    assert not r.failed, r
    with open(os.path.join(snapshot_root, r['snapshot_id'], r['files'][0]['path']), 'rb') as f:
        assert ('ALTER DATABASE `%s` CHARACTER SET utf8mb3' % db).encode() in f.read(), 'the case this is about'
    server.sql('DROP DATABASE `%s`' % db)  # as on another server: the dumped database is not there
    res = restore(server, other_db, snapshot_root, create=True)
    assert not res.failed and res['tables_match'] is True, res.get('msg', res)
    assert any('ALTER DATABASE statements of the dump given the name %s' % other_db in c for c in res['commands'])
    assert list(server.sql('SELECT DATABASE_COLLATION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s',
                           params=(other_db,))) == [('utf8mb3_general_ci',)], 'the routine keeps its collation'
    assert list(server.sql('SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s',
                           params=(other_db,))) == [('utf8mb4_unicode_ci',)]
    assert list(server.sql('SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s',
                           params=(db,))) == [], 'the dumped database was not re-created'


def test_definers_missing_on_target_refuse_or_rewrite(mariadb_server, shop, snapshot_root):
    server = mariadb_server
    ghost = unique_name('ghost')
    server.sql("CREATE DEFINER = `%s`@`%%` SQL SECURITY DEFINER VIEW ghost_view AS SELECT COUNT(*) AS n FROM customer"
               % ghost, database=shop)
    r = snap(server, shop, snapshot_root, table_stats='checksums')
    assert not r.failed, r
    mutate(server, shop)
    mutated = content_digest(server, shop)
    res = restore(server, shop, snapshot_root)
    assert res.failed and '%s@%%' % ghost in res['msg'] and 'mysql_definers: current_user' in res['msg']
    assert 'Nothing was changed' in res['msg'] and content_digest(server, shop) == mutated
    res = restore(server, shop, snapshot_root, mysql_definers='current_user')
    assert not res.failed, res
    assert res['tables_match'] is True and res['definers_rewritten'] >= 6
    definers = server.sql("SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s UNION "
                          "SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s UNION "
                          "SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s UNION "
                          "SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
                          params=(shop,) * 4)
    assert [d[0] for d in definers] == ['djangoops@%']
    assert server.sql('SELECT n FROM ghost_view', database=shop)[0][0] == 295, 'the view works now'


def test_unix_socket_without_password(mariadb_server, shop, snapshot_root, other_db):
    args = dict(engine='mysql', database=shop, login_unix_socket=mariadb_server.socket, login_user='root',
                snapshot_root=snapshot_root)
    r = run_module('db_snapshot', dict(args, table_stats='checksums'))
    assert not r.failed, r
    r2 = run_module('db_restore', dict(args, database=other_db, create=True))
    assert not r2.failed, r2
    assert r2['tables_match'] is True


def test_check_mode_writes_and_changes_nothing(mariadb_server, shop, snapshot_root):
    server = mariadb_server
    r = snap(server, shop, snapshot_root)
    assert not r.failed, r.get("msg", r)
    mutate(server, shop)
    mutated_schema, mutated_rows = schema(server, shop), content_digest(server, shop)
    args = server.conn_args(shop)
    r_check = run_module('db_snapshot', dict(args, snapshot_root=snapshot_root + '2'), check=True)
    assert not r_check.failed and r_check['changed'] is True, r_check
    assert r_check['server_version'] and r_check['preflight']['estimated_bytes'] > 0
    assert not os.path.exists(snapshot_root + '2')
    r_restore = run_module('db_restore', dict(args, snapshot_root=snapshot_root, snapshot_id=r['snapshot_id']),
                           check=True, diff=True)
    assert not r_restore.failed and r_restore['changed'] is True, r_restore
    assert schema(server, shop) == mutated_schema and content_digest(server, shop) == mutated_rows
    # the diff: the tables now (shipment added, product dropped) against those the snapshot recorded
    now, then = r_restore['diff']['before'].splitlines(), r_restore['diff']['after'].splitlines()
    assert then == sorted(r['tables']) and 'product' in then and 'shipment' not in then, r_restore['diff']
    assert 'shipment' in now and 'product' not in now and set(then) - {'product'} <= set(now), r_restore['diff']


def test_secrets_never_leave_the_defaults_file(mariadb_server, shop, snapshot_root, tmp_path):
    server = mariadb_server
    bindir, log = str(tmp_path / 'bin'), str(tmp_path / 'defaults.log')
    make_wrapper(bindir, 'mariadb-dump', 'pass', log)
    make_wrapper(bindir, 'mariadb', 'pass', log)
    args = dict(server.conn_args(shop), snapshot_root=snapshot_root, client_bin_dir=bindir)
    seen = []
    for name, extra in (('db_snapshot', {'table_stats': 'checksums'}), ('db_restore', {})):
        result, execs = run_module_traced(name, dict(args, **extra))
        assert not result.failed, result
        tools = [a for a in execs if os.path.basename(a[0]) in ('mariadb-dump', 'mariadb') and a[1:] != ['--version']]
        assert tools, execs
        for argv in tools:
            assert argv[1].startswith('--defaults-extra-file='), argv
            seen.append(argv[1].split('=', 1)[1])
        assert_secret_absent(server.password, execs, dict(result), result.stdout, result.stderr)
        assert 'MYSQL_PWD' not in repr(execs)
    with open(log, encoding='utf-8') as f:
        modes = [line.split() for line in f]
    assert {m[0] for m in modes} == set(seen) and {(m[1], m[2]) for m in modes} == {('600', '700')}
    for path in seen:
        assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path)), path


def test_wrong_password_names_the_user_not_the_password(mariadb_server, shop, snapshot_root):
    r = snap(mariadb_server, shop, snapshot_root, login_password='not-' + mariadb_server.password)
    assert r.failed
    assert "'djangoops'" in r['msg'] and 'refused the login' in r['msg'], r['msg']
    assert_secret_absent(mariadb_server.password, dict(r), r.stdout, r.stderr)
    assert_secret_absent('not-' + mariadb_server.password, dict(r), r.stdout, r.stderr)
    assert root_entries(snapshot_root) == []


def test_unknown_database(mariadb_server, snapshot_root):
    r = snap(mariadb_server, 'no_such_db_xyz', snapshot_root)
    assert r.failed and 'no_such_db_xyz does not exist' in r['msg'], r['msg']
    assert root_entries(snapshot_root) == []


def test_server_down(private_mariadb_server, snapshot_root):
    server = private_mariadb_server
    db = unique_name('down')
    server.create_database(db)
    server.sql('CREATE TABLE t (id INT PRIMARY KEY)', database=db)
    r = snap(server, db, snapshot_root)
    assert not r.failed, r
    server.kill()
    r = snap(server, db, snapshot_root)
    assert r.failed and 'cannot connect' in r['msg'] and '127.0.0.1:%d' % server.port in r['msg'], r['msg']
    res = restore(server, db, snapshot_root)
    assert res.failed and 'cannot connect' in res['msg']
    assert len(root_entries(snapshot_root)) == 1, 'only the first, complete snapshot'


def _find_dump_process(db, deadline):
    """pid of the mariadb-dump whose argv names ``db`` (unique to this test), once it has written."""
    while time.monotonic() < deadline:
        for pid, argv in process_argvs():
            if not (argv and argv[0].endswith(b'mariadb-dump') and db.encode() in argv):
                continue
            try:
                with open('/proc/%d/io' % pid, encoding='ascii') as f:
                    wchar = int([line for line in f if line.startswith('wchar')][0].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if wchar > 1024 * 1024:
                return pid
        time.sleep(0.005)
    return None


def test_dump_tool_killed_midway_leaves_nothing(mariadb_server, mysql_db, snapshot_root):
    fill_blobs(mariadb_server, mysql_db, 48)
    job = InThread(lambda: snap(mariadb_server, mysql_db, snapshot_root, compression='zstd'))
    job.start()
    pid = _find_dump_process(mysql_db, time.monotonic() + 60)
    assert pid, 'the dump finished before it could be killed'
    os.kill(pid, 9)
    job.wait(120, 'the snapshot hangs after its dump tool was killed')
    r = job.result
    assert r.failed and 'mariadb-dump was killed by signal 9' in r['msg'], r['msg']
    assert root_entries(snapshot_root) == [], 'no manifest, no .partial'
    r = snap(mariadb_server, mysql_db, snapshot_root, compression='zstd')
    assert not r.failed, r
    assert r['tables']['bulk']['rows'] == 48


def test_dump_without_footer_is_an_error(mariadb_server, shop, snapshot_root, tmp_path):
    bindir = str(tmp_path / 'bin')
    make_wrapper(bindir, 'mariadb-dump', 'cut-footer')
    r = snap(mariadb_server, shop, snapshot_root, client_bin_dir=bindir)
    assert r.failed and 'does not end with the "-- Dump completed" footer' in r['msg'], r['msg']
    assert root_entries(snapshot_root) == []


def test_a_tool_that_says_error_but_exits_0_fails_the_task(mariadb_server, shop, snapshot_root, tmp_path):
    # The real tools do all their work and exit 0; only a line on stderr says they failed.
    server = mariadb_server
    lying_dump = str(tmp_path / 'dump')
    make_wrapper(lying_dump, 'mariadb-dump', 'error-exit-0',
                 says='mariadb-dump: Error 2013: Lost connection to server during query when dumping table '
                      '`customer` at row: 7')
    make_wrapper(lying_dump, 'mariadb', 'pass')
    r = snap(server, shop, snapshot_root, client_bin_dir=lying_dump)
    assert r.failed and 'Lost connection to server during query' in r['msg'], r['msg']
    assert root_entries(snapshot_root) == [], 'no manifest, no .partial'
    good = snap(server, shop, snapshot_root)
    assert not good.failed, good
    for jobs in (1, 2):  # one client, or the main one and the parallel loaders
        lying_client = str(tmp_path / ('client%d' % jobs))
        make_wrapper(lying_client, 'mariadb-dump', 'pass')
        make_wrapper(lying_client, 'mariadb', 'error-exit-0',
                     says="ERROR 1062 (23000) at line 7: Duplicate entry '1' for key 'PRIMARY'")
        res = restore(server, shop, snapshot_root, client_bin_dir=lying_client, jobs=jobs)
        assert res.failed and "Duplicate entry '1' for key 'PRIMARY'" in res['msg'], res['msg']


def test_altered_or_truncated_dump_is_refused_and_target_untouched(mariadb_server, shop, snapshot_root):
    server = mariadb_server
    r = snap(server, shop, snapshot_root, compression='none')
    assert not r.failed, r
    mutate(server, shop)
    mutated = schema(server, shop), content_digest(server, shop)
    dump = os.path.join(snapshot_root, r['snapshot_id'], r['files'][0]['path'])
    with open(dump, 'r+b') as f:
        f.seek(os.path.getsize(dump) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    res = restore(server, shop, snapshot_root)
    assert res.failed and 'checksum verification' in res['msg'] and 'refusing' in res['msg'], res['msg']
    os.truncate(dump, 1000)
    res = restore(server, shop, snapshot_root)
    assert res.failed and 'size 1000' in res['msg'], res['msg']
    assert (schema(server, shop), content_digest(server, shop)) == mutated


def test_sql_error_midway_says_the_target_is_partial(mariadb_server, shop, snapshot_root):
    """A dump the server rejects halfway (here: one whose manifest was forged to match it)."""
    server = mariadb_server
    r = snap(server, shop, snapshot_root, compression='none')
    snapdir = os.path.join(snapshot_root, r['snapshot_id'])
    dump = os.path.join(snapdir, r['files'][0]['path'])
    with open(dump, 'rb') as f:
        text = f.read()
    marker = b'-- Table structure for table `order_item`'
    text = text.replace(marker, b'THIS IS NOT SQL;\n' + marker)
    with open(dump, 'wb') as f:
        f.write(text)
    with open(os.path.join(snapdir, 'manifest.json'), encoding='utf-8') as f:
        manifest = json.load(f)
    manifest['parts']['database']['files'][0].update(size=len(text), sha256=hashlib.sha256(text).hexdigest())
    with open(os.path.join(snapdir, 'manifest.json'), 'w', encoding='utf-8') as f:
        json.dump(manifest, f)
    res = restore(server, shop, snapshot_root)
    assert res.failed and 'PARTLY restored' in res['msg'] and 'ERROR 1064' in res['msg'], res['msg']
    assert res['failed_command'].split()[1].startswith('--defaults-extra-file=')


def test_large_tables_load_on_parallel_clients_and_the_round_trip_is_exact(mariadb_server, mysql_db, snapshot_root):
    """Tables whose dump holds more than one INSERT statement are loaded by `jobs` clients at once. What must
    hold for that: each client has the dump's session settings (an id 0 kept by NO_AUTO_VALUE_ON_ZERO, TIMESTAMP
    values read in UTC while the server's zone is not), and no trigger exists while the rows go in (product's
    AFTER INSERT trigger would add rows to audit_log)."""
    server, db = mariadb_server, mysql_db
    make_shop(server, db, customers=12000, products=300, orders=30000)
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            cur.execute("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")
            cur.execute("INSERT INTO customer (id, email, seen) VALUES (0, 'zero@example.org', '2026-03-04 05:06:07')")
    finally:
        con.close()
    zone = server.sql('SELECT @@GLOBAL.time_zone')[0][0]
    server.sql("SET GLOBAL time_zone = '+05:00'")  # this worker's own server; put back below
    try:
        before_schema, before_rows = schema(server, db), content_digest(server, db)
        audit_rows = server.sql('SELECT COUNT(*) FROM audit_log', database=db)[0][0]
        r = snap(server, db, snapshot_root, table_stats='checksums')
        assert not r.failed, r
        mutate(server, db)
        res = restore(server, db, snapshot_root, snapshot_id=r['snapshot_id'])
        assert not res.failed, res.get('msg')
        loaded = [c for c in res['commands'] if c.startswith('rows loaded by 2 clients at once for ')]
        assert len(loaded) == 1, res['commands']
        for table in ('`customer`', '`product`', '`order`', '`order_item`'):
            assert table + ' (' in loaded[0], loaded  # each in more than one statement, so in parallel
        assert '`legacy_note`' not in loaded[0]  # one statement: the main client's
        assert res['tables_match'] is True
        assert schema(server, db) == before_schema
        assert content_digest(server, db) == before_rows
        assert server.sql('SELECT COUNT(*) FROM audit_log', database=db)[0][0] == audit_rows
        assert server.sql('SELECT email FROM customer WHERE id = 0', database=db) == (('zero@example.org',),)
        # the trigger is back once the rows are in
        server.sql("INSERT INTO product (sku, title) VALUES ('T-2', 'triggered')", database=db)
        assert server.sql("SELECT COUNT(*) FROM audit_log WHERE msg = 'product T-2'", database=db)[0][0] == 1
    finally:
        server.sql("SET GLOBAL time_zone = %s", params=(zone,))


def _find_restore_worker(db, deadline):
    """pid of a client loading rows into ``db`` for the parallel restore (not the main one: --unbuffered)."""
    while time.monotonic() < deadline:
        for pid, argv in process_argvs():
            if argv and argv[0].endswith(b'mariadb') and ('--database=' + db).encode() in argv \
                    and b'--unbuffered' not in argv:
                return pid
        time.sleep(0.005)
    return None


def _process_state(pid):
    """The state letter of /proc/<pid>/stat ('T' stopped, 'Z' exited), or None when it is gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def _stop_a_running_worker(db, deadline):
    """A parallel client of the restore into ``db``, stopped (SIGSTOP) while it was still running: killed
    afterwards, it is sure to die of that signal. (Killed as found, a client that had just finished its
    rows died of nothing and the restore succeeded.) None if none was caught running before ``deadline``."""
    while time.monotonic() < deadline:
        pid = _find_restore_worker(db, deadline)
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        settle = time.monotonic() + 5
        state = _process_state(pid)
        while state not in ('T', 'Z', None) and time.monotonic() < settle:
            time.sleep(0.001)
            state = _process_state(pid)
        if state == 'T':
            return pid
    return None


def test_a_parallel_client_killed_midway_fails_the_restore_clearly(mariadb_server, mysql_db, snapshot_root):
    server, db = mariadb_server, mysql_db
    fill_blobs(server, db, 48)  # 48 rows of 1 MiB: one INSERT statement each, so loaded in parallel
    r = snap(server, db, snapshot_root)
    assert not r.failed, r
    job = InThread(lambda: restore(server, db, snapshot_root))
    job.start()
    pid = _stop_a_running_worker(db, time.monotonic() + 60)
    assert pid, 'no parallel client seen running'
    os.kill(pid, signal.SIGKILL)
    job.wait(120, 'the restore hangs after a client died')
    res = job.result
    assert res.failed and 'PARTLY restored' in res['msg'], res['msg']
    assert 'killed by signal 9' in res['msg'], res['msg']
    # the snapshot is unchanged and a second restore completes
    again = restore(server, db, snapshot_root)
    assert not again.failed and again['tables_match'] is True, again.get('msg', again)


def test_a_disk_too_small_is_refused_first_and_a_full_one_leaves_nothing(mariadb_server, mysql_db, tmp_path):
    server, db = mariadb_server, mysql_db
    fill_blobs(server, db, 24)  # about 48 MiB of SQL (hex), into 8 MiB
    with small_tmpfs(str(tmp_path / 'small'), size='8m') as small:
        root = os.path.join(small, 'snaps')
        r = snap(server, db, root, compression='none')
        assert r.failed and 'not enough free space' in r['msg'], r['msg']
        assert r['preflight']['free_bytes'] <= 8 * 2 ** 20 < r['preflight']['estimated_bytes'], r['preflight']
        assert not os.path.exists(root) or os.listdir(root) == []
        # mariadb-dump | the hashing file, filling the disk part-way
        assert_full_disk_fails_cleanly(lambda where, **kw: snap(server, db, where, compression='none', **kw), root)
    r = snap(server, db, str(tmp_path / 'roomy'))
    assert not r.failed and r['tables']['bulk']['rows'] == 24, r


def test_a_dump_waiting_for_a_table_lock_is_stopped_at_the_timeout(mariadb_server, shop, snapshot_root):
    # LOCK TABLES ... WRITE in another session: mariadb-dump (and the statistics beside it) wait for it and
    # write nothing. timeout must still end the task, leave nothing behind and not touch the lock holder.
    server, db = mariadb_server, shop
    holder = server.connect(db)
    job = InThread(lambda: snap(server, db, snapshot_root, timeout=3))
    try:
        with holder.cursor() as cur:
            cur.execute('LOCK TABLES customer WRITE')
        job.start()
        took = job.wait(60, 'the dump ignores its timeout')
        with holder.cursor() as cur:
            cur.execute('SELECT COUNT(*) FROM customer')  # still locked by, and readable for, the holder
            assert cur.fetchone()[0] > 0
    finally:
        holder.close()  # the lock goes: a dump that ignored the timeout now ends
        job.join(120)
    r = job.result
    assert r.failed and 'timed out after 3s and stopped (still running: mariadb-dump' in r['msg'], r['msg']
    assert took < 3 + 20, took
    assert root_entries(snapshot_root) == [], 'no manifest, no .partial'
    r = snap(server, db, snapshot_root, timeout=60)
    assert not r.failed, r


def test_a_restore_blocked_by_a_global_read_lock_is_stopped_at_the_timeout(mariadb_server, mysql_db, snapshot_root):
    # A backup tool takes FLUSH TABLES WITH READ LOCK while the rows load: every client waits for it. With
    # the parallel loading (the default), the module itself waits on those clients, so only the deadline's
    # kill ends the task; it must fail within the timeout, naming it, and a later restore must complete.
    server, db = mariadb_server, mysql_db
    fill_blobs(server, db, 48)  # one INSERT statement per row: loaded by the parallel clients
    r = snap(server, db, snapshot_root)
    assert not r.failed, r
    job = InThread(lambda: restore(server, db, snapshot_root, timeout=10))
    job.start()
    locker = server.connect(None)
    try:
        assert _find_restore_worker(db, time.monotonic() + 60), 'no parallel client seen'
        with locker.cursor() as cur:
            cur.execute('FLUSH TABLES WITH READ LOCK')
        took = job.wait(60, 'the restore ignores its timeout')
    finally:
        with locker.cursor() as cur:
            cur.execute('UNLOCK TABLES')
        locker.close()
        job.join(120)
    res = job.result
    assert res.failed and 'timed out after 10s and stopped (still running: ' in res['msg'], res['msg']
    assert 'PARTLY restored' in res['msg'] and 'mariadb' in res['msg'].split('still running: ')[1], res['msg']
    assert took < 10 + 20, took
    again = restore(server, db, snapshot_root, timeout=120)
    assert not again.failed and again['tables_match'] is True, again.get('msg', again)


def test_one_timeout_bounds_the_whole_restore_not_each_step(mariadb_server, mysql_db, snapshot_root):
    # A backup lock held for 5 s delays the DROP (within the timeout), then is taken again while the rows load.
    # Each wait alone fits in timeout=9; the restore must still end near 9 s, not 5 s + a fresh 9 s.
    server, db = mariadb_server, mysql_db
    fill_blobs(server, db, 48)
    r = snap(server, db, snapshot_root)
    assert not r.failed, r
    job = InThread(lambda: restore(server, db, snapshot_root, timeout=9))
    locker = server.connect(None)
    try:
        with locker.cursor() as cur:
            cur.execute('FLUSH TABLES WITH READ LOCK')
        job.start()
        time.sleep(5)
        with locker.cursor() as cur:
            cur.execute('UNLOCK TABLES')
        assert _find_restore_worker(db, time.monotonic() + 60), 'no parallel client seen'
        with locker.cursor() as cur:
            cur.execute('FLUSH TABLES WITH READ LOCK')
        took = job.wait(60, 'the restore ignores its timeout')
    finally:
        with locker.cursor() as cur:
            cur.execute('UNLOCK TABLES')
        locker.close()
        job.join(120)
    res = job.result
    assert res.failed and 'timed out after 9s and stopped (still running: ' in res['msg'], res['msg']
    assert took < 12.5, 'the steps got a timeout each: %.1f s' % took
    again = restore(server, db, snapshot_root, timeout=120)
    assert not again.failed and again['tables_match'] is True, again.get('msg', again)


def _engine(server, db):
    sys.path.insert(0, COLLECTIONS_PATH)
    from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_mysql import MySQLEngine
    return MySQLEngine(dict(server.conn_args(db), connect_timeout=10), secrets=None)


def test_checksum_is_the_documented_digest(mariadb_server, mysql_db):
    """count + sum mod 2**64 of the first 8 bytes of sha256 of each row's text, recomputed in Python."""
    server = mariadb_server
    rows = [(1, 'a', b'\x00\x01', 1.5), (2, None, b'', None), (3, '', None, -0.25), (4, '\u00e9\U0001F600', b'x', 2.0)]
    for table, order in (('c1', rows), ('c2', rows[::-1])):
        server.sql('CREATE TABLE %s (id INT PRIMARY KEY, s VARCHAR(20) NULL, b BLOB NULL, d DOUBLE NULL)' % table,
                   database=mysql_db)
        con = server.connect(mysql_db)
        with con.cursor() as cur:
            cur.executemany('INSERT INTO %s VALUES (%%s, %%s, %%s, %%s)' % table, order)
        con.close()
    server.sql("CREATE TABLE c3 (id INT PRIMARY KEY, s VARCHAR(20) NULL, b BLOB NULL, d DOUBLE NULL)",
               database=mysql_db)
    server.sql("INSERT INTO c3 VALUES (1, 'a', 0x0001, 1.5), (2, '', '', NULL), (3, '', NULL, -0.25), "
               "(4, '\u00e9\U0001F600', 'x', 2.0)", database=mysql_db)  # row 2: NULL became ''

    def text(v):
        if v is None:
            return 'n'
        if isinstance(v, (bytes, str)):
            return 'v' + hashlib.sha256(v if isinstance(v, bytes) else v.encode('utf-8')).hexdigest()
        return 'v' + ('%g' % v if isinstance(v, float) else str(v))
    total = sum(int(hashlib.sha256(','.join(text(v) for v in row).encode()).hexdigest()[:16], 16) for row in rows)
    expected = {'rows': 4, 'checksum': '%016x' % (total % 2 ** 64)}

    got = _engine(server, mysql_db).table_stats('checksums')
    assert got['c1'] == expected
    assert got['c2'] == expected, 'row order does not matter'
    assert got['c3']['rows'] == 4 and got['c3']['checksum'] != expected['checksum'], 'NULL is not the empty string'
    assert _engine(server, mysql_db).table_stats('counts')['c1'] == {'rows': 4, 'checksum': None}


@pytest.fixture(scope='module')
def tls_server():
    """A MariaDB server that refuses every TCP connection without TLS."""
    with server_requiring_tls(lambda extra_args: MariaDBServer(extra_args=extra_args)) as server:
        yield server


def test_tls_modes_reach_pymysql_and_the_tools(tls_server, snapshot_root):
    server = tls_server
    db = unique_name('tls')
    server.root_sql('CREATE DATABASE `%s`' % db)
    server.root_sql('CREATE TABLE `%s`.t (id INT PRIMARY KEY)' % db)
    # MariaDB answers a plain-text login under require_secure_transport with 'Access denied'; the
    # same password works below, so this is the transport.
    r = snap(server, db, snapshot_root, ssl_mode='disable')
    assert r.failed and 'Access denied' in r['msg'], r['msg']
    # require: TLS without verification, for PyMySQL and for both tools (the server takes nothing else).
    r = snap(server, db, snapshot_root, ssl_mode='require')
    assert not r.failed, r
    res = restore(server, db, snapshot_root, ssl_mode='require')
    assert not res.failed, res
    r = snap(server, db, snapshot_root, ssl_mode='verify-full', ssl_ca=server.files['ca'])
    assert not r.failed, r
    r = snap(server, db, snapshot_root, ssl_mode='verify-full', ssl_ca=server.files['other-ca'])
    assert r.failed and 'certificate verify failed' in r['msg'], r['msg']
    assert len(root_entries(snapshot_root)) == 2


def test_tls_option_lines_drive_the_real_client(tls_server, tmp_path):
    """The option file the engine writes makes the mariadb client verify the server (PyMySQL,
    which fails first in the module, is not involved here)."""
    sys.path.insert(0, COLLECTIONS_PATH)
    server = tls_server
    outcomes = tls_outcomes(server, 'mariadb', 'mariadb', {
        'verify-good-ca': {'ssl_mode': 'verify-full', 'ssl_ca': server.files['ca']},
        'verify-other-ca': {'ssl_mode': 'verify-full', 'ssl_ca': server.files['other-ca']},
        'disable': {'ssl_mode': 'disable'}}, tmp_path)
    assert outcomes['verify-good-ca'][0] == 0 and 'TLS' in outcomes['verify-good-ca'][1], outcomes
    assert outcomes['verify-other-ca'][0] != 0, outcomes
    assert outcomes['disable'][0] != 0, outcomes


def test_missing_pymysql_is_named(mariadb_server, mysql_db, snapshot_root, tmp_path):
    shadow = tmp_path / 'shadow' / 'pymysql'
    shadow.mkdir(parents=True)
    (shadow / '__init__.py').write_text('raise ImportError("No module named \'pymysql\'")\n')
    args = dict(mariadb_server.conn_args(mysql_db), snapshot_root=snapshot_root)
    r = run_module('db_snapshot', args, env={'PYTHONPATH': os.pathsep.join([COLLECTIONS_PATH, str(shadow.parent)])})
    assert r.failed and 'PyMySQL' in r['msg'] and 'python3-pymysql' in r['msg'], r['msg']
    assert root_entries(snapshot_root) == []


def test_exclude_table_data_keeps_the_table_and_leaves_out_its_rows(mariadb_server, shop, snapshot_root):
    server = mariadb_server
    before_schema, before_rows = schema(server, shop), content_digest(server, shop)
    r = snap(server, shop, snapshot_root, table_stats='checksums', exclude_table_data=['%s.audit_log' % shop])
    assert not r.failed, r.get('msg')
    assert r['excluded_table_data'] == ['audit_log']
    assert r['tables']['audit_log'] == {'rows': 0, 'checksum': '0' * 16, 'data_excluded': True}
    assert r['tables']['customer']['rows'] == 295
    assert any('--ignore-table-data=%s.audit_log' % shop in c for c in r['commands']), r['commands']
    with open(os.path.join(snapshot_root, r['snapshot_id'], 'manifest.json'), encoding='utf-8') as f:
        assert json.load(f)['parts']['database']['excluded_table_data'] == ['audit_log']

    mutate(server, shop)
    r2 = restore(server, shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert not r2.failed, r2.get('msg')
    assert r2['tables_compared'] == 'checksums' and r2['tables_match'] is True
    assert schema(server, shop) == before_schema, 'the table and its AUTO_INCREMENT are kept'
    after = content_digest(server, shop)
    assert after.pop('audit_log') == hashlib.sha256(b'').hexdigest(), 'no rows'
    assert before_rows.pop('audit_log') != hashlib.sha256(b'').hexdigest()
    assert after == before_rows


def test_exclude_table_data_refuses_what_a_restore_could_not_load(mariadb_server, shop, snapshot_root):
    assert_exclusions_refused(dict(mariadb_server.conn_args(shop), snapshot_root=snapshot_root), [
        (['nosuch'], False, 'exclude_table_data: there is no table nosuch in database %s' % shop),
        (['customer'], False, 'the rows of customer are referenced by foreign key `order_customer` of order, '
                              'whose rows are kept'),
        (['product'], True, 'the rows of product are referenced by foreign key `oi_product_fk` of order_item, '
                            'whose rows are kept'),
    ])
