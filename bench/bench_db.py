# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: db_snapshot and db_restore against the raw tools, per engine, in one run.

Run as root from the repository root, after ``make unit`` (or scripts/bootstrap.sh) made .venv, on an
otherwise idle machine::

    .venv/bin/python bench/bench_db.py                                   # ~1 GiB PG, ~0.5 GiB MariaDB, ~1 GiB SQLite
    .venv/bin/python bench/bench_db.py --pg-mib 100 --my-mib 50 --sqlite-mib 100   # a quick check
    .venv/bin/python bench/bench_db.py --engines postgresql --json bench/results/db.json

It starts its own throwaway PostgreSQL and MariaDB (tests/support/servers.py), generates the data, and
for each engine times, in the same run and on the same data:

- the module at the raw tool's settings (table_stats none) against that raw pipeline
  (target: <= 1.05x: the module adds almost nothing);
- the module's DEFAULT snapshot against the naive ``<dump tool> | gzip`` (target: >= 3x faster, output no
  larger);
- PostgreSQL: restoring the default snapshot with db_restore against ``pg_restore -j 2`` from a directory
  dump (target: no slower), and for reference against the same job by hand (with ANALYZE) and against
  ``pg_restore -j 2`` followed by a CHECKPOINT (db_restore's drop of the replaced database forces one);
  MySQL and SQLite: db_restore against the raw load;
- the module process's peak RSS (VmHWM of the Python process, sampled; target < 100 MB whatever the size),
  and the whole process tree's (wait4) for reference.

Every case runs once per round, the cases of an engine in an order shuffled from round to round (a slow
spell of this machine's disk then falls on all of them alike); times are the median of ``--rounds``
rounds (default 3) and a ratio is the median of the per-round ratios. The module runs the way Ansible's module runner
does after unpacking (python -m <module> <args.json>), so Python start-up is in its time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'tests'))

from support.modules import MODULE_PKG, ensure_collection_link, module_env  # noqa: E402  pylint: disable=wrong-import-position
from support.servers import MariaDBServer, PostgresServer  # noqa: E402  pylint: disable=wrong-import-position

MIB = 1024 * 1024


class Run(object):
    def __init__(self, seconds, tree_rss, self_rss, out):
        self.seconds, self.tree_rss, self.self_rss, self.out = seconds, tree_rss, self_rss, out


def _hwm(pid):
    try:
        with open('/proc/%d/status' % pid, encoding='ascii') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def timed(argv, env=None, stdin=None, stdout=None, watch_self=False):
    """Run argv; (seconds, tree peak RSS, the process's own VmHWM when watched, stdout). Dirty pages left
    by the run before are written back first, untimed: otherwise whichever run comes next pays for them."""
    os.sync()
    started = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            v = _hwm(p.pid)
            if v:
                peak[0] = max(peak[0], v)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    if watch_self:
        sampler.start()
    out = p.stdout.read() if p.stdout else b''
    err = p.stderr.read()
    dummy, status, usage = os.wait4(p.pid, 0)
    done.set()
    seconds = time.monotonic() - started
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        sys.exit('%s failed (%s):\n%s\n%s' % (argv[0], rc, out.decode()[-3000:], err.decode()[-3000:]))
    return Run(seconds, usage.ru_maxrss * 1024, peak[0] or None, out)


def shell(pipeline, env=None):
    """A raw-tool pipeline for the baseline, timed as a whole (bash with pipefail, as an operator would)."""
    return timed(['bash', '-c', 'set -eo pipefail; ' + pipeline], env=env)


def module(name, args, workdir):
    ensure_collection_link()
    path = os.path.join(workdir, 'args.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, f)
    r = timed([sys.executable, '-m', MODULE_PKG + name, path], env=module_env(), watch_self=True)
    result = json.loads(r.out.decode().strip().splitlines()[-1])
    if result.get('failed'):
        sys.exit('%s failed: %s' % (name, result.get('msg')))
    r.result = result
    return r


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def interleaved(cases, rounds):
    """Run every case once per round, in an order shuffled from round to round (seeded: the same for every
    run of the script), so that a slow spell of the disk or a neighbour on the host falls on all of them
    alike instead of on whichever ran as a block, and no case always follows the same other one.
    Returns {name: [Run, ...]} in round order."""
    runs = {name: [] for name, dummy in cases}
    order = random.Random(len(cases))
    for dummy in range(rounds):
        for name, fn in order.sample(cases, len(cases)):
            runs[name].append(fn())
    return runs


def pick(runs, module, raw):
    """The median module run, the median raw run and the per-round ratios (module / raw of the same
    round): the ratio reported is their median."""
    mod = sorted(runs[module], key=lambda x: x.seconds)[len(runs[module]) // 2]
    base = sorted(runs[raw], key=lambda x: x.seconds)[len(runs[raw]) // 2]
    paired = [m.seconds / r.seconds for m, r in zip(runs[module], runs[raw]) if r.seconds]
    return mod, base, paired


def only_snapshot(root):
    """The id of the one snapshot in root: each snapshot run empties the root first, so it is the last run's
    (the median run's may be gone)."""
    names = [n for n in os.listdir(root) if not n.startswith('.')]
    if len(names) != 1:
        sys.exit('expected one snapshot in %s, found %s' % (root, names))
    return names[0]


def size_of(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, dummy, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


class Report(object):
    def __init__(self):
        self.rows = []

    def add(self, engine, what, module_run, raw_run=None, raw_label='', module_bytes=None, raw_bytes=None,
            target=None, paired=None):
        row = {'engine': engine, 'what': what, 'module_s': round(module_run.seconds, 2),
               'module_rss_mib': round((module_run.self_rss or 0) / MIB, 1),
               'tree_rss_mib': round(module_run.tree_rss / MIB, 1), 'raw': raw_label, 'target': target}
        if raw_run is not None:
            row['raw_s'] = round(raw_run.seconds, 2)
            row['ratio_of_medians'] = round(module_run.seconds / raw_run.seconds, 3) if raw_run.seconds else None
            row['ratio'] = round(median(paired), 3) if paired else row['ratio_of_medians']
            if paired:
                row['round_ratios'] = [round(x, 3) for x in paired]
        if module_bytes is not None:
            row['module_mib'] = round(module_bytes / MIB, 1)
        if raw_bytes is not None:
            row['raw_mib'] = round(raw_bytes / MIB, 1)
        self.rows.append(row)
        print('%-10s %-42s module %7.2fs  %-34s %7s  ratio %6s  out %s/%s MiB  RSS %s MiB (tree %s)  %s' % (
            engine, what, row['module_s'], raw_label, '%.2fs' % row['raw_s'] if 'raw_s' in row else '-',
            row.get('ratio', '-'), row.get('module_mib', '-'), row.get('raw_mib', '-'), row['module_rss_mib'],
            row['tree_rss_mib'], target or ''), flush=True)


def ceiling(rep, engine, runs, naive_label, raw_bytes, naive_bytes):
    """The raw zstd pipeline (the default's settings, no module) against the raw gzip one: how much faster
    than gzip any snapshot at the default settings can be here, whatever wraps the tools."""
    raw, naive, paired = pick(runs, 'raw', 'naive')
    rep.add(engine, 'ceiling: raw zstd pipeline vs raw gzip', raw, naive, naive_label, raw_bytes, naive_bytes,
            '(reference: the best the default can do)', paired)


# -- data -------------------------------------------------------------------------------------------------

PG_SQL = '''
CREATE TABLE customer (id bigserial PRIMARY KEY, email text UNIQUE, name text, joined timestamptz);
CREATE TABLE product (id bigserial PRIMARY KEY, sku text UNIQUE, title text, price numeric(10,2), image bytea);
CREATE TABLE "order" (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customer(id), status text,
                      note text, placed timestamptz);
CREATE TABLE order_line (id bigserial PRIMARY KEY, order_id bigint REFERENCES "order"(id),
                         product_id bigint REFERENCES product(id), quantity int);
INSERT INTO customer(email, name, joined) SELECT 'c' || g || '@example.org', 'Kundé ' || md5(g::text),
    now() - g * interval '1 minute' FROM generate_series(1, {n} / 20) g;
INSERT INTO product(sku, title, price, image) SELECT 'SKU-' || g, 'Product ' || md5(g::text), g * 1.25,
    decode(repeat(md5(g::text), 8), 'hex') FROM generate_series(1, {n} / 50) g;
INSERT INTO "order"(customer_id, status, note, placed) SELECT g % ({n} / 20) + 1,
    (ARRAY['new','paid','shipped'])[g % 3 + 1], md5(g::text) || ' ' || md5((g * 7)::text),
    now() - g * interval '1 second' FROM generate_series(1, {n}) g;
INSERT INTO order_line(order_id, product_id, quantity) SELECT g % {n} + 1, g % ({n} / 50) + 1, g % 9 + 1
    FROM generate_series(1, {n} * 2) g;
CREATE INDEX ON "order"(customer_id);
CREATE INDEX ON order_line(order_id);
'''

MY_SQL = '''
CREATE TABLE customer (id BIGINT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(100) UNIQUE, name VARCHAR(100),
                       joined DATETIME) ENGINE=InnoDB;
CREATE TABLE `order` (id BIGINT PRIMARY KEY AUTO_INCREMENT, customer_id BIGINT, status VARCHAR(10),
                      note VARCHAR(200), placed DATETIME, INDEX (customer_id)) ENGINE=InnoDB;
INSERT INTO customer(email, name, joined) SELECT CONCAT('c', seq, '@example.org'), CONCAT('Kundé ', MD5(seq)),
    NOW() - INTERVAL seq MINUTE FROM seq_1_to_{c};
INSERT INTO `order`(customer_id, status, note, placed) SELECT seq % {c} + 1, ELT(seq % 3 + 1, 'new', 'paid', 'shipped'),
    CONCAT(MD5(seq), ' ', MD5(seq * 7), ' ', MD5(seq * 13)), NOW() - INTERVAL seq SECOND FROM seq_1_to_{n};
'''


def pg_generate(server, db, mib):
    server.create_database(db)
    n = max(20000, int(mib * 2720))  # measured: 1950 rows per MiB asked gave 733 MiB for 1024, so 2720 lands near mib
    with server.connect(db) as con:
        con.execute(PG_SQL.format(n=n))
        con.execute('VACUUM ANALYZE')
    return server.sql('SELECT pg_database_size(%s)', db, (db,))[0][0]


def my_generate(server, db, mib):
    server.create_database(db)
    n = max(10000, int(mib * 4900))  # measured: 3300 per MiB asked gave 332-348 MiB of InnoDB for 512
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            for stmt in MY_SQL.format(n=n, c=max(1000, n // 20)).split(';'):
                if stmt.strip():
                    cur.execute(stmt)
            cur.execute('ANALYZE TABLE customer, `order`')
            cur.fetchall()
            cur.execute('SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema=%s',
                        (db,))
            return int(cur.fetchone()[0])
    finally:
        con.close()


def sqlite_generate(path, mib):
    con = sqlite3.connect(path)
    con.execute('PRAGMA journal_mode=WAL')
    con.execute('CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, body TEXT, blob BLOB)')
    row_text = 'x' * 300
    rows = int(mib * MIB / 700)
    con.executemany('INSERT INTO item(name, body, blob) VALUES (?, ?, ?)',
                    (('name %d' % i, row_text + str(i), os.urandom(64) + bytes(200)) for i in range(rows)))
    con.execute('CREATE INDEX item_name ON item(name)')
    con.commit()
    con.close()
    return os.path.getsize(path)


# -- per engine -----------------------------------------------------------------------------------------------

def bench_postgresql(rep, work, args):
    server = PostgresServer(base=tempfile.mkdtemp(prefix='bench-pg-', dir='/tmp')).start()
    try:
        size = pg_generate(server, 'bench', args.pg_mib)
        print('postgresql: database of %.0f MiB' % (size / MIB), flush=True)
        conn = server.conn_args('bench')
        env = dict(os.environ, PGPASSWORD=server.password)
        b = server.bindir
        dsn = '-h %s -p %d -U %s' % (server.host, server.port, server.superuser)
        same_root, root = os.path.join(work, 'pg-snaps-same'), os.path.join(work, 'pg-snaps')

        def snap(where, **kw):
            shutil.rmtree(where, ignore_errors=True)
            return module('db_snapshot', dict(conn, snapshot_root=where, space_check=False, **kw), work)

        pg_dump = '%s/pg_dump %s' % (b, dsn)
        runs = interleaved([
            ('raw', lambda: shell('%s -Fc -Z0 bench | zstd -q -3 -T0 > %s/raw.dump.zst' % (pg_dump, work), env)),
            ('raw durable', lambda: shell('%s -Fc -Z0 bench | zstd -q -3 -T0 > %s/raw.dump.zst && sync %s/raw.dump.zst'
                                          % (pg_dump, work, work), env)),
            ('same', lambda: snap(same_root, table_stats='none')),
            ('naive', lambda: shell('%s bench | gzip > %s/naive.sql.gz' % (pg_dump, work), env)),
            ('default', lambda: snap(root)),
        ], args.rounds)
        same, raw_same, paired = pick(runs, 'same', 'raw')
        raw_bytes = size_of(os.path.join(work, 'raw.dump.zst'))
        rep.add('postgresql', 'snapshot, same settings (custom, zstd -3)', same, raw_same, 'pg_dump -Fc -Z0 | zstd -T0',
                same.result['bytes'], raw_bytes, '<= 1.05x', paired)
        same, raw_durable, paired = pick(runs, 'same', 'raw durable')
        rep.add('postgresql', 'snapshot, same settings, raw output fsynced', same, raw_durable,
                '... | zstd -T0 > f && sync f', same.result['bytes'], raw_bytes, '<= 1.05x', paired)
        default, naive, paired = pick(runs, 'default', 'naive')
        rep.add('postgresql', 'snapshot, DEFAULT settings', default, naive, 'pg_dump | gzip', default.result['bytes'],
                size_of(os.path.join(work, 'naive.sql.gz')), '>= 3x faster (ratio <= 0.33), no larger', paired)
        ceiling(rep, 'postgresql', runs, 'pg_dump | gzip', raw_bytes, size_of(os.path.join(work, 'naive.sql.gz')))
        snap_id = only_snapshot(root)

        server.create_database('bench_dir_target')
        shell('%s/pg_dump %s -Fd -j 2 -f %s/dirdump bench' % (b, dsn, work), env)

        def raw_restore():
            server.drop_database('bench_dir_target')
            server.create_database('bench_dir_target')
            return shell('%s/pg_restore %s -j 2 --no-owner -d bench_dir_target %s/dirdump' % (b, dsn, work), env)

        def raw_restore_checkpointed():
            # db_restore ends by dropping the database it replaced, and PostgreSQL's DROP DATABASE forces an
            # immediate checkpoint, which writes and fsyncs the restored database too: the same durability here.
            server.drop_database('bench_dir_target')
            server.create_database('bench_dir_target')
            return shell('{b}/pg_restore {dsn} -j 2 --no-owner -d bench_dir_target {work}/dirdump && '
                         '{b}/psql {dsn} -q -d bench_dir_target -c CHECKPOINT'.format(b=b, dsn=dsn, work=work), env)

        restore_args = dict(conn, database='bench_restored', create=True, snapshot_root=root, snapshot_id=snap_id,
                            terminate_connections=True)
        # The same job by hand: replace the database and give the planner its statistics, as db_restore does.
        raw_job = ('{b}/dropdb {dsn} --if-exists bench_job_target && {b}/createdb {dsn} bench_job_target && '
                   '{b}/pg_restore {dsn} -j 2 --no-owner -d bench_job_target {work}/dirdump && '
                   '{b}/vacuumdb {dsn} --analyze-only -j 2 -q -d bench_job_target').format(b=b, dsn=dsn, work=work)
        runs = interleaved([('raw', raw_restore), ('module', lambda: module('db_restore', restore_args, work)),
                            ('raw job', lambda: shell(raw_job, env)), ('raw checkpointed', raw_restore_checkpointed)],
                           args.rounds)
        restored, raw_r, paired = pick(runs, 'module', 'raw')
        rep.add('postgresql', 'restore of the DEFAULT snapshot', restored, raw_r, 'pg_restore -j 2 (directory dump)',
                target='no slower (ratio <= 1.0)', paired=paired)
        restored, raw_r, paired = pick(runs, 'module', 'raw job')
        rep.add('postgresql', 'restore, against the same job by hand', restored, raw_r,
                'dropdb+createdb+pg_restore -j 2+vacuumdb -Z -j 2', target='(reference)', paired=paired)
        restored, raw_r, paired = pick(runs, 'module', 'raw checkpointed')
        rep.add('postgresql', 'restore, against pg_restore -j 2 made as durable', restored, raw_r,
                'pg_restore -j 2 && CHECKPOINT', target='(reference)', paired=paired)
    finally:
        server.destroy()


def bench_mysql(rep, work, args):
    server = MariaDBServer(base=tempfile.mkdtemp(prefix='bench-my-', dir='/tmp')).start()
    try:
        size = my_generate(server, 'bench', args.my_mib)
        print('mysql: database of %.0f MiB' % (size / MIB), flush=True)
        conn = server.conn_args('bench')
        cnf = os.path.join(work, 'my.cnf')
        with open(cnf, 'w', encoding='utf-8') as f:
            f.write('[client]\nuser=%s\npassword="%s"\nhost=%s\nport=%d\n' % (
                server.user, server.password.replace('\\', '\\\\').replace('"', '\\"'), server.host, server.port))
        os.chmod(cnf, 0o600)
        flags = '--single-transaction --routines --triggers --events --hex-blob --quick'
        same_root, root = os.path.join(work, 'my-snaps-same'), os.path.join(work, 'my-snaps')

        def snap(where, **kw):
            shutil.rmtree(where, ignore_errors=True)
            return module('db_snapshot', dict(conn, snapshot_root=where, space_check=False, **kw), work)

        dump = 'mariadb-dump --defaults-extra-file=%s' % cnf
        runs = interleaved([
            ('raw', lambda: shell('%s %s bench | zstd -q -3 -T0 > %s/raw.sql.zst' % (dump, flags, work))),
            ('raw durable', lambda: shell('%s %s bench | zstd -q -3 -T0 > %s/raw.sql.zst && sync %s/raw.sql.zst'
                                          % (dump, flags, work, work))),
            ('same', lambda: snap(same_root, table_stats='none')),
            ('naive', lambda: shell('%s bench | gzip > %s/naive.sql.gz' % (dump, work))),
            ('default', lambda: snap(root)),
        ], args.rounds)
        same, raw_same, paired = pick(runs, 'same', 'raw')
        raw_bytes = size_of(os.path.join(work, 'raw.sql.zst'))
        rep.add('mysql', 'snapshot, same settings (zstd -3)', same, raw_same, 'mariadb-dump | zstd -T0',
                same.result['bytes'], raw_bytes, '<= 1.05x', paired)
        same, raw_durable, paired = pick(runs, 'same', 'raw durable')
        rep.add('mysql', 'snapshot, same settings, raw output fsynced', same, raw_durable,
                '... | zstd -T0 > f && sync f', same.result['bytes'], raw_bytes, '<= 1.05x', paired)
        default, naive, paired = pick(runs, 'default', 'naive')
        rep.add('mysql', 'snapshot, DEFAULT settings', default, naive, 'mariadb-dump | gzip', default.result['bytes'],
                size_of(os.path.join(work, 'naive.sql.gz')), '>= 3x faster (ratio <= 0.33), no larger', paired)
        ceiling(rep, 'mysql', runs, 'mariadb-dump | gzip', raw_bytes, size_of(os.path.join(work, 'naive.sql.gz')))
        snap_id = only_snapshot(root)

        def raw_restore():
            server.drop_database('bench_raw_target')
            server.create_database('bench_raw_target')
            return shell('zstd -q -dc %s/raw.sql.zst | mariadb --defaults-extra-file=%s bench_raw_target' % (work, cnf))

        restore_args = dict(conn, database='bench_restored', create=True, snapshot_root=root, snapshot_id=snap_id)
        runs = interleaved([('raw', raw_restore), ('module', lambda: module('db_restore', restore_args, work))],
                           args.rounds)
        restored, raw_r, paired = pick(runs, 'module', 'raw')
        rep.add('mysql', 'restore of the DEFAULT snapshot', restored, raw_r, 'zstd -dc | mariadb', target='about 1x',
                paired=paired)
    finally:
        server.destroy()


def bench_sqlite(rep, work, args):
    db = os.path.join(work, 'bench.sqlite3')
    size = sqlite_generate(db, args.sqlite_mib)
    print('sqlite: database of %.0f MiB' % (size / MIB), flush=True)
    same_root, root = os.path.join(work, 'sq-snaps-same'), os.path.join(work, 'sq-snaps')
    conn = dict(engine='sqlite', database=db)

    def snap(where, **kw):
        shutil.rmtree(where, ignore_errors=True)
        return module('db_snapshot', dict(conn, snapshot_root=where, space_check=False, **kw), work)

    def raw_backup(copy, then=''):
        for stale in (copy, copy + '.gz'):
            if os.path.exists(stale):
                os.unlink(stale)
        return shell("sqlite3 %s \".backup '%s'\" && sqlite3 %s 'PRAGMA integrity_check' >/dev/null %s"
                     % (db, copy, copy, then))

    copy, naive_copy = os.path.join(work, 'raw-copy.sqlite3'), os.path.join(work, 'naive-copy.sqlite3')
    runs = interleaved([
        ('raw', lambda: raw_backup(copy)),
        ('raw durable', lambda: raw_backup(copy, '&& sync %s' % copy)),
        ('same', lambda: snap(same_root, table_stats='none', compression='none')),
        ('naive', lambda: raw_backup(naive_copy, '&& gzip -f %s' % naive_copy)),
        ('default', lambda: snap(root)),
    ], args.rounds)
    same, raw_same, paired = pick(runs, 'same', 'raw')
    rep.add('sqlite', 'snapshot, same settings (copy + integrity_check)', same, raw_same,
            'sqlite3 .backup + integrity_check', same.result['bytes'], size_of(copy), '<= 1.05x', paired)
    same, raw_durable, paired = pick(runs, 'same', 'raw durable')
    rep.add('sqlite', 'snapshot, same settings, raw copy fsynced', same, raw_durable,
            '... && sync copy', same.result['bytes'], size_of(copy), '<= 1.05x', paired)
    default, naive, paired = pick(runs, 'default', 'naive')
    rep.add('sqlite', 'snapshot, DEFAULT settings', default, naive, '.backup + integrity_check | gzip',
            default.result['bytes'], size_of(naive_copy + '.gz'), 'faster than gzip, no larger', paired)
    snap_id = only_snapshot(root)
    target = os.path.join(work, 'restored.sqlite3')
    runs = interleaved([
        ('raw', lambda: shell('zstd -q -f -dc %s/%s/database/database.sqlite3.zst > %s.raw' % (root, snap_id, target))),
        ('module', lambda: module('db_restore', dict(conn, database=target, create=True, snapshot_root=root,
                                                     snapshot_id=snap_id), work)),
    ], args.rounds)
    restored, raw_r, paired = pick(runs, 'module', 'raw')
    rep.add('sqlite', 'restore of the DEFAULT snapshot', restored, raw_r, 'zstd -dc > file',
            target='verify + decompress + integrity_check + rename', paired=paired)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--engines', default='postgresql,mysql,sqlite')
    p.add_argument('--pg-mib', type=int, default=1024)
    p.add_argument('--my-mib', type=int, default=512)
    p.add_argument('--sqlite-mib', type=int, default=1024)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--workdir', default='/var/tmp')
    p.add_argument('--json', help='also write the rows as JSON to this file')
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix='djangoops-bench-db-', dir=args.workdir)
    os.chmod(work, 0o755)
    rep = Report()
    print('cores %d, load %s' % (os.cpu_count(), os.getloadavg()), flush=True)
    try:
        for engine in args.engines.split(','):
            {'postgresql': bench_postgresql, 'mysql': bench_mysql, 'sqlite': bench_sqlite}[engine](rep, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump({'rows': rep.rows, 'args': vars(args), 'median_of': args.rounds}, f, indent=1)


if __name__ == '__main__':
    main()
