# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_snapshot / db_restore against real throwaway PostgreSQL servers."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _pg_archive as pg_archive
from conftest import unique_name
from support.background import InThread
from support.disk import assert_full_disk_fails_cleanly, small_tmpfs
from support.modules import assert_exclusions_refused, run_module
from support.pg_data import content_digest, databases, make_shop, mutate, schema_dump, sequences
from support.watch import assert_secret_absent, process_argvs, run_module_traced
from support.wrappers import bin_dir_with


# what db_restore records when it loaded N tables frozen
FROZEN = 'tables loaded frozen (TRUNCATE ONLY, then COPY ... WITH (FREEZE)): %d'


def snap(server, database, root, **kw):
    args = dict(server.conn_args(database), snapshot_root=root)
    args.update(kw)
    return run_module('db_snapshot', args)


def restore(server, database, root, **kw):
    args = dict(server.conn_args(database), snapshot_root=root)
    args.update(kw)
    return run_module('db_restore', args)


def scratch_databases(server):
    return [d for d in databases(server) if d.startswith('djangoops_restore_')]


def rows_in(server, database):
    """``rows(statement)``: the rows a query returns in ``database`` of ``server`` (for the *_facts helpers)."""
    return lambda statement: server.sql(statement, database=database)


def dump_file(root, result):
    return os.path.join(root, result['snapshot_id'], result['files'][0]['path'])


@pytest.fixture
def shop(pg_server, pg_db):
    make_shop(pg_server, pg_db)
    return pg_db


@pytest.fixture
def extra_db(pg_server):
    """A database name for the test to create (by restoring into it); dropped afterwards."""
    name = unique_name('pgx')
    yield name
    pg_server.drop_database(name)


# A tiny extension only a superuser may create, whose table and sequence are configuration data
# (pg_extension_config_dump, like PostGIS's spatial_ref_sys): pg_dump writes the table's rows (those its condition
# selects) and the sequence's value, but no CREATE for them, which is CREATE EXTENSION's. Its control file and
# script:
CONFIG_EXTENSION = (
    "comment = 'djangoops test: configuration data'\ndefault_version = '1.0'\nsuperuser = true\ntrusted = false\n"
    "relocatable = false\n",
    "CREATE TABLE @extschema@.setting (id int PRIMARY KEY, value text);\n"
    "INSERT INTO @extschema@.setting VALUES (1, 'shipped'), (2, 'shipped');\n"
    "SELECT pg_catalog.pg_extension_config_dump('@extschema@.setting', 'WHERE id > 100');\n"
    "CREATE SEQUENCE @extschema@.counter;\n"
    "SELECT pg_catalog.pg_extension_config_dump('@extschema@.counter', '');\n")


@pytest.fixture
def config_extension(pg_server):
    """The name of CONFIG_EXTENSION, installed into the server's extension directory for the test (the tests
    run as root) and removed afterwards."""
    name = unique_name('djangoops_cfg')
    sharedir = pg_server.sql("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")[0][0]
    paths = [os.path.join(sharedir, 'extension', name + suffix) for suffix in ('.control', '--1.0.sql')]
    try:
        for path, text in zip(paths, CONFIG_EXTENSION):
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)
        yield name
    finally:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)


@pytest.mark.parametrize('dump_opts, restore_opts', [
    pytest.param(dict(format='custom', compression='zstd'), dict(), id='custom-zstd-recreate'),
    pytest.param(dict(format='directory', compression='gzip', jobs=2), dict(jobs=2), id='directory-gzip-jobs2'),
    pytest.param(dict(format='plain', compression='none'), dict(), id='plain-none-recreate'),
    pytest.param(dict(format='custom', compression='none'), dict(pg_clean='schemas'), id='custom-none-schemas'),
    pytest.param(dict(format='custom', compression='zstd'), dict(pg_clean='schemas'), id='custom-zstd-schemas'),
    pytest.param(dict(format='plain', compression='gzip'), dict(pg_clean='schemas'), id='plain-gzip-schemas'),
])
def test_round_trip_is_exact(pg_server, shop, snapshot_root, dump_opts, restore_opts):
    before_schema, before_rows, before_seqs = (schema_dump(pg_server, shop), content_digest(pg_server, shop),
                                               sequences(pg_server, shop))
    r = snap(pg_server, shop, snapshot_root, table_stats='checksums', **dump_opts)
    assert not r.failed, r
    assert r['changed'] is True and r['finalized'] is True
    assert r['format'] == dump_opts['format'] and r['compression'] == dump_opts['compression']
    assert set(r['tables']) == set(before_rows)
    for table, (rows, _digest) in before_rows.items():
        assert r['tables'][table]['rows'] == rows, table
        assert len(r['tables'][table]['checksum']) == 16
    assert r['tables']['public.customer']['checksum'] != r['tables']['public.order']['checksum']
    for dirpath, dirs, files in os.walk(snapshot_root):
        assert os.stat(dirpath).st_mode & 0o777 == 0o700, dirpath
        for f in files:
            assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600, f
        del dirs
    with open(os.path.join(snapshot_root, r['snapshot_id'], 'manifest.json'), encoding='utf-8') as f:
        part = json.load(f)['parts']['database']
    assert part['encoding'] == 'UTF8' and part['lc_collate'] == 'C.UTF-8' and part['owner'] == 'postgres'
    assert part['pg_dump_version'] == r['client_version'] and part['server_version'] == r['server_version']
    assert part['stats_snapshot'].startswith('same as the dump')
    # zstd at the default level, on the SQL text of a stream (custom, plain): level 3 with the text parameters,
    # recorded; pg_dump compresses a directory dump itself.
    tuned = dump_opts['compression'] == 'zstd' and dump_opts['format'] != 'directory'
    assert part.get('compression_params') == ('mml=6,hlog=18,clog=17' if tuned else None), part
    assert ('--zstd=mml=6,hlog=18,clog=17' in ' '.join(r['commands'])) is tuned, r['commands']

    mutate(pg_server, shop)
    assert schema_dump(pg_server, shop) != before_schema

    r2 = restore(pg_server, shop, snapshot_root, snapshot_id=r['snapshot_id'], **restore_opts)
    assert not r2.failed, r2.get("msg")
    assert r2['changed'] is True
    assert r2['tables_compared'] == 'checksums' and r2['tables_match'] is True
    assert schema_dump(pg_server, shop) == before_schema
    assert content_digest(pg_server, shop) == before_rows
    assert sequences(pg_server, shop) == before_seqs
    # the sequence continues where it was, not where the bad deploy left it
    last = before_seqs[('billing', 'invoice_number')][0]
    with pg_server.connect(shop) as con:
        assert con.execute("INSERT INTO billing.invoice(order_id, amount) VALUES (1, 1) RETURNING number"
                           ).fetchone()[0] == last + 1
    assert scratch_databases(pg_server) == []
    assert sorted(os.listdir(snapshot_root)) == [r['snapshot_id']], 'no decompression leftovers'
    # a compressed custom dump is loaded frozen, the new database's or the emptied one's (one transaction)
    frozen = dump_opts['format'] == 'custom' and dump_opts['compression'] != 'none'
    assert (FROZEN % 6 in r2['commands']) is frozen
    if frozen:
        assert not_all_visible(pg_server, shop) == []


def not_all_visible(server, database):
    """The tables with pages the visibility map does not mark all-visible (relallvisible: ANALYZE,
    which db_restore runs, counts them)."""
    with server.connect(database) as con:
        pages = con.execute("SELECT n.nspname || '.' || c.relname, c.relpages, c.relallvisible FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                            "AND n.nspname IN ('public', 'billing', 'audit') ORDER BY 1").fetchall()
    assert len(pages) == 6 and all(n > 0 for dummy, n, dummy2 in pages), pages
    return [(t, n, visible) for t, n, visible in pages if visible != n]


def test_restore_into_another_database(pg_server, shop, snapshot_root, extra_db):
    r = snap(pg_server, shop, snapshot_root, table_stats='checksums', jobs=2)
    assert not r.failed, r
    res = restore(pg_server, extra_db, snapshot_root)
    assert res.failed and 'does not exist' in res['msg'] and 'create: true' in res['msg']
    assert extra_db not in databases(pg_server)
    res = restore(pg_server, extra_db, snapshot_root, create=True, jobs=2)
    assert not res.failed, res
    assert res['database'] == extra_db and res['tables_match'] is True
    # a compressed custom dump: decompressed to a private file for two workers, pre-data meanwhile
    restores = [c for c in res['commands'] if 'pg_restore' in c]
    assert any('--section=pre-data' in c for c in restores)
    assert any('--jobs=2 --section=data --section=post-data' in c for c in restores), restores
    # with the offsets pg_dump could not write into the pipe (six tables with data)
    assert 'data offsets for the parallel workers: written for 6 tables' in res['commands'], res['commands']
    assert content_digest(pg_server, extra_db) == content_digest(pg_server, shop)
    assert schema_dump(pg_server, extra_db) == schema_dump(pg_server, shop)
    # planner statistics for every table, read on two connections together with the checksums
    assert any(c.startswith('SQL: ANALYZE (in djangoops_restore_') and 'on 2 connections, with the table checksums'
               in c for c in res['commands']), res['commands']
    with pg_server.connect(extra_db) as con:
        never = con.execute("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NULL").fetchall()
    assert never == []
    # and again into the now existing copy, replacing what changed there
    mutate(pg_server, extra_db)
    res = restore(pg_server, extra_db, snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed, res
    assert content_digest(pg_server, extra_db) == content_digest(pg_server, shop)


def _pg_dump_twice(server, database, tmp_path):
    """The same database dumped by pg_dump into a file (it seeks back and writes the data offsets) and into
    a pipe (it cannot)."""
    env = dict(os.environ, PGPASSFILE=_passfile(server, str(tmp_path / 'pw')))
    argv = [os.path.join(server.bindir, 'pg_dump'), '-Fc', '-Z0', '-h', server.host, '-p', str(server.port),
            '-U', server.superuser, database]
    into_file, into_pipe = str(tmp_path / 'file.dump'), str(tmp_path / 'pipe.dump')
    subprocess.run(argv + ['-f', into_file], env=env, check=True)
    with open(into_pipe, 'wb') as out:
        p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
        shutil.copyfileobj(p.stdout, out)
        assert p.wait() == 0
    return into_file, into_pipe, env


def test_a_piped_dump_gets_the_data_offsets_pg_dump_writes_into_a_file(pg_server, shop, tmp_path, extra_db):
    into_file, into_pipe, env = _pg_dump_twice(pg_server, shop, tmp_path)
    with open(into_file, 'rb') as f:
        by_pg_dump = pg_archive.read_toc(f)
    with open(into_pipe, 'rb') as f:
        before = pg_archive.read_toc(f)
    tables = [e.dump_id for e in by_pg_dump.data_entries]
    assert len(tables) == 6 and all(e.offset_flag == pg_archive.OFFSET_SET for e in by_pg_dump.data_entries)
    assert [e.offset_flag for e in before.data_entries] == [pg_archive.OFFSET_NOT_SET] * 6
    assert pg_archive.add_data_offsets(into_pipe) == (6, None)
    with open(into_pipe, 'rb') as f:
        after = pg_archive.read_toc(f)
    assert [(e.dump_id, e.offset_flag, e.offset) for e in after.entries] == \
        [(e.dump_id, e.offset_flag, e.offset) for e in by_pg_dump.entries]
    # the two files now differ only in the header's creation time
    a, b = open(into_file, 'rb').read(), open(into_pipe, 'rb').read()
    assert len(a) == len(b) and all(a[n] == b[n] for n in range(64, len(a)))
    # and pg_restore uses them
    pg_server.create_database(extra_db)
    subprocess.run([os.path.join(pg_server.bindir, 'pg_restore'), '--jobs=2', '--exit-on-error', '--no-owner',
                    '-h', pg_server.host, '-p', str(pg_server.port), '-U', pg_server.superuser, '-d', extra_db,
                    into_pipe], env=env, check=True)
    assert content_digest(pg_server, extra_db) == content_digest(pg_server, shop)


def restored_frozen(pg_server, shop, snapshot_root, extra_db, jobs, tables):
    """Snapshot ``shop``, restore it into the new database ``extra_db`` with ``jobs`` workers, and check that
    ``tables`` tables were loaded frozen and hold exactly the snapshot's rows."""
    r = snap(pg_server, shop, snapshot_root)
    assert not r.failed, r
    res = restore(pg_server, extra_db, snapshot_root, create=True, jobs=jobs)
    assert not res.failed, res
    assert FROZEN % tables in res['commands'], res['commands']
    assert res['tables_match'] is True
    assert content_digest(pg_server, extra_db) == content_digest(pg_server, shop)


@pytest.mark.parametrize('jobs', [1, 2])
def test_a_restore_into_a_new_database_loads_every_table_frozen(pg_server, shop, snapshot_root, extra_db, jobs):
    """The rows are written frozen and all-visible by the load itself (COPY FREEZE after TRUNCATE), so
    no later pass (index builds, foreign key checks, ANALYZE, the first queries) rewrites every page:
    two workers from the decompressed file, and one from the stream."""
    restored_frozen(pg_server, shop, snapshot_root, extra_db, jobs, 6)
    assert schema_dump(pg_server, extra_db) == schema_dump(pg_server, shop)
    assert not_all_visible(pg_server, extra_db) == []


@pytest.mark.parametrize('jobs', [1, 2])
def test_partitions_and_inherited_tables_keep_every_row_when_loaded_frozen(
        pg_server, shop, snapshot_root, extra_db, jobs):
    """TRUNCATE ONLY touches the one table being loaded: a partition's or a child's rows, loaded before or
    after its parent's, all survive."""
    with pg_server.connect(shop) as con:
        for statement in (
                'CREATE TABLE public.reading (at date NOT NULL, v int) PARTITION BY RANGE (at)',
                "CREATE TABLE public.reading_2025 PARTITION OF public.reading FOR VALUES FROM ('2025-01-01') "
                "TO ('2026-01-01')",
                "CREATE TABLE public.reading_2026 PARTITION OF public.reading FOR VALUES FROM ('2026-01-01') "
                "TO ('2027-01-01')",
                "INSERT INTO public.reading SELECT d, 1 FROM generate_series('2025-06-01'::date, '2026-06-01', "
                "'1 day') d",
                'CREATE TABLE public.note (id int, body text)',
                'CREATE TABLE public.urgent_note (level int) INHERITS (public.note)',
                "INSERT INTO public.note SELECT g, 'n' FROM generate_series(1, 300) g",
                "INSERT INTO public.urgent_note SELECT g, 'u', 1 FROM generate_series(1, 200) g"):
            con.execute(statement)
    restored_frozen(pg_server, shop, snapshot_root, extra_db, jobs, 10)
    with pg_server.connect(extra_db) as con:
        counts = [con.execute('SELECT count(*) FROM ' + t).fetchone()[0]
                  for t in ('public.reading', 'ONLY public.note', 'public.note', 'public.urgent_note')]
    assert counts == [366, 300, 500, 200]


def test_a_dump_with_large_objects_restores_without_offsets(pg_server, shop, tmp_path, snapshot_root):
    # binary data holding the very bytes the block search looks for
    with pg_server.connect(shop) as con:
        oid = con.execute("SELECT lo_from_bytea(0, '\\x0000000000010000000d30'::bytea || "
                          "decode(repeat('00', 5000), 'hex'))").fetchone()[0]
    into_pipe = _pg_dump_twice(pg_server, shop, tmp_path)[1]
    unchanged = open(into_pipe, 'rb').read()
    assert pg_archive.add_data_offsets(into_pipe) == (0, 'the archive holds BLOBS')
    assert open(into_pipe, 'rb').read() == unchanged
    r = snap(pg_server, shop, snapshot_root)
    assert not r.failed, r
    before = content_digest(pg_server, shop)
    with pg_server.connect(shop) as con:
        con.execute('SELECT lo_unlink(%s)' % oid)
    mutate(pg_server, shop)
    res = restore(pg_server, shop, snapshot_root, jobs=2)
    assert not res.failed, res
    assert 'data offsets for the parallel workers: not written (the archive holds BLOBS)' in res['commands']
    assert content_digest(pg_server, shop) == before
    with pg_server.connect(shop) as con:
        assert bytes(con.execute('SELECT lo_get(%s)' % oid).fetchone()[0])[:11] == bytes.fromhex('0000000000010000000d30')


@pytest.mark.parametrize('jobs', [1, 2])
def test_a_restore_that_does_not_match_the_manifest_is_reported(pg_server, shop, snapshot_root, extra_db, jobs):
    """The statistics compared are read from the restored rows: a manifest that recorded other counts
    (here edited by hand) is a mismatch, failed by default and reported with fail_on_mismatch: false."""
    r = snap(pg_server, shop, snapshot_root)
    assert not r.failed, r
    path = os.path.join(snapshot_root, r['snapshot_id'], 'manifest.json')
    with open(path, encoding='utf-8') as f:
        manifest = json.load(f)
    recorded = manifest['parts']['database']['tables']
    real = recorded['public.customer']['rows']
    recorded['public.customer']['rows'] = real + 1
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(manifest, f)
    # checksums from a snapshot that recorded counts: refused before anything is created, check mode too
    for check in (True, False):
        args = dict(pg_server.conn_args(extra_db), snapshot_root=snapshot_root, create=True, verify_tables='checksums')
        res = run_module('db_restore', args, check=check)
        assert res.failed and 'recorded only row counts' in res['msg'], res
        assert extra_db not in databases(pg_server) and scratch_databases(pg_server) == []
    res = restore(pg_server, extra_db, snapshot_root, create=True, jobs=jobs)
    assert res.failed
    assert 'differs from snapshot %s in 1 table(s): public.customer' % r['snapshot_id'] in res['msg'], res['msg']
    res = restore(pg_server, extra_db, snapshot_root, create=True, jobs=jobs, fail_on_mismatch=False)
    assert not res.failed, res
    assert res['tables_compared'] == 'counts' and res['tables_match'] is False
    assert [m['table'] for m in res['table_mismatches']] == ['public.customer']
    assert res['tables']['public.customer']['rows'] == real
    assert res['tables'] == dict((t, dict(v, rows=real if t == 'public.customer' else v['rows']))
                                 for t, v in recorded.items())


WRITER = r'''
import sys, psycopg
con = psycopg.connect(sys.argv[1], autocommit=True)
print('ready', flush=True)
i = 0
while True:
    # one transaction moves an amount from a to b: a consistent view always has sum(a) + sum(b) == 0
    with con.transaction():
        con.execute('INSERT INTO ledger_a(amount) VALUES (%s)', (-i,))
        con.execute('INSERT INTO ledger_b(amount) VALUES (%s)', (i,))
    i += 1
'''


def test_statistics_describe_exactly_the_dumped_rows_under_concurrent_writes(
        pg_server, pg_db, snapshot_root, extra_db):
    with pg_server.connect(pg_db) as con:
        con.execute('CREATE TABLE ledger_a (id bigserial PRIMARY KEY, amount bigint, pad text)')
        con.execute('CREATE TABLE ledger_b (id bigserial PRIMARY KEY, amount bigint)')
        con.execute("INSERT INTO ledger_a(amount, pad) SELECT 0, repeat('x', 500) FROM generate_series(1, 60000)")
    dsn = 'host=%s port=%s user=%s dbname=%s passfile=%s' % (
        pg_server.host, pg_server.port, pg_server.superuser, pg_db, _passfile(pg_server, snapshot_root))
    writer = subprocess.Popen([sys.executable, '-c', WRITER, dsn], stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == b'ready'
        time.sleep(0.3)
        r = snap(pg_server, pg_db, snapshot_root + '/snaps', table_stats='checksums')
        assert not r.failed, r
        assert writer.poll() is None, 'the application kept writing'
    finally:
        writer.kill()
        writer.wait()
    res = restore(pg_server, extra_db, snapshot_root + '/snaps', create=True)
    assert not res.failed, res
    assert res['tables_match'] is True, res.get('table_mismatches')
    with pg_server.connect(extra_db) as con:
        a = con.execute('SELECT count(*), coalesce(sum(amount), 0) FROM ledger_a WHERE pad IS NULL').fetchone()
        b = con.execute('SELECT count(*), coalesce(sum(amount), 0) FROM ledger_b').fetchone()
    assert a[0] == b[0] > 0 and a[1] + b[1] == 0, (a, b)
    assert r['tables']['public.ledger_b']['rows'] == b[0]


def _passfile(server, base):
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, 'pgpass')
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), 'w', encoding='utf-8') as f:
        f.write('*:*:*:*:%s\n' % server.password.replace('\\', '\\\\').replace(':', '\\:'))
    return path


# -- faults -------------------------------------------------------------------------------------

def test_wrong_password_names_the_user_never_the_password(pg_server, pg_db, snapshot_root):
    wrong = 'Wr0ng-but-l0ng-p4ssw0rd'
    r = snap(pg_server, pg_db, snapshot_root, login_password=wrong)
    assert r.failed
    assert 'password authentication failed for user "postgres"' in r['msg']
    assert '127.0.0.1:%d' % pg_server.port in r['msg']
    assert_secret_absent(wrong, r, r.stdout, r.stderr)
    assert not os.path.exists(snapshot_root)


def test_unknown_database_is_a_clear_error(pg_server, snapshot_root):
    r = snap(pg_server, 'no_such_db_x1', snapshot_root)
    assert r.failed and r['msg'] == 'database no_such_db_x1 does not exist on the postgresql server'
    assert not os.path.exists(snapshot_root)


def test_server_down_is_a_clear_error(private_pg_server, snapshot_root):
    private_pg_server.stop()
    r = snap(private_pg_server, 'postgres', snapshot_root)
    assert r.failed
    assert 'cannot connect to PostgreSQL at 127.0.0.1:%d' % private_pg_server.port in r['msg']
    assert 'Connection refused' in r['msg']
    assert not os.path.exists(snapshot_root)


def _pids_of(tool, marker):
    return [pid for pid, argv in process_argvs() if argv and argv[0].endswith(tool.encode())
            and any(marker.encode() == a for a in argv)]


def test_a_tool_that_says_error_but_exits_0_fails_the_task(pg_server, shop, snapshot_root, tmp_path):
    # The real tools do all their work and exit 0; only a line on stderr says they failed.
    real = pg_server.client_bindir
    lying = bin_dir_with(str(tmp_path / 'dump'), real, {'pg_dump': (
        'error-exit-0', 'pg_dump: error: query failed: ERROR:  canceling statement due to conflict with recovery')})
    for fmt in ('custom', 'directory'):
        r = snap(pg_server, shop, snapshot_root, client_bin_dir=lying, format=fmt)
        assert r.failed and 'canceling statement due to conflict with recovery' in r['msg'], (fmt, r['msg'])
        assert not os.path.exists(snapshot_root) or os.listdir(snapshot_root) == [], fmt
    good = snap(pg_server, shop, snapshot_root)
    assert not good.failed, good
    before = schema_dump(pg_server, shop), content_digest(pg_server, shop)
    lying = bin_dir_with(str(tmp_path / 'restore'), real, {'pg_restore': (
        'error-exit-0', 'pg_restore: error: could not execute query: ERROR:  out of shared memory')})
    res = restore(pg_server, shop, snapshot_root, client_bin_dir=lying)
    assert res.failed and 'out of shared memory' in res['msg'], res['msg']
    assert (schema_dump(pg_server, shop), content_digest(pg_server, shop)) == before, 'the target is untouched'
    assert scratch_databases(pg_server) == []


def test_killed_pg_dump_leaves_nothing_and_the_next_snapshot_works(pg_server, pg_db, snapshot_root):
    with pg_server.connect(pg_db) as con:
        con.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 7) AS pad "
                    "FROM generate_series(1, 250000) g")
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in _pids_of('pg_dump', '--dbname=' + pg_db):
                partial = [os.path.join(dp, f) for dp, _d, fs in os.walk(snapshot_root) for f in fs
                           if f.startswith('database.dump')]
                if partial and os.path.getsize(partial[0]) > 256 * 1024:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)

    t = threading.Thread(target=killer)
    t.start()
    r = snap(pg_server, pg_db, snapshot_root, compression='gzip', compression_level=9)
    t.join()
    assert killed, 'pg_dump finished before it could be killed; make the table bigger'
    assert r.failed and 'pg_dump was killed by signal 9' in r['msg'], r['msg']
    assert os.listdir(snapshot_root) == [], 'no manifest, no .partial'
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root))
    assert info['snapshots'] == [] and info['incomplete'] == []
    r = snap(pg_server, pg_db, snapshot_root, compression='zstd')
    assert not r.failed, r
    assert r['tables']['public.big']['rows'] == 250000


def test_a_dump_waiting_for_a_table_lock_is_stopped_at_the_timeout(pg_server, shop, snapshot_root):
    # A migration holding ACCESS EXCLUSIVE on a table: pg_dump (and the statistics beside it) wait for it and
    # write nothing. timeout must still end the task, leave nothing behind, and not touch the lock holder.
    holder = pg_server.connect(shop, autocommit=False)
    job = InThread(lambda: snap(pg_server, shop, snapshot_root, timeout=3))
    try:
        holder.execute('LOCK TABLE public."order" IN ACCESS EXCLUSIVE MODE')
        job.start()
        took = job.wait(60, 'the dump ignores its timeout')
        assert not _pids_of('pg_dump', '--dbname=' + shop), 'pg_dump was left running'
        assert holder.execute('SELECT count(*) FROM public."order"').fetchone()[0] > 0  # its transaction is intact
    finally:
        holder.rollback()  # the lock goes: a dump that ignored the timeout now ends
        holder.close()
        job.join(120)
    r = job.result
    assert r.failed and 'timed out after 3s and stopped (still running: pg_dump' in r['msg'], r['msg']
    assert took < 3 + 20, took
    assert os.listdir(snapshot_root) == [], 'no manifest, no .partial'
    r = snap(pg_server, shop, snapshot_root, timeout=60)
    assert not r.failed, r


@pytest.mark.parametrize('damage', ['flip', 'truncate'])
def test_damaged_snapshot_is_refused_and_target_untouched(pg_server, shop, snapshot_root, damage):
    r = snap(pg_server, shop, snapshot_root, compression='none')
    mutate(pg_server, shop)
    mutated = content_digest(pg_server, shop), schema_dump(pg_server, shop)
    path = dump_file(snapshot_root, r)
    if damage == 'flip':
        with open(path, 'r+b') as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xFF]))
    else:
        os.truncate(path, os.path.getsize(path) // 2)
    res = restore(pg_server, shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert res.failed and 'checksum verification' in res['msg'] and 'refusing' in res['msg']
    assert (content_digest(pg_server, shop), schema_dump(pg_server, shop)) == mutated
    assert scratch_databases(pg_server) == []


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_restore_failing_midway_leaves_target_as_it_was(pg_server, shop, snapshot_root, pg_clean):
    """The snapshot grants to a role that no longer exists: pg_restore fails after creating tables."""
    role = unique_name('gone')
    pg_server.sql('CREATE ROLE %s' % role)
    pg_server.sql('GRANT SELECT ON public.customer TO %s' % role, database=shop)
    r = snap(pg_server, shop, snapshot_root)
    assert not r.failed, r
    pg_server.sql('REVOKE ALL ON public.customer FROM %s' % role, database=shop)
    pg_server.sql('DROP ROLE %s' % role)
    mutate(pg_server, shop)
    mutated = content_digest(pg_server, shop), schema_dump(pg_server, shop)
    res = restore(pg_server, shop, snapshot_root, pg_clean=pg_clean)
    assert res.failed and 'role "%s" does not exist' % role in res['msg'], res['msg']
    assert 'database %s was not changed' % shop in res['msg']
    assert res['failed_command'].startswith('/')
    assert (content_digest(pg_server, shop), schema_dump(pg_server, shop)) == mutated
    assert scratch_databases(pg_server) == []
    other = unique_name('pgx')
    res = restore(pg_server, other, snapshot_root, pg_clean=pg_clean, create=True)
    assert res.failed and 'role "%s" does not exist' % role in res['msg'], res['msg']
    assert other not in databases(pg_server), 'a database made for a failed restore does not stay'


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_busy_target_is_refused_unless_terminate_connections(pg_server, shop, snapshot_root, pg_clean):
    r = snap(pg_server, shop, snapshot_root)
    mutate(pg_server, shop)
    mutated = content_digest(pg_server, shop)
    app = pg_server.connect(shop)
    try:
        res = restore(pg_server, shop, snapshot_root, pg_clean=pg_clean)
        assert res.failed and 'in use by 1 other session' in res['msg'] and 'terminate_connections' in res['msg']
        assert content_digest(pg_server, shop) == mutated
        res = restore(pg_server, shop, snapshot_root, snapshot_id=r['snapshot_id'], terminate_connections=True,
                      pg_clean=pg_clean)
        assert not res.failed, res
        with pytest.raises(Exception):
            app.execute('SELECT 1')
    finally:
        app.close()
    assert content_digest(pg_server, shop) != mutated
    assert scratch_databases(pg_server) == []


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_an_autovacuum_worker_in_the_target_is_no_session_that_makes_it_busy(
        private_pg_server, snapshot_root, pg_clean):
    """After a bad deploy's writes autovacuum often works in the target: its worker is listed in
    pg_stat_activity, but it is no session of the application. PostgreSQL stops it itself for the rename or
    drop (and for the locks of the in-place restore); the restore must not refuse the target as busy."""
    server = private_pg_server
    server.sql('ALTER SYSTEM SET autovacuum_naptime = 1')
    server.sql('SELECT pg_reload_conf()')
    db = unique_name('pgav')
    server.create_database(db)
    make_shop(server, db)
    r = snap(server, db, snapshot_root)
    assert not r.failed, r
    with server.connect(db) as con:
        # a table autovacuum picks at once and vacuums slowly: its worker stays for many seconds
        con.execute('CREATE TABLE public.churn (id int, pad text) WITH (autovacuum_vacuum_threshold = 0, '
                    'autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, '
                    'autovacuum_vacuum_cost_limit = 1)')
        con.execute("INSERT INTO public.churn SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g")
        con.execute('DELETE FROM public.churn')
    deadline = time.monotonic() + 60
    while not server.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                         "AND backend_type = 'autovacuum worker'", params=(db,))[0][0]:
        assert time.monotonic() < deadline, 'no autovacuum worker came to the database'
        time.sleep(0.2)
    res = restore(server, db, snapshot_root, pg_clean=pg_clean)
    assert not res.failed, res['msg']
    assert res['tables_match'] is True
    assert 'churn' not in str(server.sql("SELECT relname FROM pg_class WHERE relname = 'churn'", database=db))


class _Watch(threading.Thread):
    """Runs ``step(con)`` on its own connection to the maintenance database until stopped."""

    def __init__(self, server, step):
        super().__init__(daemon=True)
        self.con = server.connect('postgres')
        self.step = step
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.step(self.con)

    def stop(self):
        self.done.set()
        self.join()
        self.con.close()


def _oid_of(con, name):
    row = con.execute('SELECT oid FROM pg_database WHERE datname = %s', (name,)).fetchone()
    return row[0] if row else None


def test_the_restored_copy_takes_the_name_with_no_moment_without_it(pg_server, shop, snapshot_root):
    r = snap(pg_server, shop, snapshot_root)
    mutate(pg_server, shop)
    with pg_server.connect() as con:
        old_oid = _oid_of(con, shop)
    seen = []
    watch = _Watch(pg_server, lambda con: seen.append(_oid_of(con, shop)))
    app = pg_server.connect(shop)  # a session the swap has to end
    watch.start()
    try:
        res = restore(pg_server, shop, snapshot_root, snapshot_id=r['snapshot_id'], terminate_connections=True)
    finally:
        watch.stop()
        app.close()
    assert not res.failed, res
    new_oid = seen[-1]
    assert new_oid not in (None, old_oid)
    assert None not in seen, 'the name %s was missing in %d of %d looks' % (shop, seen.count(None), len(seen))
    assert seen[0] == old_oid and set(seen) == {old_oid, new_oid}, 'the swap was watched'
    swaps = [c for c in res['commands'] if ' RENAME TO ' in c]
    assert len(swaps) == 2 and 'djangoops_replaced_' in swaps[0], swaps
    with pg_server.connect() as con:
        assert con.execute('SELECT datallowconn FROM pg_database WHERE datname = %s', (shop,)).fetchone()[0] is True
    assert [d for d in databases(pg_server) if d.startswith(('djangoops_restore_', 'djangoops_replaced_'))] == []
    assert 'warnings' not in res


def test_a_swap_that_fails_leaves_the_target_as_it_was_and_open(pg_server, shop, snapshot_root):
    r = snap(pg_server, shop, snapshot_root)
    mutate(pg_server, shop)
    mutated = content_digest(pg_server, shop)
    held = []

    def hold_the_copy(con):
        # a session on the scratch database itself: the second rename of the swap cannot happen
        if not held:
            names = [n for n in databases(pg_server) if n.startswith('djangoops_restore_')]
            if names:
                try:
                    held.append(pg_server.connect(names[0]))
                except psycopg.Error:
                    pass
        time.sleep(0.001)

    watch = _Watch(pg_server, hold_the_copy)
    watch.start()
    try:
        res = restore(pg_server, shop, snapshot_root, snapshot_id=r['snapshot_id'], terminate_connections=True)
    finally:
        watch.stop()
        for con in held:
            con.close()
    assert held, 'the scratch database was never seen'
    assert res.failed
    assert 'being accessed by other users' in res['msg'] and 'database %s was not changed' % shop in res['msg']
    assert content_digest(pg_server, shop) == mutated
    with pg_server.connect() as con:
        assert con.execute('SELECT datallowconn FROM pg_database WHERE datname = %s', (shop,)).fetchone()[0] is True
    assert [d for d in databases(pg_server) if d.startswith(('djangoops_restore_', 'djangoops_replaced_'))] == []
    assert sum(' RENAME TO ' in c for c in res.get('commands', [])) >= 2  # tried, rolled back


def test_an_old_copy_that_cannot_be_dropped_is_a_warning_naming_it(pg_server, shop, snapshot_root):
    r = snap(pg_server, shop, snapshot_root)
    before = content_digest(pg_server, shop)
    mutate(pg_server, shop)
    pg_server.sql('ALTER DATABASE %s WITH IS_TEMPLATE true' % shop)  # a template database cannot be dropped
    res = restore(pg_server, shop, snapshot_root, snapshot_id=r['snapshot_id'])
    kept = [d for d in databases(pg_server) if d.startswith('djangoops_replaced_')]
    try:
        assert not res.failed, res
        assert content_digest(pg_server, shop) == before
        assert len(kept) == 1
        assert len(res['warnings']) == 1, res.get('warnings')
        warning = res['warnings'][0]
        if isinstance(warning, dict):  # ansible-core 2.19 returns a summary object
            warning = warning['event']['msg']
        assert 'database %s was restored' % shop in warning and kept[0] in warning
        assert 'cannot drop a template database' in warning, warning
        assert 'drop it with DROP DATABASE "%s"' % kept[0] in warning, warning
    finally:
        for name in kept:
            pg_server.sql('ALTER DATABASE %s WITH IS_TEMPLATE false' % name)
            pg_server.drop_database(name)


def test_preflight_refuses_a_disk_too_small_before_writing(pg_server, shop, tmp_path):
    with small_tmpfs(str(tmp_path / 'small'), size='1m') as small:
        root = os.path.join(small, 'snaps')
        r = snap(pg_server, shop, root)
        assert r.failed and 'not enough free space' in r['msg']
        assert r['preflight']['free_bytes'] <= 2 ** 20 < r['preflight']['required_bytes']
        assert not os.path.exists(root) or os.listdir(root) == []


def test_full_disk_midway_leaves_nothing_and_the_next_snapshot_works(pg_server, pg_db, tmp_path):
    # pg_dump | zstd | the hashing file, on a real file system that fills up part-way (24 MiB of random
    # bytes, about 24 MiB compressed, into 8 MiB)
    with pg_server.connect(pg_db) as con:
        con.execute('CREATE TABLE bulk (id integer PRIMARY KEY, payload bytea)')
        for i in range(24):
            con.execute('INSERT INTO bulk VALUES (%s, %s)', (i, os.urandom(1024 * 1024)))
    with small_tmpfs(str(tmp_path / 'small'), size='8m') as small:
        assert_full_disk_fails_cleanly(lambda where, **kw: snap(pg_server, pg_db, where, compression='zstd', **kw),
                                       os.path.join(small, 'snaps'))
    r = snap(pg_server, pg_db, str(tmp_path / 'roomy'))
    assert not r.failed and r['tables']['public.bulk']['rows'] == 24, r


def test_directory_zstd_needs_a_new_pg_dump(pg_server, shop, snapshot_root):
    r = snap(pg_server, shop, snapshot_root, format='directory', compression='auto')
    assert not r.failed, r
    if int(r['client_version'].split('.')[0]) >= 16:
        pytest.skip('pg_dump here supports zstd in the directory format')
    assert r['compression'] == 'gzip', 'auto falls back to what pg_dump can do'
    version = r['client_version']
    r = snap(pg_server, shop, snapshot_root + '2', format='directory', compression='zstd')
    assert r.failed and 'needs pg_dump 16 or later' in r['msg'] and version in r['msg']
    assert not os.path.exists(snapshot_root + '2')


def test_client_bin_dir_is_used_or_refused(pg_server, pg_db, snapshot_root, tmp_path):
    bindir = pg_server.bindir
    r = snap(pg_server, pg_db, snapshot_root, client_bin_dir=bindir, table_stats='none')
    assert not r.failed, r
    assert r['tables'] == {} and not any('--snapshot=' in c for c in r['commands'])
    assert r['commands'][0].startswith(os.path.join(bindir, 'pg_dump') + ' ')
    # a snapshot without table statistics: the restore compares nothing, and does not claim a match
    res = restore(pg_server, pg_db, snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed, res
    assert res['tables_compared'] == 'none' and res['tables'] == {} and res['tables_match'] is None, res
    empty = str(tmp_path / 'no-tools')
    os.mkdir(empty)
    r = snap(pg_server, pg_db, snapshot_root + '2', client_bin_dir=empty)
    assert r.failed and r['msg'] == 'pg_dump was not found in client_bin_dir %s' % empty
    assert not os.path.exists(snapshot_root + '2')


def test_missing_psycopg_says_what_to_install(pg_server, pg_db, snapshot_root, tmp_path):
    shadow = tmp_path / 'shadow'
    shadow.mkdir()
    (shadow / 'psycopg.py').write_text("raise ImportError('No module named psycopg')\n")
    from support.modules import COLLECTIONS_PATH  # pylint: disable=import-outside-toplevel
    r = run_module('db_snapshot', dict(pg_server.conn_args(pg_db), snapshot_root=snapshot_root),
                   env={'PYTHONPATH': '%s:%s' % (shadow, COLLECTIONS_PATH)})
    assert r.failed and 'python3-psycopg' in r['msg'] and 'pip install psycopg' in r['msg']


def _openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _make_certificates(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate for user postgres."""
    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    _openssl('req', '-x509', *ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=djangoops test CA',
             '-days', '2', cwd=d)
    with open(os.path.join(d, 'san.ext'), 'w', encoding='utf-8') as f:
        f.write('subjectAltName=IP:127.0.0.1\n')
    for name, cn, ext in (('server', '127.0.0.1', ['-extfile', 'san.ext']), ('client', 'postgres', [])):
        _openssl('req', *ec, '-keyout', name + '.key', '-out', name + '.csr', '-subj', '/CN=' + cn, cwd=d)
        _openssl('x509', '-req', '-in', name + '.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
                 '-out', name + '.crt', '-days', '2', *ext, cwd=d)
        os.chmod(os.path.join(d, name + '.key'), 0o600)


def test_tls_options_reach_the_driver_and_every_tool(private_pg_server, tmp_path):
    """The server accepts only TLS with a client certificate: the probe (psycopg), pg_dump and
    pg_restore can only connect if ssl_mode, ssl_ca, ssl_cert and ssl_key all reach them."""
    server = private_pg_server
    certs = str(tmp_path / 'certs')
    os.makedirs(certs)
    _make_certificates(certs)
    for name in ('server.crt', 'server.key', 'ca.crt'):
        dst = os.path.join(server.base, name)
        with open(os.path.join(certs, name), 'rb') as src, open(dst, 'wb') as out:
            out.write(src.read())
        os.chown(dst, pwd.getpwnam('postgres').pw_uid, -1)
        os.chmod(dst, 0o600)
    with open(os.path.join(server.datadir, 'pg_hba.conf'), 'w', encoding='utf-8') as f:
        f.write('local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n')
    admin = psycopg.connect(host=server.sockdir, port=server.port, user='postgres', dbname='postgres',
                            autocommit=True)
    with admin:
        for setting, value in (('ssl_cert_file', 'server.crt'), ('ssl_key_file', 'server.key'),
                               ('ssl_ca_file', 'ca.crt')):
            admin.execute("ALTER SYSTEM SET %s = '%s'" % (setting, os.path.join(server.base, value)))
        admin.execute('ALTER SYSTEM SET ssl = on')
        admin.execute('SELECT pg_reload_conf()')
        admin.execute('CREATE DATABASE tls_shop')
    make_shop(_SocketServer(server), 'tls_shop', customers=20, products=5, orders=10)
    tls = dict(ssl_mode='verify-full', ssl_ca=os.path.join(certs, 'ca.crt'),
               ssl_cert=os.path.join(certs, 'client.crt'), ssl_key=os.path.join(certs, 'client.key'))
    root = str(tmp_path / 'snaps')
    deadline = time.monotonic() + 10
    while True:  # the reload is asynchronous
        r = snap(server, 'tls_shop', root, table_stats='checksums', **tls)
        if not r.failed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not r.failed, r
    assert any('pg_dump' in c for c in r['commands'])
    res = restore(server, 'tls_shop', root, **tls)
    assert not res.failed, res
    assert res['tables_match'] is True
    no_cert = dict((k, v) for k, v in tls.items() if k not in ('ssl_cert', 'ssl_key'))
    r = snap(server, 'tls_shop', root, **no_cert)
    assert r.failed and 'certificate' in r['msg'], r['msg']
    r = snap(server, 'tls_shop', root, ssl_mode='disable')
    assert r.failed and 'no encryption' in r['msg'], r['msg']


class _SocketServer(object):
    """The server reached through its trusted Unix socket, for test set-up while TCP wants TLS."""

    def __init__(self, server):
        self.server = server

    def connect(self, database='postgres'):
        return psycopg.connect(host=self.server.sockdir, port=self.server.port, user='postgres', dbname=database,
                               autocommit=True)


# -- secrets and check mode ------------------------------------------------------------------

@pytest.mark.parametrize('fmt, pg_clean', [('custom', 'recreate'), ('plain', 'schemas')])
def test_password_never_leaks(pg_server, shop, tmp_path, fmt, pg_clean):
    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    root = str(tmp_path / 'snaps')
    env = {'TMPDIR': str(tmpdir)}
    secret = pg_server.password
    r, execs = run_module_traced('db_snapshot', dict(pg_server.conn_args(shop), snapshot_root=root, format=fmt,
                                                     table_stats='checksums', jobs=2), env=env)
    assert not r.failed, r
    assert any(a[0].endswith('pg_dump') for a in execs)
    assert_secret_absent(secret, execs, dict(r), r.stdout, r.stderr)
    mutate(pg_server, shop)
    r2, execs2 = run_module_traced('db_restore', dict(pg_server.conn_args(shop), snapshot_root=root,
                                                      pg_clean=pg_clean, jobs=2), env=env)
    assert not r2.failed, r2.get("msg")
    assert any(a[0].endswith('pg_restore' if fmt == 'custom' else 'psql') for a in execs2)
    assert_secret_absent(secret, execs2, dict(r2), r2.stdout, r2.stderr)
    assert os.listdir(str(tmpdir)) == [], 'the private passfile directory is removed'
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), 'rb') as f:
                assert secret.encode('utf-8') not in f.read(), name


def test_check_mode_writes_nothing_and_changes_nothing(pg_server, shop, snapshot_root):
    r = snap(pg_server, shop, snapshot_root)
    mutate(pg_server, shop)
    mutated = content_digest(pg_server, shop), schema_dump(pg_server, shop)
    check_root = snapshot_root + '-check'
    rc = run_module('db_snapshot', dict(pg_server.conn_args(shop), snapshot_root=check_root), check=True)
    assert not rc.failed and rc['changed'] is True
    assert rc['server_version'] and rc['client_version'] and rc['database_bytes'] > 0
    assert not os.path.exists(check_root)
    rr = run_module('db_restore', dict(pg_server.conn_args(shop), snapshot_root=snapshot_root,
                                       snapshot_id=r['snapshot_id']), check=True)
    assert not rr.failed and rr['changed'] is True, rr
    assert (content_digest(pg_server, shop), schema_dump(pg_server, shop)) == mutated
    assert scratch_databases(pg_server) == []
    assert os.listdir(snapshot_root) == [r['snapshot_id']]
    # with diff: the tables now against the tables the snapshot recorded, then those the restore left
    args = dict(pg_server.conn_args(shop), snapshot_root=snapshot_root, snapshot_id=r['snapshot_id'])
    recorded = ''.join(t + '\n' for t in sorted(r['tables']))
    rr = run_module('db_restore', args, check=True, diff=True)
    assert not rr.failed, rr
    now = rr['diff']['before'].splitlines()
    assert 'public.shipment' in now and 'later.thing' in now and 'public.product' not in now, now
    assert 'public.product' in recorded and 'public.shipment' not in recorded
    assert rr['diff']['after'] == recorded and rr['diff']['after_header'] == '%s: tables of snapshot %s' % (
        shop, r['snapshot_id'])
    assert (content_digest(pg_server, shop), schema_dump(pg_server, shop)) == mutated
    done = run_module('db_restore', args, diff=True)
    assert not done.failed, done
    assert done['diff']['before'] == rr['diff']['before'] and done['diff']['after'] == recorded, done['diff']
    assert 'diff' not in run_module('db_restore', args, check=True)


# -- ownership and privileges -------------------------------------------------------------------

def test_owner_and_users_without_createdb(pg_server, snapshot_root, extra_db):
    """A Django database owned by its application role: a superuser's restore keeps the owner's
    objects the owner's, and the owner itself (no CREATEDB) restores in place with pg_clean=schemas."""
    app = unique_name('app')
    pg_server.sql("CREATE ROLE %s LOGIN PASSWORD 'app-pw:\\x'" % app)
    pg_server.sql('CREATE DATABASE %s OWNER %s' % (extra_db, app))
    try:
        with pg_server.connect(extra_db) as con:
            con.execute('SET ROLE %s' % app)
            con.execute('CREATE TABLE django_migrations (id serial PRIMARY KEY, app text, name text)')
            con.execute("INSERT INTO django_migrations(app, name) VALUES ('shop', '0001_initial')")
        r = snap(pg_server, extra_db, snapshot_root, table_stats='checksums')
        assert not r.failed, r
        pg_server.sql("INSERT INTO django_migrations(app, name) VALUES ('shop', '0002_bad')", database=extra_db)

        res = restore(pg_server, extra_db, snapshot_root)  # as the superuser
        assert not res.failed, res
        owners = pg_server.sql("SELECT relname, pg_get_userbyid(relowner) FROM pg_class WHERE relname LIKE "
                               "'django_migrations%'", database=extra_db)
        assert owners and all(o == app for _n, o in owners), owners
        assert pg_server.sql('SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s',
                             params=(extra_db,)) == [(app,)]

        pg_server.sql("INSERT INTO django_migrations(app, name) VALUES ('shop', '0002_bad')", database=extra_db)
        as_app = dict(login_user=app, login_password='app-pw:\\x')
        res = restore(pg_server, extra_db, snapshot_root, **as_app)
        assert res.failed and 'permission denied to create database' in res['msg'], res['msg']
        assert "pg_clean: schemas" in res['msg']
        # a superuser's session in the database, which the owner may not terminate: a clear refusal
        other = pg_server.connect(extra_db)
        try:
            res = restore(pg_server, extra_db, snapshot_root, pg_clean='schemas', terminate_connections=True, **as_app)
            assert res.failed and 'terminating the other sessions of database %s failed' % extra_db in res['msg'], res
            assert 'pg_signal_backend' in res['msg'] and 'Traceback' not in res['msg'], res['msg']
            assert other.execute('SELECT 1').fetchone() == (1,), 'the session is still there'
        finally:
            other.close()
        assert len(pg_server.sql('SELECT name FROM django_migrations', database=extra_db)) == 2, 'nothing restored'
        res = restore(pg_server, extra_db, snapshot_root, pg_clean='schemas', **as_app)
        assert not res.failed, res
        assert pg_server.sql('SELECT name FROM django_migrations', database=extra_db) == [('0001_initial',)]
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE %s' % app)


def as_owner(role, command):
    """Whether ``command`` restores for ``role``: pg_restore with --role, or the one psql transaction taking it."""
    return '--role=' + role in command or ' -c \'SET ROLE "%s"\' -f -' % role in command


@pytest.mark.parametrize('pg_clean, jobs', [('recreate', 2), ('recreate', 1), ('schemas', 2)])
def test_superuser_restores_a_superuser_only_extension_for_the_owner(
        pg_server, snapshot_root, extra_db, pg_clean, jobs):
    """dblink may only be created by a superuser, the tables belong to the application role: the
    extension is restored as the login superuser, everything else as the owner."""
    app = unique_name('app')
    pg_server.sql('CREATE ROLE %s' % app)
    pg_server.sql('CREATE DATABASE %s OWNER %s' % (extra_db, app))
    try:
        with pg_server.connect(extra_db) as con:
            con.execute('CREATE EXTENSION dblink')
            con.execute('CREATE EXTENSION pg_trgm')
            con.execute('SET ROLE %s' % app)
            con.execute('CREATE TABLE item (id serial PRIMARY KEY, title text)')
            con.execute('CREATE INDEX item_title_trgm ON item USING gin (title gin_trgm_ops)')
            con.execute("INSERT INTO item(title) SELECT 'item ' || g FROM generate_series(1, 100) g")
        r = snap(pg_server, extra_db, snapshot_root, table_stats='checksums')
        assert not r.failed, r
        pg_server.sql('DROP EXTENSION dblink', database=extra_db)
        pg_server.sql('DELETE FROM item WHERE id > 10', database=extra_db)
        res = restore(pg_server, extra_db, snapshot_root, pg_clean=pg_clean, jobs=jobs)
        assert not res.failed, res
        assert res['tables_match'] is True
        assert any(as_owner(app, c) for c in res['commands']), res['commands']
        assert sorted(r[0] for r in pg_server.sql('SELECT extname FROM pg_extension', database=extra_db)) == [
            'dblink', 'pg_trgm', 'plpgsql']
        owners = pg_server.sql("SELECT relname, pg_get_userbyid(relowner) FROM pg_class WHERE relname LIKE 'item%'",
                               database=extra_db)
        assert len(owners) == 4 and all(o == app for _n, o in owners), owners
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE %s' % app)


def _owned_database_with_extension_schema(server, database, app):
    """A database of ``app`` whose schema ext (app's, with a comment and a grant) holds dblink, which only a
    superuser may create, and app's table, view and function there. What pg_dump writes of the function body,
    the table comment and the rows looks like the statements a plain restore runs as the superuser."""
    server.sql('CREATE ROLE %s' % app)
    server.sql('CREATE DATABASE %s OWNER %s' % (database, app))
    with server.connect(database) as con:
        con.execute('SET ROLE %s' % app)
        con.execute("CREATE SCHEMA ext; COMMENT ON SCHEMA ext IS 'extensions and what uses them'")
        con.execute('GRANT USAGE ON SCHEMA ext TO PUBLIC')
        con.execute('RESET ROLE')
        con.execute("CREATE EXTENSION dblink SCHEMA ext; COMMENT ON EXTENSION dblink IS 'links; it''s the "
                    "superuser''s\nCOMMENT ON EXTENSION dblink IS ''x'';'")
        con.execute('CREATE EXTENSION pg_trgm')  # trusted, in public
        con.execute('SET ROLE %s' % app)
        con.execute('CREATE TABLE ext.link (id int PRIMARY KEY, name text)')
        con.execute("COMMENT ON TABLE ext.link IS E'links;\\nCREATE EXTENSION dblink WITH SCHEMA ext;\\n'")
        con.execute("INSERT INTO ext.link SELECT g, 'link ' || g FROM generate_series(1, 50) g")
        # rows whose COPY lines start like the statements (one with an unbalanced quote)
        con.execute('CREATE TABLE ext.note (body text)')
        con.execute("INSERT INTO ext.note VALUES ('CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA ext;'), "
                    "('COMMENT ON EXTENSION dblink IS ''it''''s'';'), ('it''s'), (E'\\\\.'), ('$$ /* --')")
        con.execute('CREATE VIEW ext.open_links AS SELECT ext.dblink_get_connections() AS names')
        con.execute("CREATE FUNCTION ext.ensure_link() RETURNS void LANGUAGE plpgsql AS $body$\nBEGIN\nPERFORM 1;\n"
                    "CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA ext;\nEND\n$body$")


def _extension_schema_facts(server, database):
    """What the restore must bring back of _owned_database_with_extension_schema."""
    rows = rows_in(server, database)
    return dict(
        extensions=rows("SELECT e.extname, e.extnamespace::regnamespace::text, pg_get_userbyid(e.extowner), "
                        "obj_description(e.oid, 'pg_extension') FROM pg_extension e ORDER BY 1"),
        schema=rows("SELECT pg_get_userbyid(nspowner), nspacl::text, obj_description(oid, 'pg_namespace') "
                    "FROM pg_namespace WHERE nspname = 'ext'"),
        relations=rows("SELECT relname, relkind::text, pg_get_userbyid(relowner), obj_description(oid, 'pg_class') "
                       "FROM pg_class WHERE relnamespace = 'ext'::regnamespace AND relkind IN ('r', 'v', 'i') "
                       "ORDER BY 1"),
        functions=rows("SELECT proname, prosrc FROM pg_proc WHERE pronamespace = 'ext'::regnamespace "
                       "AND proowner <> 'postgres'::regrole"),
        rows=content_digest(server, database))


@pytest.mark.parametrize('fmt, pg_clean, jobs', [
    ('custom', 'recreate', 2), ('directory', 'recreate', 2), ('custom', 'schemas', 1)])
def test_an_extension_in_its_own_schema_restores_for_the_owner(
        pg_server, snapshot_root, extra_db, fmt, pg_clean, jobs):
    """dblink lives in schema ext, which belongs to the owner: the schema is created first, as the owner, then
    the extension into it as the superuser, then everything else as the owner (without the schema again)."""
    app = unique_name('app')
    try:
        _owned_database_with_extension_schema(pg_server, extra_db, app)
        before = _extension_schema_facts(pg_server, extra_db)
        assert before['schema'] == [(app, '{%s=UC/%s,=U/%s}' % (app, app, app), 'extensions and what uses them')]
        assert [r[:3] for r in before['extensions']] == [
            ('dblink', 'ext', 'postgres'), ('pg_trgm', 'public', 'postgres'), ('plpgsql', 'pg_catalog', 'postgres')]
        r = snap(pg_server, extra_db, snapshot_root, table_stats='checksums', format=fmt, jobs=jobs,
                 compression='gzip' if fmt == 'directory' else 'zstd')
        assert not r.failed, r
        pg_server.sql('DROP EXTENSION dblink CASCADE', database=extra_db)
        pg_server.sql('DELETE FROM ext.link WHERE id > 10', database=extra_db)
        res = restore(pg_server, extra_db, snapshot_root, pg_clean=pg_clean, jobs=jobs)
        assert not res.failed, res['msg']
        assert res['tables_match'] is True
        assert any(as_owner(app, c) for c in res['commands']), res['commands']
        assert _extension_schema_facts(pg_server, extra_db) == before
        assert pg_server.sql('SELECT names FROM ext.open_links', database=extra_db) == [(None,)]
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE IF EXISTS %s' % app)


@pytest.mark.parametrize('pg_clean', ['recreate', 'schemas'])
def test_a_plain_dump_restores_superuser_only_extensions_for_the_owner(pg_server, snapshot_root, extra_db, pg_clean):
    """psql runs the plain dump as the owner; its CREATE EXTENSION and COMMENT ON EXTENSION statements (and the
    grant on schema ext) run as the login superuser (and only those: not the look-alike lines in a function body,
    a comment, the rows)."""
    app = unique_name('app')
    try:
        _owned_database_with_extension_schema(pg_server, extra_db, app)
        before = _extension_schema_facts(pg_server, extra_db)
        r = snap(pg_server, extra_db, snapshot_root, table_stats='checksums', format='plain')
        assert not r.failed, r
        pg_server.sql('DROP EXTENSION dblink CASCADE', database=extra_db)
        pg_server.sql('DELETE FROM ext.link WHERE id > 10', database=extra_db)
        res = restore(pg_server, extra_db, snapshot_root, pg_clean=pg_clean)
        assert not res.failed, res['msg']
        assert res['tables_match'] is True
        assert 'statements run as the login user: 5' in res['commands'], res['commands']
        assert _extension_schema_facts(pg_server, extra_db) == before
        assert pg_server.sql('SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s',
                             params=(extra_db,)) == [(app,)]
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE IF EXISTS %s' % app)


def _filtered(dump, role, size):
    """What PlainDumpFilter hands on for ``dump`` restored for ``role`` (None: by the owner itself) fed in chunks of
    ``size`` bytes (as memoryviews, the way the pipeline's pump hands them), the statements it ran as the login
    user and the statements it left out."""
    from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_load import set_role_statement
    from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_plain import PlainDumpFilter
    statements = PlainDumpFilter(set_role_statement(role) if role else None)
    view = memoryview(dump)
    out = [statements.pass_on(view[n:n + size]) for n in range(0, len(dump), size)]
    return b''.join(out) + statements.flush(), statements.wrapped, statements.dropped


def _without_blobs_transaction(dump):
    """``dump`` without the BEGIN; and COMMIT; that pg_dump writes around the large objects' data."""
    begin = dump.index(b'\nBEGIN;\n', dump.index(b'; Type: BLOBS; ')) + 1
    commit = dump.index(b'\nCOMMIT;\n', begin) + 1
    assert b'lo_open' in dump[begin:commit] and b'lo_open' not in dump[commit:]
    return dump[:begin] + dump[begin + len(b'BEGIN;'):commit] + dump[commit + len(b'COMMIT;'):]


@pytest.mark.parametrize('strings', ['on', 'off'])
def test_the_plain_dump_filter_changes_exactly_the_statements_it_must(
        pg_server, extra_db, tmp_path, config_extension, strings):
    """PlainDumpFilter on what pg_dump writes (with standard_conforming_strings off too: every backslash in a
    string doubled), cut into chunks of many sizes: exactly the extension statements, the privileges and the data
    of the extension's configuration table and sequence run as the login user, and exactly the BEGIN and COMMIT
    around the large objects are left out, however much their look-alikes in names, strings, function bodies and
    rows resemble them; the COPY and setval of the owner's tables and sequences (quoted names, partitions, an
    identity column) stay the owner's."""
    app = unique_name('app')
    try:
        _owned_database_with_extension_schema(pg_server, extra_db, app)
        with pg_server.connect(extra_db) as con:
            con.execute('CREATE EXTENSION %s' % config_extension)
            con.execute("INSERT INTO public.setting VALUES (101, 'mine')")
            con.execute('SET ROLE %s' % app)
            con.execute('CREATE TABLE ext."odd;\nCREATE EXTENSION dblink;" ("COMMENT ON EXTENSION x IS \'y\';" text)')
            con.execute('INSERT INTO ext."odd;\nCREATE EXTENSION dblink;" VALUES (\'x\')')
            con.execute("INSERT INTO ext.note VALUES ('GRANT ALL ON ext.link TO PUBLIC;'), ('BEGIN;'), ('COMMIT;')")
            con.execute('CREATE UNLOGGED TABLE ext."say ""hi""" (id int GENERATED ALWAYS AS IDENTITY, a text)')
            con.execute('INSERT INTO ext."say ""hi""" (a) VALUES (\'hi\')')
            con.execute("CREATE SEQUENCE ext.\"it's\"; SELECT setval('ext.\"it''s\"', 7)")
            con.execute('CREATE TABLE ext.part (n int) PARTITION BY RANGE (n); CREATE TABLE ext.part_1 PARTITION OF '
                        'ext.part FOR VALUES FROM (0) TO (10); INSERT INTO ext.part VALUES (1)')
            con.execute("CREATE VIEW ext.tricky AS SELECT 'a\\''b /* $$ --'::text AS t, E'c\\\\d'::text AS u, "
                        "$q$\nCOMMENT ON EXTENSION dblink IS 'z';$q$::text AS v")
            con.execute('CREATE FUNCTION ext.atomic(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + 1; '
                        'SELECT a; END')
            con.execute('CREATE PROCEDURE ext.batch() LANGUAGE plpgsql AS $$\nBEGIN\nCOMMIT;\nEND\n$$')
            con.execute("SELECT lo_from_bytea(0, 'BEGIN;\nCOMMIT;\n'::bytea)")
            trgm = con.execute("SELECT obj_description(oid, 'pg_extension') FROM pg_extension "
                               "WHERE extname = 'pg_trgm'").fetchone()[0]
        env = dict(os.environ, PGPASSFILE=_passfile(pg_server, str(tmp_path)),
                   PGOPTIONS='-c standard_conforming_strings=' + strings)
        dump = subprocess.run([os.path.join(pg_server.client_bindir, 'pg_dump'), '--format=plain', '--no-owner',
                               '-h', pg_server.host, '-p', str(pg_server.port), '-U', pg_server.superuser, extra_db],
                              env=env, stdout=subprocess.PIPE, check=True).stdout
        assert (b"'c\\\\d'" in dump) is (strings == 'off'), 'backslashes doubled in the view text'
        whole, wrapped, dropped = _filtered(dump, app, len(dump))
        assert (wrapped, dropped) == (9, 2)
        set_role = b'\nSET ROLE "%s";' % app.encode()
        assert whole.replace(b'RESET ROLE;\n', b'').replace(set_role, b'') == _without_blobs_transaction(dump)
        ext = config_extension.encode()
        assert re.findall(rb'RESET ROLE;\n(.*?)' + re.escape(set_role), whole, re.S) == [
            b'CREATE EXTENSION IF NOT EXISTS dblink WITH SCHEMA ext;',
            b"COMMENT ON EXTENSION dblink IS 'links; it''s the superuser''s\nCOMMENT ON EXTENSION dblink IS ''x'';';",
            b'CREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA public;' % ext,
            b"COMMENT ON EXTENSION %s IS 'djangoops test: configuration data';" % ext,
            b'CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;',
            ("COMMENT ON EXTENSION pg_trgm IS '%s';" % trgm).encode(),
            b'COPY public.setting (id, value) FROM stdin;\n101\tmine\n\\.',
            b"SELECT pg_catalog.setval('public.counter', 1, false);",
            b'GRANT USAGE ON SCHEMA ext TO PUBLIC;']
        for size in (1, 2, 3, 5, 7, 13, 64, 1023, 4096):
            assert _filtered(dump, app, size) == (whole, 9, 2), size
        # restored by the owner itself: only the large objects' BEGIN and COMMIT go
        for size in (1, 5, 4096, len(dump)):
            assert _filtered(dump, None, size) == (_without_blobs_transaction(dump), 0, 2), size
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE IF EXISTS %s' % app)


def _privileges(server, database):
    """The privileges (grantors included), default privileges and owners of _database_with_privileges."""
    rows = rows_in(server, database)
    return dict(
        functions=rows("SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p "
                       "WHERE p.proname IN ('dblink_connect_u', 'dblink_get_connections') ORDER BY 1"),
        relations=rows("SELECT relname, pg_get_userbyid(relowner), relacl::text FROM pg_class "
                       "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S') ORDER BY 1"),
        columns=rows("SELECT attname, attacl::text FROM pg_attribute WHERE attrelid = 'public.item'::regclass "
                     "AND attacl IS NOT NULL ORDER BY 1"),
        schema=rows("SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'"),
        defaults=rows("SELECT pg_get_userbyid(defaclrole), defaclnamespace::regnamespace::text, defaclobjtype::text, "
                      "defaclacl::text FROM pg_default_acl ORDER BY 1, 2, 3"))


def _database_with_privileges(server, database, app, reader, clerk):
    """A database of ``app`` with the privileges a superuser gave on dblink's functions (a grant of
    dblink_connect_u, which the extension grants nobody, and a revoke from PUBLIC) and default privileges for its
    own tables; app's own grants (one with grant option, passed on by that role, so pg_dump writes it under SET
    SESSION AUTHORIZATION), a revoke from itself and default privileges."""
    for role in (app, reader, clerk):
        server.sql('CREATE ROLE %s' % role)
    server.sql('CREATE DATABASE %s OWNER %s' % (database, app))
    with server.connect(database) as con:
        con.execute('CREATE EXTENSION dblink')
        con.execute('REVOKE EXECUTE ON FUNCTION dblink_get_connections() FROM PUBLIC')
        con.execute('GRANT EXECUTE ON FUNCTION dblink_connect_u(text) TO %s' % app)
        con.execute('GRANT EXECUTE ON FUNCTION dblink_get_connections() TO %s' % app)
        con.execute('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %s' % reader)
        con.execute('ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON TABLES TO %s' % (app, reader))  # all schemas
        con.execute('SET ROLE %s' % app)
        con.execute('CREATE TABLE public.item (id int PRIMARY KEY, title text)')
        con.execute("INSERT INTO public.item SELECT g, 'item ' || g FROM generate_series(1, 20) g")
        con.execute('GRANT SELECT, UPDATE (title) ON public.item TO %s WITH GRANT OPTION' % reader)
        con.execute('REVOKE TRUNCATE ON public.item FROM %s' % app)
        con.execute('CREATE SEQUENCE public.ticket')
        con.execute('GRANT USAGE ON SEQUENCE public.ticket TO %s' % clerk)
        con.execute('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON SEQUENCES TO %s' % clerk)
        con.execute('SET ROLE %s' % reader)
        con.execute('GRANT SELECT ON public.item TO %s' % clerk)


@pytest.mark.parametrize('fmt, pg_clean, jobs', [
    ('custom', 'recreate', 2), ('directory', 'recreate', 1), ('custom', 'schemas', 1), ('plain', 'recreate', 1),
    ('plain', 'schemas', 1)])
def test_privileges_restore_for_the_owner_as_they_were(pg_server, snapshot_root, extra_db, fmt, pg_clean, jobs):
    """The owner may not grant on an extension's functions: restored as the owner, the superuser's grant fails
    (and a revoke alone only warns, and is lost). The privileges are restored as the login superuser, which
    PostgreSQL performs "as though it were issued by the owner of the affected object": the extension's get what
    the superuser gave them, the owner's own objects exactly what they had, grantors included, and the default
    privileges too."""
    app, reader, clerk = unique_name('app'), unique_name('reader'), unique_name('clerk')
    try:
        _database_with_privileges(pg_server, extra_db, app, reader, clerk)
        before = _privileges(pg_server, extra_db)
        assert ('dblink_connect_u(text)', '{postgres=X/postgres,%s=X/postgres}' % app) in before['functions']
        item = [acl for name, dummy, acl in before['relations'] if name == 'item'][0]
        assert '%s=r*/%s' % (reader, app) in item and '%s=r/%s' % (clerk, reader) in item, item
        r = snap(pg_server, extra_db, snapshot_root, format=fmt, jobs=jobs,
                 compression='gzip' if fmt == 'directory' else 'zstd')
        assert not r.failed, r
        pg_server.sql('GRANT ALL ON FUNCTION dblink_get_connections() TO PUBLIC', database=extra_db)
        pg_server.sql('REVOKE ALL ON public.item FROM %s CASCADE' % reader, database=extra_db)
        # Default privileges for every schema (no schema of their own, so dropping the schemas keeps them): one
        # changed, two added after the snapshot; pg_clean schemas gives them back their built-in values first.
        for statement in ('ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT INSERT ON TABLES TO %s' % (app, clerk),
                          'ALTER DEFAULT PRIVILEGES FOR ROLE %s REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC' % app,
                          'ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON SEQUENCES TO %s' % (reader, clerk)):
            pg_server.sql(statement, database=extra_db)
        assert len(_privileges(pg_server, extra_db)['defaults']) == len(before['defaults']) + 2
        res = restore(pg_server, extra_db, snapshot_root, pg_clean=pg_clean, jobs=jobs)
        assert not res.failed, res['msg']
        assert _privileges(pg_server, extra_db) == before
        if fmt != 'plain':  # a pass of their own, after the rest
            assert any('--use-list=' in c and '/last-' in c for c in res['commands']), res['commands']
    finally:
        pg_server.drop_database(extra_db)
        for role in (clerk, reader, app):
            pg_server.sql('DROP ROLE IF EXISTS %s' % role)


@pytest.mark.parametrize('fmt', ['plain', 'custom'])
def test_a_revoke_on_an_extension_function_is_not_lost(pg_server, snapshot_root, extra_db, fmt):
    """Run as the owner, the superuser's REVOKE on an extension's function only warns ("no privileges could be
    revoked") and the restore succeeds with PUBLIC allowed again."""
    app = unique_name('app')
    function = "SELECT proacl::text FROM pg_proc WHERE proname = 'dblink_get_connections'"
    try:
        pg_server.sql('CREATE ROLE %s' % app)
        pg_server.sql('CREATE DATABASE %s OWNER %s' % (extra_db, app))
        pg_server.sql('CREATE EXTENSION dblink', database=extra_db)
        pg_server.sql('REVOKE EXECUTE ON FUNCTION dblink_get_connections() FROM PUBLIC', database=extra_db)
        assert pg_server.sql(function, database=extra_db) == [('{postgres=X/postgres}',)]
        r = snap(pg_server, extra_db, snapshot_root, format=fmt)
        assert not r.failed, r
        res = restore(pg_server, extra_db, snapshot_root)
        assert not res.failed, res['msg']
        assert pg_server.sql(function, database=extra_db) == [('{postgres=X/postgres}',)]
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE IF EXISTS %s' % app)


@pytest.mark.parametrize('fmt, pg_clean', [('custom', 'recreate'), ('custom', 'schemas'), ('plain', 'recreate')])
def test_an_event_trigger_restores_for_the_owner_last_and_never_fires_on_the_restore(
        pg_server, snapshot_root, extra_db, fmt, pg_clean):
    """Only a superuser may create an event trigger, and pg_restore creates it after the privileges: restored for
    the owner, it is created by the login superuser after them, so it does not log (or block) the restore's own
    GRANTs. (It does see the REFRESH of materialized views, which pg_restore runs after it too.)"""
    app = unique_name('app')
    log = 'SELECT tag FROM public.ddl_log ORDER BY n'
    trigger = ("SELECT evtname, evtevent, pg_get_userbyid(evtowner), evtenabled FROM pg_event_trigger "
               "WHERE evtname = 'log_ddl'")
    try:
        pg_server.sql('CREATE ROLE %s' % app)
        pg_server.sql('CREATE DATABASE %s OWNER %s' % (extra_db, app))
        for statement in (
                'CREATE TABLE public.ddl_log (n serial PRIMARY KEY, tag text)',
                'CREATE TABLE public.item (id int PRIMARY KEY)',
                'ALTER TABLE public.ddl_log OWNER TO %s' % app,
                'ALTER TABLE public.item OWNER TO %s' % app,
                'GRANT SELECT ON public.item TO PUBLIC',
                "CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN "
                "INSERT INTO public.ddl_log (tag) SELECT command_tag FROM pg_event_trigger_ddl_commands(); END$$",
                'CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION public.log_ddl()',
                "COMMENT ON EVENT TRIGGER log_ddl IS 'audit'",
                'CREATE TABLE public.after_the_trigger (id int)'):
            pg_server.sql(statement, database=extra_db)
        logged = pg_server.sql(log, database=extra_db)
        assert logged == [('CREATE TABLE',)]
        before = pg_server.sql(trigger, database=extra_db)
        r = snap(pg_server, extra_db, snapshot_root, format=fmt)
        assert not r.failed, r
        pg_server.sql('DROP TABLE public.after_the_trigger', database=extra_db)
        res = restore(pg_server, extra_db, snapshot_root, pg_clean=pg_clean)
        assert not res.failed, res['msg']
        assert pg_server.sql(log, database=extra_db) == logged, 'the trigger fired on the restore'
        assert pg_server.sql(trigger, database=extra_db) == before
        assert pg_server.sql("SELECT obj_description(oid, 'pg_event_trigger') FROM pg_event_trigger "
                             "WHERE evtname = 'log_ddl'", database=extra_db) == [('audit',)]
        assert pg_server.sql("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'item'",
                             database=extra_db) == [(app,)]
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE IF EXISTS %s' % app)


def _configuration_facts(server, database):
    rows = rows_in(server, database)
    return dict(setting=rows('SELECT * FROM public.setting ORDER BY id'),
                counter=rows('SELECT last_value, is_called FROM public.counter'),
                report=rows('SELECT * FROM public.report'),
                items=rows('SELECT count(*), pg_get_userbyid(relowner) FROM public.item, pg_class '
                           "WHERE relname = 'item' GROUP BY 2"))


@pytest.mark.parametrize('fmt, pg_clean, jobs', [
    ('custom', 'recreate', 2), ('custom', 'recreate', 1), ('directory', 'recreate', 2), ('custom', 'schemas', 1),
    ('plain', 'recreate', 1), ('plain', 'schemas', 1)])
def test_an_extensions_configuration_data_restores_for_the_owner(
        pg_server, snapshot_root, extra_db, config_extension, fmt, pg_clean, jobs):
    """The rows and the sequence value of an extension's configuration data (CONFIG_EXTENSION, as PostGIS's
    spatial_ref_sys) have no CREATE in the snapshot, and the owner may not write them: they are loaded as the login
    superuser right after the extension is created, and never loaded frozen (TRUNCATE would take the rows the
    extension itself made). The owner's materialized view of them is refreshed after the grant that lets it."""
    app = unique_name('app')
    try:
        pg_server.sql('CREATE ROLE %s' % app)
        pg_server.sql('CREATE DATABASE %s OWNER %s' % (extra_db, app))
        with pg_server.connect(extra_db) as con:
            con.execute('CREATE EXTENSION %s' % config_extension)
            con.execute("INSERT INTO public.setting VALUES (101, 'mine'), (102, 'it''s; \\.')")
            con.execute("SELECT setval('public.counter', 42)")
            con.execute('GRANT SELECT ON public.setting TO %s' % app)
            con.execute('SET ROLE %s' % app)
            con.execute('CREATE TABLE public.item (id int PRIMARY KEY)')
            con.execute('INSERT INTO public.item SELECT generate_series(1, 30)')
            con.execute('CREATE MATERIALIZED VIEW public.report AS SELECT count(*) AS settings FROM public.setting')
        before = _configuration_facts(pg_server, extra_db)
        assert before['setting'] == [(1, 'shipped'), (2, 'shipped'), (101, 'mine'), (102, "it's; \\.")]
        assert before['counter'] == [(42, True)] and before['report'] == [(4,)]
        r = snap(pg_server, extra_db, snapshot_root, format=fmt, jobs=jobs,
                 compression='gzip' if fmt == 'directory' else 'zstd')
        assert not r.failed, r
        pg_server.sql('DELETE FROM public.setting WHERE id > 100', database=extra_db)
        pg_server.sql("SELECT setval('public.counter', 7)", database=extra_db)
        res = restore(pg_server, extra_db, snapshot_root, pg_clean=pg_clean, jobs=jobs)
        assert not res.failed, res['msg']
        assert _configuration_facts(pg_server, extra_db) == before
        if fmt == 'custom':  # the owner's table only
            assert FROZEN % 1 in res['commands'], res['commands']
        if fmt == 'plain':  # the extension, its comment, the rows, the sequence, the grant
            assert 'statements run as the login user: 5' in res['commands'], res['commands']
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE IF EXISTS %s' % app)


# The restore's way to the owner role of a database, whatever its name's encoding (set_role_statement).
TAKE_OWNER = ("SELECT set_config('role', pg_get_userbyid(datdba), false) FROM pg_database "
              "WHERE datname = current_database()")


@pytest.mark.parametrize('fmt, pg_clean', [
    ('plain', 'recreate'), ('plain', 'schemas'), ('custom', 'recreate'), ('custom', 'schemas')])
def test_an_owner_with_a_non_ascii_name_owns_a_latin1_database(pg_server, snapshot_root, extra_db, fmt, pg_clean):
    """The role "rôle_..." (created from the UTF-8 maintenance database, as roles are) owns a LATIN1 database. Its
    name reaches the restore decoded from UTF-8 (read in the maintenance database: pg_clean recreate) or from LATIN1
    (read in the database itself: pg_clean schemas), and no spelling of it, raw or U&"...", names the role in both;
    the restore takes the owner role server-side, also after each statement a plain restore runs as the login user
    (dblink)."""
    owner = unique_name('r\u00f4le')
    try:
        pg_server.sql('CREATE ROLE "%s"' % owner)
        pg_server.sql("CREATE DATABASE %s OWNER \"%s\" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' "
                      "LC_CTYPE 'C'" % (extra_db, owner))
        with pg_server.connect(extra_db) as con:
            con.execute('CREATE EXTENSION dblink')
            con.execute(TAKE_OWNER)
            con.execute('CREATE TABLE public.caf\u00e9 (name text)')
            con.execute("INSERT INTO public.caf\u00e9 VALUES ('cr\u00e8me br\u00fbl\u00e9e')")
        r = snap(pg_server, extra_db, snapshot_root, format=fmt, table_stats='checksums')
        assert not r.failed, r
        pg_server.sql("INSERT INTO public.caf\u00e9 VALUES ('th\u00e9')", database=extra_db)
        res = restore(pg_server, extra_db, snapshot_root, pg_clean=pg_clean)
        assert not res.failed, res['msg']
        assert res['tables_match'] is True
        assert pg_server.sql('SELECT c.relname, c.relowner = d.datdba FROM pg_class c, pg_database d '
                             "WHERE d.datname = current_database() AND c.relnamespace = 'public'::regnamespace "
                             "AND c.relkind = 'r'", database=extra_db) == [('caf\u00e9', True)]
        assert pg_server.sql('SELECT * FROM public.caf\u00e9', database=extra_db) == [('cr\u00e8me br\u00fbl\u00e9e',)]
    finally:
        pg_server.drop_database(extra_db)
        pg_server.sql('DROP ROLE IF EXISTS "%s"' % owner)


@pytest.mark.parametrize('fmt, pg_clean', [('plain', 'schemas'), ('custom', 'schemas'), ('plain', 'recreate')])
def test_large_objects_keep_the_restore_one_transaction(pg_server, shop, snapshot_root, fmt, pg_clean):
    """pg_dump writes the large objects' data between BEGIN and COMMIT (pg_restore writing a script too). In the
    one psql transaction that COMMIT would commit the emptied target and the restore so far, and a failure after
    it (here a grant to a role dropped since the snapshot: privileges come last) would leave the target half
    restored while the task says it was not changed. The two statements are left out: all or nothing."""
    role = unique_name('gone')
    pg_server.sql('CREATE ROLE %s' % role)
    pg_server.sql('GRANT SELECT ON public.customer TO %s' % role, database=shop)
    blob = b'\x00BEGIN;\nCOMMIT;\n' + os.urandom(300000)
    with pg_server.connect(shop) as con:
        oid = con.execute('SELECT lo_from_bytea(0, %s)', (blob,)).fetchone()[0]
    before = content_digest(pg_server, shop), schema_dump(pg_server, shop)
    r = snap(pg_server, shop, snapshot_root, format=fmt)
    assert not r.failed, r
    pg_server.sql('REVOKE ALL ON public.customer FROM %s' % role, database=shop)
    pg_server.sql('DROP ROLE %s' % role)
    pg_server.sql('SELECT lo_unlink(%s)' % oid, database=shop)
    mutate(pg_server, shop)
    mutated = content_digest(pg_server, shop), schema_dump(pg_server, shop)
    try:
        res = restore(pg_server, shop, snapshot_root, pg_clean=pg_clean)
        assert res.failed and 'role "%s" does not exist' % role in res['msg'], res['msg']
        assert 'database %s was not changed' % shop in res['msg']
        assert (content_digest(pg_server, shop), schema_dump(pg_server, shop)) == mutated
        assert pg_server.sql('SELECT count(*) FROM pg_largeobject_metadata', database=shop) == [(0,)]
        # with the role back, the same snapshot restores whole, the large object byte for byte
        pg_server.sql('CREATE ROLE %s' % role)
        res = restore(pg_server, shop, snapshot_root, pg_clean=pg_clean)
        assert not res.failed, res['msg']
        assert (content_digest(pg_server, shop), schema_dump(pg_server, shop)) == before
        assert bytes(pg_server.sql('SELECT lo_get(%s)' % oid, database=shop)[0][0]) == blob
        assert 'BEGIN and COMMIT statements left out (the restore is one transaction): 2' in res['commands']
    finally:
        if pg_server.sql('SELECT 1 FROM pg_roles WHERE rolname = %s', params=(role,)):
            pg_server.sql('DROP OWNED BY %s' % role, database=shop)
            pg_server.sql('DROP ROLE %s' % role)


def test_exclude_table_data_keeps_the_table_and_leaves_out_its_rows(pg_server, shop, snapshot_root):
    with pg_server.connect(shop) as con:  # names that pg_dump would read as patterns unless quoted
        con.execute('CREATE TABLE audit."Big log*" (line text); CREATE TABLE audit."Big logs" (line text)')
        con.execute('INSERT INTO audit."Big log*" VALUES (\'a\'), (\'b\'); INSERT INTO audit."Big logs" VALUES (\'c\')')
    before_schema, before_rows = schema_dump(pg_server, shop), content_digest(pg_server, shop)
    assert before_rows['audit.log'][0] == 250, 'the invoice trigger logged every invoice'
    # "log" is audit.log: the only table of that name
    r = snap(pg_server, shop, snapshot_root, table_stats='checksums', exclude_table_data=['log', 'audit.Big log*'])
    assert not r.failed, r.get('msg')
    assert r['excluded_table_data'] == ['audit.log', 'audit.Big log*']
    for table in r['excluded_table_data']:
        assert r['tables'][table] == {'rows': 0, 'checksum': '0' * 16, 'data_excluded': True}
    assert r['tables']['public.customer']['rows'] == 300 and r['tables']['audit.Big logs']['rows'] == 1
    assert any('--exclude-table-data="audit"."log"' in c for c in r['commands']), r['commands']
    with open(os.path.join(snapshot_root, r['snapshot_id'], 'manifest.json'), encoding='utf-8') as f:
        assert json.load(f)['parts']['database']['excluded_table_data'] == ['audit.log', 'audit.Big log*']

    mutate(pg_server, shop)
    r2 = restore(pg_server, shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert not r2.failed, r2.get('msg')
    assert r2['tables_compared'] == 'checksums' and r2['tables_match'] is True
    assert schema_dump(pg_server, shop) == before_schema, 'the table, its sequence and its indexes are kept'
    after = content_digest(pg_server, shop)
    assert after['audit.log'][0] == 0 and after['audit.Big log*'][0] == 0
    left_out = ('audit.log', 'audit.Big log*')
    assert dict((t, v) for t, v in after.items() if t not in left_out) == \
        dict((t, v) for t, v in before_rows.items() if t not in left_out)
    assert after['audit.Big logs'][0] == 1, 'the quoted pattern matched only the table named'


def test_exclude_table_data_refuses_what_a_restore_could_not_load(pg_server, shop, snapshot_root):
    with pg_server.connect(shop) as con:
        con.execute('CREATE TABLE billing.log (id int)')
    assert_exclusions_refused(dict(pg_server.conn_args(shop), snapshot_root=snapshot_root), [
        (['nosuch'], False, 'exclude_table_data: there is no table nosuch in database %s' % shop),
        (['log'], False, 'exclude_table_data: log names 2 tables in database %s (audit.log, billing.log)' % shop),
        (['public.customer'], False, 'the rows of public.customer are referenced by foreign key '
                                     'order_customer_id_fkey of public.order, whose rows are kept'),
        (['customer'], True, 'the rows of public.customer are referenced by foreign key '
                             'order_customer_id_fkey of public.order, whose rows are kept'),
    ])
    # the referencing tables' rows left out too: a consistent snapshot
    r = snap(pg_server, shop, snapshot_root,
             exclude_table_data=['public.customer', 'public.order', 'public.order_item', 'billing.invoice'])
    assert not r.failed, r.get('msg')
    assert r['excluded_table_data'] == ['public.customer', 'public.order', 'public.order_item', 'billing.invoice']
