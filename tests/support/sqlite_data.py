# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A realistic SQLite database for round-trip tests, and independent ways to compare two of them."""

from __future__ import annotations

import hashlib
import sqlite3

SCHEMA = '''
CREATE TABLE customer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT,
    joined TEXT
);
CREATE TABLE product (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sku TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    price REAL,
    image BLOB
);
CREATE TABLE "order" (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customer(id),
    note TEXT
);
CREATE TABLE order_item (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES "order"(id) ON DELETE CASCADE,
    product_id INTEGER NOT NULL REFERENCES product(id),
    quantity INTEGER NOT NULL
);
CREATE INDEX order_item_order ON order_item(order_id);
CREATE VIEW order_totals AS
    SELECT o.id AS order_id, sum(i.quantity * p.price) AS total
    FROM "order" o JOIN order_item i ON i.order_id = o.id JOIN product p ON p.id = i.product_id
    GROUP BY o.id;
CREATE TRIGGER product_title_nonempty BEFORE INSERT ON product
    WHEN NEW.title = '' BEGIN SELECT RAISE(ABORT, 'empty title'); END;
'''


def make_shop(path, customers=200, products=50, orders=400, wal=True):
    con = sqlite3.connect(path)
    if wal:
        con.execute('PRAGMA journal_mode=WAL')
    con.executescript(SCHEMA)
    con.executemany('INSERT INTO customer(email, name, joined) VALUES (?, ?, ?)',
                    [('c%d@example.org' % i, None if i % 17 == 0 else 'Kund\u00e9 \u2603 %d \U0001F600' % i,
                      '2026-01-%02d' % (i % 28 + 1)) for i in range(customers)])
    con.executemany('INSERT INTO product(sku, title, price, image) VALUES (?, ?, ?, ?)',
                    [('SKU-%04d' % i, 'Product \u00fc %d' % i, None if i % 11 == 0 else i * 1.25,
                      None if i % 7 == 0 else bytes(range(256)) * (i % 5 + 1)) for i in range(products)])
    con.executemany('INSERT INTO "order"(customer_id, note) VALUES (?, ?)',
                    [((i % customers) + 1, None if i % 3 else "it's \"quoted\"\n\ttabbed") for i in range(orders)])
    con.executemany('INSERT INTO order_item(order_id, product_id, quantity) VALUES (?, ?, ?)',
                    [((i % orders) + 1, (i % products) + 1, i % 9 + 1) for i in range(orders * 3)])
    con.commit()
    con.close()


def schema(path):
    con = sqlite3.connect(path)
    try:
        return sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall(),
                      key=repr)
    finally:
        con.close()


def content_digest(path):
    """table -> sha256 of the sorted rows, computed independently of the collection's own checksum."""
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND (name NOT LIKE 'sqlite_%' OR name = 'sqlite_sequence') "
            "ORDER BY name")]  # sqlite_sequence: where each AUTOINCREMENT table goes on counting
        out = {}
        for t in tables:
            rows = sorted(repr(r) for r in con.execute('SELECT * FROM "%s"' % t.replace('"', '""')))
            out[t] = hashlib.sha256('\n'.join(rows).encode()).hexdigest()
        return out
    finally:
        con.close()


def mutate(path):
    """Everything a bad deploy does: change, delete, drop, add a table, add a column and an index."""
    con = sqlite3.connect(path)
    con.execute('PRAGMA foreign_keys=OFF')
    con.execute("UPDATE customer SET name = 'overwritten' WHERE id % 2 = 0")
    con.execute('UPDATE sqlite_sequence SET seq = seq + 1000')  # ids handed out and deleted since
    con.execute('DELETE FROM order_item WHERE id % 3 = 0')
    con.execute('DROP VIEW order_totals')
    con.execute('DROP TABLE product')
    con.execute('CREATE TABLE shipment (id INTEGER PRIMARY KEY, carrier TEXT)')
    con.execute("INSERT INTO shipment(carrier) VALUES ('dhl')")
    con.execute('ALTER TABLE customer ADD COLUMN loyalty INTEGER DEFAULT 0')
    con.execute('CREATE INDEX customer_loyalty ON customer(loyalty)')
    con.commit()
    con.close()
