# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A realistic MySQL/MariaDB database for round-trip tests, independent ways to compare two of
them, and wrappers that stand in for a misbehaving dump tool."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile

# Every kind of object a Django deploy (and its DBA) leaves in a database. `order` is a reserved
# word and `odd name é` needs quoting everywhere; legacy_note is latin1 inside a utf8mb4 database.
SCHEMA = [
    "ALTER DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    """CREATE TABLE customer (
        id INT AUTO_INCREMENT PRIMARY KEY,
        email VARCHAR(190) NOT NULL UNIQUE,
        name VARCHAR(100) NULL,
        joined DATETIME(6) NULL,
        seen TIMESTAMP NULL,
        balance DECIMAL(12, 2) NULL,
        score DOUBLE NULL,
        flags BIT(8) NULL
    ) ENGINE=InnoDB""",
    """CREATE TABLE product (
        id INT AUTO_INCREMENT PRIMARY KEY,
        sku VARCHAR(32) NOT NULL,
        title VARCHAR(200) NOT NULL,
        price DECIMAL(10, 2) NULL,
        image LONGBLOB NULL,
        attrs JSON NULL,
        KEY product_title (title)
    ) ENGINE=InnoDB""",
    """CREATE TABLE `order` (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        customer_id INT NOT NULL,
        note TEXT NULL,
        status ENUM('new', 'paid', 'shipped') NOT NULL DEFAULT 'new',
        CONSTRAINT order_customer FOREIGN KEY (customer_id) REFERENCES customer (id)
    ) ENGINE=InnoDB""",
    """CREATE TABLE order_item (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        order_id BIGINT NOT NULL,
        product_id INT NOT NULL,
        quantity INT NOT NULL,
        KEY oi_order (order_id),
        CONSTRAINT oi_order_fk FOREIGN KEY (order_id) REFERENCES `order` (id) ON DELETE CASCADE,
        CONSTRAINT oi_product_fk FOREIGN KEY (product_id) REFERENCES product (id)
    ) ENGINE=InnoDB""",
    """CREATE TABLE legacy_note (
        id INT PRIMARY KEY,
        body VARCHAR(200) NULL
    ) ENGINE=InnoDB CHARACTER SET latin1 COLLATE latin1_swedish_ci""",
    """CREATE TABLE audit_log (
        id INT AUTO_INCREMENT PRIMARY KEY,
        msg VARCHAR(200) NOT NULL,
        at DATETIME NOT NULL DEFAULT '2026-01-01 00:00:00'
    ) ENGINE=InnoDB""",
    "CREATE TABLE `odd name é` (k VARCHAR(10) PRIMARY KEY, v INT NULL) ENGINE=InnoDB",
    """CREATE VIEW order_totals AS
        SELECT o.id AS order_id, SUM(i.quantity * p.price) AS total
        FROM `order` o JOIN order_item i ON i.order_id = o.id JOIN product p ON p.id = i.product_id
        GROUP BY o.id""",
    """CREATE TRIGGER product_audit AFTER INSERT ON product FOR EACH ROW
        INSERT INTO audit_log (msg) VALUES (CONCAT('product ', NEW.sku))""",
    """CREATE PROCEDURE add_customer(IN p_email VARCHAR(190))
        BEGIN
            INSERT INTO customer (email) VALUES (p_email);
        END""",
    """CREATE FUNCTION price_with_tax(p DECIMAL(10, 2)) RETURNS DECIMAL(10, 2) DETERMINISTIC
        RETURN p * 1.19""",
    """CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE
        DO DELETE FROM audit_log WHERE at < NOW() - INTERVAL 30 DAY""",
]


def make_shop(server, db, customers=300, products=60, orders=500, seed=7):
    rnd = random.Random(seed)
    for statement in SCHEMA:
        server.sql(statement.format(db='`%s`' % db), database=db)
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            cur.executemany(
                'INSERT INTO customer (email, name, joined, seen, balance, score, flags) VALUES (%s, %s, %s, %s, %s, %s, %s)',
                [('c%d@example.org' % i,
                  None if i % 17 == 0 else 'Kund\u00e9 \u2603 %d \U0001F600\U0001F680' % i,
                  None if i % 13 == 0 else '2026-01-%02d 10:11:12.%06d' % (i % 28 + 1, i),
                  '2026-02-%02d 01:02:03' % (i % 28 + 1),
                  None if i % 11 == 0 else '%d.%02d' % (i * 3, i % 100),
                  None if i % 7 == 0 else i / 7.0,
                  None if i % 5 == 0 else bytes([i % 256]))
                 for i in range(customers)])
            # Deleted tail: AUTO_INCREMENT stays past max(id), and must after a restore too.
            cur.execute('DELETE FROM customer WHERE id > %s', (customers - 5,))
            cur.executemany(
                'INSERT INTO product (sku, title, price, image, attrs) VALUES (%s, %s, %s, %s, %s)',
                [('SKU-%04d' % i, 'Product \u00fc %d \U0001F4E6' % i, None if i % 9 == 0 else '%d.25' % i,
                  None if i % 7 == 0 else (bytes(range(256)) * (i % 5 + 1) + b'\x00\x27\x22\x5c' +
                                           rnd.randbytes(40000 if i % 10 == 1 else 50)),
                  None if i % 4 == 0 else '{"color": "r\u00f6d", "sizes": [%d, %d]}' % (i, i + 1))
                 for i in range(products)])
            cur.executemany('INSERT INTO `order` (customer_id, note, status) VALUES (%s, %s, %s)',
                            [((i % (customers - 5)) + 1, None if i % 3 else "it's \"quoted\"\n\ttabbed \\ back",
                              ('new', 'paid', 'shipped')[i % 3]) for i in range(orders)])
            cur.executemany('INSERT INTO order_item (order_id, product_id, quantity) VALUES (%s, %s, %s)',
                            [((i % orders) + 1, (i % products) + 1, i % 9 + 1) for i in range(orders * 3)])
            cur.executemany('INSERT INTO legacy_note (id, body) VALUES (%s, %s)',
                            [(i, None if i % 6 == 0 else 'Gr\u00fc\u00dfe \u00e9t\u00e9 %d' % i) for i in range(40)])
            cur.executemany('INSERT INTO `odd name é` (k, v) VALUES (%s, %s)',
                            [('k%d' % i, None if i % 2 else i) for i in range(10)])
            cur.execute('SELECT VERSION()')
            if 'mariadb' in cur.fetchone()[0].lower():
                # MariaDB's SEQUENCE object (MySQL has none): its state must come back with a restore too
                cur.execute('CREATE SEQUENCE invoice_no START WITH 1000 INCREMENT BY 1 CACHE 10')
                for dummy in range(3):
                    cur.execute('SELECT NEXTVAL(invoice_no)')
    finally:
        con.close()


def mutate(server, db):
    """Everything a bad deploy does: change, delete, drop, add a table, a column and an index."""
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            for statement in [
                    'SET FOREIGN_KEY_CHECKS = 0',
                    "UPDATE customer SET name = 'overwritten' WHERE id % 2 = 0",
                    'DELETE FROM order_item WHERE id % 3 = 0',
                    'UPDATE legacy_note SET body = NULL WHERE id < 10',
                    'DROP VIEW order_totals',
                    'DROP TABLE product',
                    'CREATE TABLE shipment (id INT PRIMARY KEY, carrier VARCHAR(20))',
                    "INSERT INTO shipment VALUES (1, 'dhl')",
                    'ALTER TABLE customer ADD COLUMN loyalty INT DEFAULT 0',
                    'CREATE INDEX customer_loyalty ON customer (loyalty)',
                    'DROP PROCEDURE add_customer',
                    "INSERT INTO customer (email) VALUES ('late@example.org')"]:
                cur.execute(statement)
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                        "AND TABLE_TYPE = 'SEQUENCE'", (db,))
            for (sequence,) in cur.fetchall():  # numbers handed out since
                cur.execute('SELECT SETVAL(`%s`, 5000)' % sequence.replace('`', '``'))
    finally:
        con.close()


# MySQL 8+ shows a column that a CREATE TABLE declared with a collation alone as "COLLATE c" the first time and,
# once that statement (as mysqldump writes it) has been run again, as "CHARACTER SET cs COLLATE c": the same
# column (the collation names its character set), printed two ways. A plain `mysqldump | mysql` does exactly
# the same. So a character set that the collation after it implies is left out before comparing.
_IMPLIED_CHARSET = re.compile(r'CHARACTER SET (\w+) (COLLATE \1_\w+)')


def schema(server, db, rename=None):
    """SHOW CREATE of every object, and the database's own character set and collation. ``rename``
    maps another database's name back to ``db``'s where a statement names it."""
    out = {}
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            cur.execute('SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA '
                        'WHERE SCHEMA_NAME = %s', (db,))
            out['database'] = cur.fetchone()
            cur.execute('SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s', (db,))
            for name, kind in cur.fetchall():
                cur.execute('SHOW CREATE %s `%s`' % ('VIEW' if kind == 'VIEW' else 'TABLE', name.replace('`', '``')))
                name_, text = cur.fetchone()[:2]
                out['%s %s' % (kind, name)] = (name_, _IMPLIED_CHARSET.sub(r'\2', text))
            for kind, sql in (('PROCEDURE', "SHOW PROCEDURE STATUS WHERE Db = %s"),
                              ('FUNCTION', "SHOW FUNCTION STATUS WHERE Db = %s"),
                              ('TRIGGER', 'SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s'),
                              ('EVENT', 'SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s')):
                cur.execute(sql, (db,))
                names = [r[1] if kind in ('PROCEDURE', 'FUNCTION') else r[0] for r in cur.fetchall()]
                for name in names:
                    cur.execute('SHOW CREATE %s `%s`' % (kind, name))
                    row = cur.fetchone()
                    # A trigger's creation time is not part of its definition.
                    out['%s %s' % (kind, name)] = tuple(v for v, d in zip(row, cur.description) if d[0] != 'Created')
    finally:
        con.close()
    if rename:
        out = dict((k, tuple(str(x).replace('`%s`' % rename, '`%s`' % db) for x in v)) for k, v in out.items())
    else:
        out = dict((k, tuple(str(x) for x in v)) for k, v in out.items())
    return out


def content_digest(server, db):
    """table -> sha256 of its sorted rows as PyMySQL returns them; nothing of the collection's own
    checksum SQL is used."""
    out = {}
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            # a MariaDB SEQUENCE reads as its one state row (the next value, cache, bounds)
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                        "AND TABLE_TYPE IN ('BASE TABLE', 'SEQUENCE')", (db,))
            for (table,) in cur.fetchall():
                cur.execute('SELECT * FROM `%s`' % table.replace('`', '``'))
                rows = sorted(repr(r) for r in cur.fetchall())
                out[table] = hashlib.sha256('\n'.join(rows).encode('utf-8')).hexdigest()
    finally:
        con.close()
    return out


def next_auto_increment(server, db, table):
    return server.sql('SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s '
                      'AND TABLE_NAME = %s', params=(db, table))[0][0]


def fill_blobs(server, db, mib):
    """A table of ``mib`` MiB of incompressible rows: a dump that takes a while."""
    server.sql('CREATE TABLE bulk (id INT AUTO_INCREMENT PRIMARY KEY, payload LONGBLOB)', database=db)
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            chunk = os.urandom(1024 * 1024)
            for i in range(mib):
                cur.execute('INSERT INTO bulk (payload) VALUES (%s)', (chunk[i:] + chunk[:i],))
    finally:
        con.close()


@contextlib.contextmanager
def server_requiring_tls(make):
    """A started server, made by ``make(extra_args)``, that refuses every TCP connection without TLS; its
    certificate is signed by the tests' CA (``server.files``: ca, other-ca, server, server-key)."""
    certdir = tempfile.mkdtemp(prefix='djangoops-tls-', dir='/tmp')
    try:
        files = make_tls_files(certdir)
        server = make(['--ssl-ca=' + files['ca'], '--ssl-cert=' + files['server'], '--ssl-key=' + files['server-key'],
                       '--require-secure-transport=ON'])
        server.files = files
        try:
            yield server.start()
        finally:
            server.destroy()
    finally:
        shutil.rmtree(certdir, ignore_errors=True)


def tls_outcomes(server, flavour, client, cases, workdir):
    """Run ``client`` (a mysql or mariadb program) once per case ``{name: connection options}`` with the option
    file the engine writes for a client of ``flavour``; ``{name: (exit status, output)}`` of its query for the
    session's TLS version. The engine's module_utils must be importable (COLLECTIONS_PATH on sys.path)."""
    from ansible_collections.djangoops.maintenance.plugins.module_utils import _mysql_client as mc  # pylint: disable=import-outside-toplevel
    endpoint = {'host': server.host, 'port': server.port}
    outcomes = {}
    for name, conn in cases.items():
        cnf = os.path.join(str(workdir), name + '.cnf')
        with open(cnf, 'w', encoding='utf-8') as f:
            f.write(mc.option_file(flavour, endpoint, server.user, server.password, conn))
        os.chmod(cnf, 0o600)
        p = subprocess.run([client, '--defaults-extra-file=%s' % cnf, '--batch', '--skip-column-names', '-e',
                            "SHOW SESSION STATUS LIKE 'Ssl_version'"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           check=False)
        outcomes[name] = (p.returncode, (p.stdout + p.stderr).decode('utf-8', 'replace'))
    return outcomes


def make_tls_files(dirpath, host='127.0.0.1'):
    """A CA, a server certificate for ``host`` signed by it, and an unrelated CA; readable by the
    server's ``mysql`` user (throwaway test keys)."""
    def openssl(*args):
        subprocess.run(['openssl'] + list(args), cwd=dirpath, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    for ca in ('ca', 'other-ca'):
        openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', ca + '.key', '-out', ca + '.pem',
                '-days', '2', '-subj', '/CN=djangoops test %s' % ca)
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj',
            '/CN=%s' % host)
    with open(os.path.join(dirpath, 'san.cnf'), 'w', encoding='ascii') as f:
        f.write('subjectAltName=IP:%s\n' % host)
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
            '-out', 'server.pem', '-days', '2', '-extfile', 'san.cnf')
    os.chmod(dirpath, 0o755)
    for name in os.listdir(dirpath):
        os.chmod(os.path.join(dirpath, name), 0o644)
    return dict((n, os.path.join(dirpath, n + '.pem')) for n in ('ca', 'other-ca', 'server')) | {
        'server-key': os.path.join(dirpath, 'server.key')}
