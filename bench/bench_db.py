# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: db_snapshot and db_restore against the raw tools, per engine, in one run.

Run as root from the repository root, after ``make unit`` (or scripts/bootstrap.sh) made .venv, on an
otherwise idle machine::

    .venv/bin/python bench/bench_db.py                                   # ~1 GiB PG, ~0.5 GiB MariaDB, ~1 GiB SQLite
    .venv/bin/python bench/bench_db.py --pg-mib 100 --my-mib 50 --sqlite-mib 100   # a quick check
    .venv/bin/python bench/bench_db.py --engines postgresql --json bench/results/db.json
    .venv/bin/python bench/bench_db.py --engines mysql --data digests       # the hex-digest rows of older runs

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

from support.modules import COLLECTIONS_PATH, MODULE_PKG, ensure_collection_link, module_env  # noqa: E402  pylint: disable=wrong-import-position
from support.servers import MariaDBServer, PostgresServer  # noqa: E402  pylint: disable=wrong-import-position

MIB = 1024 * 1024
ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)
# The default's compressor on a SQL dump: zstd -3 with the collection's parameters for SQL text, which the raw
# pipelines use too, so that "same settings" are the same.
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import ZSTD_TEXT_PARAMS  # noqa: E402  pylint: disable=wrong-import-position
ZSTD_TEXT = 'zstd -q -3 --zstd=%s -T0' % ZSTD_TEXT_PARAMS


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
#
# Two kinds of rows (--data):
# - text, the default since 2026-12-07: rows shaped like a Django shop's - names, e-mail addresses, postal
#   addresses, notes of English words drawn with a skew (the first words of WORDS, the most common ones, most
#   often, as in real text), a JSON document, a UUID, prices, counts and dates;
# - digests: the rows of the runs before, mostly hex MD5 digests - a worst case for zstd against gzip (16
#   symbols and few repeats: zstd -3 gains little on them while gzip spends long searching), kept to compare
#   with those runs.

# The 1042 most common words of English web text, most common first.
WORDS = '''
the of and to in is for on that by this with you it not or be are from at as your all have new more an was we will
home can us about if page my has search free but our one other do no information time they site he up may what which
their news out use any there see only so his when contact here business who web also now help get pm view online
first am been would how were me services some these click its like service than find price date back top people had
list name just over state year day into email two health world re next used go work last most products music buy
data make them should product system post her city add policy number such please available copyright support message
after best software then jan good video well where info rights public books high school through each links she
review years order very privacy book items company read group need many user said does set under general research
university january mail full map reviews program life know games way days management part could great united hotel
real item international center ebay must store travel comments made development report off member details line terms
before hotels did send right type because local those using results office education national car design take posted
internet address community within states area want phone dvd shipping reserved subject between forum family long
based code show even black check special prices website index being women much sign file link open today technology
south case project same pages uk version section own found sports house related security both county american photo
game members power while care network down computer systems three total place end following download him without per
access think north resources current posts big media law control water history pictures size art personal since
including guide shop directory board location change white text small rating rate government children during usa
return students shopping account times sites level digital profile previous form events love old john main call
hours image department title description non insurance another why shall property class still money quality every
listing content country private little visit save tools low reply customer december compare movies include college
value article york man card jobs provide food source author different press learn sale around print course job
canada process teen room stock training too credit point join science men categories advanced west sales look
english left team estate box conditions select windows photos gay thread week category note live large gallery table
register however june october november market library really action start series model features air industry plan
human provided yes required second hot accessories cost movie forums march la september better say questions july
yahoo going medical test friend come dec server pc study application cart staff articles san feedback again play
looking issues april never users complete street topic comment financial things working against standard tax person
below mobile less got blog party payment equipment login student let programs offers legal above recent park stores
side act problem red give memory performance social august quote language story sell options experience rates create
key body young america important field few east paper single age activities club example girls additional password
latest something road gift question changes night ca hard texas oct pay four poker status browse issue range
building seller court february always result audio light write war nov offer blue groups al easy given files event
release analysis request fax china making picture needs possible might professional yet month major star areas
future space committee hand sun cards problems london washington meeting become interest id child keep enter
california share similar garden schools million added reference companies listed baby learning energy run delivery
net popular term film stories put computers journal reports co try welcome central images president notice god
original head radio until cell color self council away includes track australia discussion archive once others
entertainment agreement format least society months log safety friends sure faq trade edition cars messages
marketing tell further updated association able having provides david fun already green studies close common drive
specific several gold feb living sep collection called short arts lot ask display limited powered solutions means
director daily beach past natural whether due et electronics five upon period planning database says official
weather mar land average done technical window france pro region island record direct microsoft conference
environment records st district calendar costs style url front statement update parts aug ever downloads early miles
sound resource present applications either ago document word works material bill apr written talk federal hosting
rules final adult tickets thing centre requirements via cheap kids finance true minutes else mark third rock gifts
europe reading topics bad individual tips plus auto cover usually edit together videos percent fast function fact
unit getting global tech meet far economic en player projects lyrics often subscribe submit germany amount watch
included feel though bank risk thanks everything deals various words linux jul production commercial james weight
town heart advertising received choose treatment newsletter archives points knowledge magazine error camera jun girl
currently construction toys registered clear golf receive domain methods chapter makes protection policies loan wide
beauty manager india position taken sort listings models michael known half cases step engineering florida simple
quick none wireless license paul friday lake whole annual published later basic sony shows corporate google church
method purchase customers active response practice hardware figure materials fire holiday chat enough designed along
among death writing speed html countries loss face brand discount higher effects created remember standards oil bit
yellow political increase advertise kingdom base near environmental thought stuff french storage oh japan doing
loans shoes entry stay nature orders availability africa summary turn mean growth notes agency king monday european
activity copy although drug pics western income force cash employment overall bay river commission ad package
contents seen players engine port album regional stop supplies started administration bar institute views plans
double dog build screen exchange types soon sponsored lines electronic continue across benefits needed season apply
someone held ny anything printer condition effective believe organization effect asked eur mind sunday selection
'''.split()


# rows per MiB asked for --data text, measured: 2000 gave 80 MiB for 64 (pg_database_size), 3000 gave 73 MiB
# of InnoDB for 64
PER_MIB_PG = 1750
PER_MIB_MY = 2650


def pg_word(seed):
    """SQL for one of WORDS (the array ``w`` of the query) chosen by the integer expression ``seed``."""
    return ("w[1 + floor(power(((hashint8((%s)::bigint) & 2147483647) %% 10007) / 10007.0::float8, 2) * %d)::int]"
            % (seed, len(WORDS)))


def my_word(seed):
    return "ELT(1 + FLOOR(POW((CRC32(%s) %% 10007) / 10007, 2) * %d), %s)" % (
        seed, len(WORDS), ', '.join("'%s'" % w for w in WORDS))


def pg_words(seed, count):
    return "concat_ws(' ', %s)" % ', '.join(pg_word('(%s) * 64 + %d' % (seed, k)) for k in range(count))


def my_words(seed, count):
    return "CONCAT_WS(' ', %s)" % ', '.join(my_word('(%s) * 64 + %d' % (seed, k)) for k in range(count))


def pg_text_sql(n):
    """The text rows: customers, products, orders and order lines for ``n`` orders."""
    c, p = n // 20, n // 50
    words = "(SELECT ARRAY[%s]::text[] AS w) words" % ', '.join("'%s'" % w for w in WORDS)
    return '''
CREATE TABLE customer (id bigserial PRIMARY KEY, email varchar(254) UNIQUE, first_name varchar(150),
                       last_name varchar(150), date_joined timestamptz, is_active boolean);
CREATE TABLE product (id bigserial PRIMARY KEY, sku varchar(32) UNIQUE, title varchar(200), description text,
                      price numeric(10,2), image bytea);
CREATE TABLE "order" (id bigserial PRIMARY KEY, uuid uuid, customer_id bigint REFERENCES customer(id),
                      status varchar(10), total numeric(10,2), created timestamptz, shipping_address varchar(255),
                      note text, metadata jsonb);
CREATE TABLE order_line (id bigserial PRIMARY KEY, order_id bigint REFERENCES "order"(id),
                         product_id bigint REFERENCES product(id), quantity int, unit_price numeric(10,2));
INSERT INTO customer(email, first_name, last_name, date_joined, is_active)
    SELECT {w1} || '.' || {w2} || g || '@example.org', initcap({w1}), initcap({w2}),
           now() - g * interval '1 minute', g % 7 > 0 FROM generate_series(1, {c}) g, {words};
INSERT INTO product(sku, title, price, description, image)
    SELECT 'SKU-' || g, initcap({title}), (hashint8(g) & 65535) / 100.0, {description},
           decode(md5(g::text) || md5((g + 1)::text), 'hex') FROM generate_series(1, {p}) g, {words};
INSERT INTO "order"(uuid, customer_id, status, total, created, shipping_address, note, metadata)
    SELECT md5(g::text)::uuid, g % {c} + 1, (ARRAY['new', 'paid', 'shipped', 'refunded'])[g % 4 + 1],
           (hashint8(g) & 1048575) / 100.0, now() - g * interval '1 second',
           ((hashint8(g) & 255) + 1) || ' ' || initcap({w1}) || ' Street, ' || lpad(((hashint8(g + 1) & 65535) % 99999)::text, 5, '0')
               || ' ' || initcap({w3}),
           {note},
           jsonb_build_object('source', (ARRAY['web', 'app', 'pos'])[g % 3 + 1], 'campaign', {w2} || '-' || g % 97,
                              'items', g % 9 + 1, 'gift', g % 5 = 0)
    FROM generate_series(1, {n}) g, {words};
INSERT INTO order_line(order_id, product_id, quantity, unit_price)
    SELECT g % {n} + 1, g % {p} + 1, g % 9 + 1, (hashint8(g) & 65535) / 100.0 FROM generate_series(1, {n} * 2) g;
CREATE INDEX ON "order"(customer_id);
CREATE INDEX ON "order"(created);
CREATE INDEX ON order_line(order_id);
'''.format(n=n, c=c, p=p, words=words, w1=pg_word('g'), w2=pg_word('g + 1'), w3=pg_word('g + 2'),
           title=pg_words('g', 3), description=pg_words('g', 40), note=pg_words('g', 16))


def my_text_sql(n):
    c = max(1000, n // 20)
    return '''
CREATE TABLE customer (id BIGINT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(254) UNIQUE, first_name VARCHAR(150),
                       last_name VARCHAR(150), date_joined DATETIME(6), is_active TINYINT(1)) ENGINE=InnoDB;
CREATE TABLE `order` (id BIGINT PRIMARY KEY AUTO_INCREMENT, uuid CHAR(32), customer_id BIGINT, status VARCHAR(10),
                      total DECIMAL(10,2), created DATETIME(6), shipping_address VARCHAR(255), note LONGTEXT,
                      metadata LONGTEXT, INDEX (customer_id), INDEX (created)) ENGINE=InnoDB;
INSERT INTO customer(email, first_name, last_name, date_joined, is_active)
    SELECT CONCAT({w1}, '.', {w2}, seq, '@example.org'), {w1}, {w2}, NOW(6) - INTERVAL seq MINUTE, seq % 7 > 0
    FROM seq_1_to_{c};
INSERT INTO `order`(uuid, customer_id, status, total, created, shipping_address, note, metadata)
    SELECT MD5(seq), seq % {c} + 1, ELT(seq % 4 + 1, 'new', 'paid', 'shipped', 'refunded'),
           (CRC32(seq) % 100000) / 100, NOW(6) - INTERVAL seq SECOND,
           CONCAT(CRC32(seq) % 255 + 1, ' ', {w1}, ' Street, ', LPAD(CRC32(seq + 1) % 99999, 5, '0'), ' ', {w3}),
           {note},
           CONCAT('{{"source": "', ELT(seq % 3 + 1, 'web', 'app', 'pos'), '", "campaign": "', {w2}, '-', seq % 97,
                  '", "items": ', seq % 9 + 1, ', "gift": ', IF(seq % 5 = 0, 'true', 'false'), '}}')
    FROM seq_1_to_{n}
'''.format(n=n, c=c, w1=my_word('seq'), w2=my_word('seq + 1'), w3=my_word('seq + 2'), note=my_words('seq', 16))


PG_DIGESTS_SQL = '''
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

MY_DIGESTS_SQL = '''
CREATE TABLE customer (id BIGINT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(100) UNIQUE, name VARCHAR(100),
                       joined DATETIME) ENGINE=InnoDB;
CREATE TABLE `order` (id BIGINT PRIMARY KEY AUTO_INCREMENT, customer_id BIGINT, status VARCHAR(10),
                      note VARCHAR(200), placed DATETIME, INDEX (customer_id)) ENGINE=InnoDB;
INSERT INTO customer(email, name, joined) SELECT CONCAT('c', seq, '@example.org'), CONCAT('Kundé ', MD5(seq)),
    NOW() - INTERVAL seq MINUTE FROM seq_1_to_{c};
INSERT INTO `order`(customer_id, status, note, placed) SELECT seq % {c} + 1, ELT(seq % 3 + 1, 'new', 'paid', 'shipped'),
    CONCAT(MD5(seq), ' ', MD5(seq * 7), ' ', MD5(seq * 13)), NOW() - INTERVAL seq SECOND FROM seq_1_to_{n};
'''


def pg_generate(server, db, mib, kind='text'):
    server.create_database(db)
    # rows per MiB asked, measured: digests 1950 gave 733 MiB for 1024, so 2720 lands near mib; text PER_MIB_PG
    n = max(20000, int(mib * (2720 if kind == 'digests' else PER_MIB_PG)))
    with server.connect(db) as con:
        con.execute(PG_DIGESTS_SQL.format(n=n) if kind == 'digests' else pg_text_sql(n))
        con.execute('VACUUM ANALYZE')
    return server.sql('SELECT pg_database_size(%s)', db, (db,))[0][0]


def my_generate(server, db, mib, kind='text'):
    server.create_database(db)
    # rows per MiB asked, measured: digests 3300 gave 332-348 MiB of InnoDB for 512; text PER_MIB_MY
    n = max(10000, int(mib * (4900 if kind == 'digests' else PER_MIB_MY)))
    sql = MY_DIGESTS_SQL.format(n=n, c=max(1000, n // 20)) if kind == 'digests' else my_text_sql(n)
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            for stmt in sql.split(';'):
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
        size = pg_generate(server, 'bench', args.pg_mib, args.data)
        print('postgresql: database of %.0f MiB (%s rows)' % (size / MIB, args.data), flush=True)
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
            ('raw', lambda: shell('%s -Fc -Z0 bench | %s > %s/raw.dump.zst' % (pg_dump, ZSTD_TEXT, work), env)),
            ('raw durable', lambda: shell('%s -Fc -Z0 bench | %s > %s/raw.dump.zst && sync %s/raw.dump.zst'
                                          % (pg_dump, ZSTD_TEXT, work, work), env)),
            ('same', lambda: snap(same_root, table_stats='none')),
            ('naive', lambda: shell('%s bench | gzip > %s/naive.sql.gz' % (pg_dump, work), env)),
            ('default', lambda: snap(root)),
        ], args.rounds)
        same, raw_same, paired = pick(runs, 'same', 'raw')
        raw_bytes = size_of(os.path.join(work, 'raw.dump.zst'))
        rep.add('postgresql', 'snapshot, same settings (custom, zstd -3 text params)', same, raw_same, 'pg_dump -Fc -Z0 | zstd -T0',
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
        size = my_generate(server, 'bench', args.my_mib, args.data)
        print('mysql: database of %.0f MiB (%s rows)' % (size / MIB, args.data), flush=True)
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
            ('raw', lambda: shell('%s %s bench | %s > %s/raw.sql.zst' % (dump, flags, ZSTD_TEXT, work))),
            ('raw durable', lambda: shell('%s %s bench | %s > %s/raw.sql.zst && sync %s/raw.sql.zst'
                                          % (dump, flags, ZSTD_TEXT, work, work))),
            ('same', lambda: snap(same_root, table_stats='none')),
            ('naive', lambda: shell('%s bench | gzip > %s/naive.sql.gz' % (dump, work))),
            ('default', lambda: snap(root)),
        ], args.rounds)
        same, raw_same, paired = pick(runs, 'same', 'raw')
        raw_bytes = size_of(os.path.join(work, 'raw.sql.zst'))
        rep.add('mysql', 'snapshot, same settings (zstd -3 text params)', same, raw_same, 'mariadb-dump | zstd -T0',
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
    p.add_argument('--data', choices=['text', 'digests'], default='text',
                   help='PostgreSQL and MariaDB rows: text (Django-like, the default) or digests (hex MD5s, the '
                        'rows of the runs before 2026-12-07)')
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
