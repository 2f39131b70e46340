# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure how fast the default PostgreSQL snapshot restores, against pg_restore -j 2 from a directory dump.

Not a test. Run as root from the repository:
    .venv/bin/python bench/pg_restore_speed.py [rows [rounds]]
It starts its own throwaway server, builds a Django-like database (three big tables and 150 small
ones), and prints one line per way of restoring: pg_restore -j 2 from a directory dump, the engine's
loading code on the default snapshot, then db_restore end to end (which adds sha256 verification of
the snapshot, ANALYZE and the table statistics). Restores run interleaved, `rounds` times each."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests'))

from support.modules import COLLECTIONS_PATH, ensure_collection_link, run_module  # noqa: E402  pylint: disable=wrong-import-position
from support.servers import PostgresServer  # noqa: E402  pylint: disable=wrong-import-position

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

# pylint: disable=wrong-import-position
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_client import ClientTools  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_connect import PgConnection  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_load import PgLoader  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir  # noqa: E402

BUILD = '''
CREATE TABLE customer (id bigserial PRIMARY KEY, email text UNIQUE, name text, joined timestamptz);
INSERT INTO customer(email, name, joined)
    SELECT 'c' || g || '@example.org', 'Name ' || md5(g::text), now() - g * interval '1 minute'
    FROM generate_series(1, {rows} / 10) g;
CREATE TABLE "order" (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customer(id), status text,
                      note text, placed timestamptz);
INSERT INTO "order"(customer_id, status, note, placed)
    SELECT g % ({rows} / 10) + 1, (ARRAY['new', 'paid', 'shipped'])[g % 3 + 1], repeat(md5(g::text), 3),
           now() - g * interval '1 second'
    FROM generate_series(1, {rows}) g;
CREATE INDEX order_customer_idx ON "order"(customer_id);
CREATE INDEX order_placed_idx ON "order"(placed);
CREATE TABLE event (id bigserial PRIMARY KEY, order_id bigint REFERENCES "order"(id), payload jsonb);
INSERT INTO event(order_id, payload)
    SELECT g % {rows} + 1, jsonb_build_object('n', g, 'h', md5(g::text)) FROM generate_series(1, {rows}) g;
CREATE INDEX event_order_idx ON event(order_id);
DO $$
BEGIN
    -- the many small tables of a Django project (auth, admin, sessions, every app's models)
    FOR i IN 1..150 LOOP
        EXECUTE format('CREATE TABLE app_model_%s (id serial PRIMARY KEY, customer_id bigint REFERENCES customer(id),
                        name text NOT NULL, created timestamptz NOT NULL DEFAULT now())', i);
        EXECUTE format('CREATE INDEX app_model_%s_name ON app_model_%s(name)', i, i);
        EXECUTE format('INSERT INTO app_model_%s(customer_id, name) SELECT g, md5(g::text)
                        FROM generate_series(1, 200) g', i);
    END LOOP;
END $$;
'''


def timed(label, fn):
    started = time.monotonic()
    fn()
    seconds = time.monotonic() - started
    print('%-62s %7.2f s' % (label, seconds), flush=True)
    return seconds


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    server = PostgresServer().start()
    work = tempfile.mkdtemp(prefix='djangoops-bench-')
    try:
        with server.connect('postgres') as con:
            con.execute('CREATE DATABASE bench')
        with server.connect('bench') as con:
            con.execute(BUILD.format(rows=rows))
        size = server.sql("SELECT pg_size_pretty(pg_database_size('bench'))")[0][0]
        print('database: %d order rows, %s, %d cores' % (rows, size, os.cpu_count()), flush=True)
        bindir = server.bindir
        conn = ['--host', server.sockdir, '--port', str(server.port), '--username', 'postgres']

        def fresh(name):
            server.sql('DROP DATABASE IF EXISTS %s' % name)
            server.sql('CREATE DATABASE %s' % name)
            return name

        root = os.path.join(work, 'snaps')
        args = dict(server.conn_args('bench'), snapshot_root=root)
        for stats in ('none', 'counts', 'checksums'):
            r = run_module('db_snapshot', dict(args, table_stats=stats))
            assert not r.failed, r
            print('snapshot custom+zstd, table_stats=%-10s %7.2f s  %6.1f MiB'
                  % (stats, r['seconds'], r['bytes'] / 2.0 ** 20), flush=True)
        snaps = {}
        for label, extra in (('custom+zstd (default)', {}), ('directory+gzip', dict(format='directory'))):
            r = run_module('db_snapshot', dict(args, **extra))
            assert not r.failed, r
            snaps[label] = r
            print('snapshot %-24s %7.2f s  %6.1f MiB' % (label, r['seconds'], r['bytes'] / 2.0 ** 20), flush=True)

        pgdir = os.path.join(work, 'plain-dir')
        timed('pg_dump -Fd -j 2 (default compression)', lambda: subprocess.run(
            [bindir + '/pg_dump'] + conn + ['-Fd', '-j', '2', '-f', pgdir, 'bench'], check=True))

        custom_snap = snaps['custom+zstd (default)']
        with open(os.path.join(root, custom_snap['snapshot_id'], 'manifest.json'), encoding='utf-8') as f:
            custom_meta = json.load(f)['parts']['database']
        custom = os.path.join(root, custom_snap['snapshot_id'], custom_meta['files'][0]['path'])

        def baseline():
            # the same connection as the engine's (TCP, password from a passfile), so only the format differs
            database = fresh('r0')
            with private_dir() as secrets_dir:
                pg = PgConnection(server.conn_args('bench'), secrets_dir)
                env = dict(os.environ, **pg.tool_env())
                subprocess.run([bindir + '/pg_restore'] + pg.tool_args() + [
                    '--no-owner', '--exit-on-error', '-j', '2', '-d', database, pgdir], env=env, check=True)

        def engine(jobs):
            """The engine's own loading code, without db_restore's verification and statistics."""
            database = fresh('r1')
            with private_dir() as secrets_dir:
                pg = PgConnection(server.conn_args('bench'), secrets_dir)
                tools = ClientTools(bindir, (int(server.sql('SHOW server_version_num')[0][0]) // 10000,))
                PgLoader(pg, tools, secrets_dir, lambda _c: None).parallel(
                    custom_meta, custom, database, None, {}, root, jobs)

        ways = (('pg_restore -j 2 from pg_dump -Fd directory (baseline)', baseline),
                ('default snapshot, engine with jobs 2 (decompressed file)', lambda: engine(2)),
                ('default snapshot, engine with jobs 1 (zstd -d | pg_restore)', lambda: engine(1)))
        times = dict((label, []) for label, _fn in ways)
        for _round in range(rounds):
            for label, fn in ways:
                times[label].append(timed(label, fn))
            print('  (load average %.1f)' % os.getloadavg()[0], flush=True)
        for label, _fn in ways:
            print('%-62s min %6.2f s  median %6.2f s' % (label, min(times[label]), statistics.median(times[label])))
        for _round in range(2):
            for label, r in snaps.items():
                res = run_module('db_restore', dict(args, snapshot_id=r['snapshot_id'], database='r3', create=True,
                                                    jobs=2))
                assert not res.failed, res
                print('db_restore end to end, %-38s %7.2f s' % (label, res['seconds']), flush=True)
                server.sql('DROP DATABASE r3')
    finally:
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
