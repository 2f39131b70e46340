# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A realistic PostgreSQL database for round-trip tests (several schemas, foreign keys, indexes, a
sequence, unicode, bytea, NULLs, a view, a function with a trigger), what a bad deploy does to it,
and ways to compare two databases that do not rely on the collection's own checksums."""

from __future__ import annotations

import hashlib
import re
import subprocess

SCHEMA = r'''
CREATE SCHEMA billing;
CREATE SCHEMA audit;
CREATE TABLE public.customer (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    joined timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00',
    score double precision
);
CREATE TABLE public.product (
    id serial PRIMARY KEY,
    sku varchar(20) NOT NULL UNIQUE,
    title text NOT NULL,
    price numeric(10, 2),
    image bytea,
    attrs jsonb
);
CREATE TABLE public."order" (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES public.customer(id),
    note text,
    placed date
);
CREATE TABLE public.order_item (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES public."order"(id) ON DELETE CASCADE,
    product_id integer NOT NULL REFERENCES public.product(id),
    quantity integer NOT NULL CHECK (quantity > 0)
);
CREATE INDEX order_item_order_idx ON public.order_item(order_id);
CREATE SEQUENCE billing.invoice_number START 1000;
CREATE TABLE billing.invoice (
    number bigint PRIMARY KEY DEFAULT nextval('billing.invoice_number'),
    order_id bigint NOT NULL REFERENCES public."order"(id),
    amount numeric(12, 2) NOT NULL,
    issued timestamp
);
CREATE TABLE audit.log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text NOT NULL);
CREATE VIEW public.order_totals AS
    SELECT o.id AS order_id, sum(i.quantity * p.price) AS total
    FROM public."order" o JOIN public.order_item i ON i.order_id = o.id JOIN public.product p ON p.id = i.product_id
    GROUP BY o.id;
CREATE FUNCTION audit.record_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit.log(at, what) VALUES ('2026-02-02 02:02:02+00', 'invoice ' || NEW.number);
    RETURN NEW;
END $$;
CREATE TRIGGER invoice_audit AFTER INSERT ON billing.invoice FOR EACH ROW EXECUTE FUNCTION audit.record_invoice();
'''

DATA = r'''
INSERT INTO public.customer(email, name, joined, score)
    SELECT 'c' || g || '@example.org',
           CASE WHEN g % 17 = 0 THEN NULL ELSE 'Kundé ☃ ' || g || ' 😀 it''s "quoted"' || E'\n\ttabbed' END,
           timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour',
           CASE WHEN g % 5 = 0 THEN NULL ELSE g / 7.0 END
    FROM generate_series(1, {customers}) g;
INSERT INTO public.product(sku, title, price, image, attrs)
    SELECT 'SKU-' || lpad(g::text, 4, '0'), 'Produkt ü ' || g,
           CASE WHEN g % 11 = 0 THEN NULL ELSE g * 1.25 END,
           CASE WHEN g % 7 = 0 THEN NULL ELSE decode(repeat(md5(g::text), g % 5 + 1), 'hex') || '\x00ff00'::bytea END,
           jsonb_build_object('color', 'grün', 'n', g)
    FROM generate_series(1, {products}) g;
INSERT INTO public."order"(customer_id, note, placed)
    SELECT (g % {customers}) + 1, CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || g END, date '2026-03-01' + g % 30
    FROM generate_series(1, {orders}) g;
INSERT INTO public.order_item(order_id, product_id, quantity)
    SELECT (g % {orders}) + 1, (g % {products}) + 1, g % 9 + 1 FROM generate_series(1, {orders} * 3) g;
INSERT INTO billing.invoice(order_id, amount, issued)
    SELECT g, g * 3.5, timestamp '2026-04-01 12:00' + g * interval '1 minute' FROM generate_series(1, {orders} / 2) g;
'''


def make_shop(server, database, customers=300, products=60, orders=500):
    with server.connect(database) as con:
        con.execute(SCHEMA)
        con.execute(DATA.format(customers=customers, products=products, orders=orders))
        con.execute('ANALYZE')


def mutate(server, database):
    """Everything a bad deploy does: change and delete rows, drop a table, add a table, a column, an
    index, a schema and a sequence, and move a sequence on."""
    with server.connect(database) as con:
        con.execute("UPDATE public.customer SET name = 'overwritten' WHERE id % 2 = 0")
        con.execute('DELETE FROM public.order_item WHERE id % 3 = 0')
        con.execute("INSERT INTO billing.invoice(order_id, amount) SELECT g, 1 FROM generate_series(1, 20) g")
        con.execute('DROP VIEW public.order_totals')
        con.execute('ALTER TABLE public.order_item DROP CONSTRAINT order_item_product_id_fkey')
        con.execute('DROP TABLE public.product')
        con.execute('CREATE TABLE public.shipment (id serial PRIMARY KEY, carrier text)')
        con.execute("INSERT INTO public.shipment(carrier) VALUES ('dhl')")
        con.execute('ALTER TABLE public.customer ADD COLUMN loyalty integer DEFAULT 0')
        con.execute('CREATE INDEX customer_loyalty_idx ON public.customer(loyalty)')
        con.execute('CREATE SCHEMA later')
        con.execute('CREATE TABLE later.thing (id int)')
        con.execute('CREATE SEQUENCE public.added_seq')


def schema_dump(server, database):
    """``pg_dump --schema-only`` text, without the per-run \\restrict key."""
    out = subprocess.run([server.client_bindir + '/pg_dump', '--schema-only', '--host', server.sockdir, '--port',
                          str(server.port), '--username', server.superuser, '--dbname=' + database],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout.decode()
    return re.sub(r'(?m)^\\(un)?restrict .*$', '', out)


def user_tables(con):
    return [(r[0], r[1]) for r in con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()]


def content_digest(server, database):
    """"schema.table" -> sha256 of its rows as Python values, sorted: independent of the collection's
    server-side checksum (other hash, other rendering, client-side)."""
    out = {}
    with server.connect(database) as con:
        for schema, table in user_tables(con):
            rows = con.execute('SELECT * FROM "%s"."%s"' % (schema, table)).fetchall()
            text = '\n'.join(sorted(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in r))
                                    for r in rows))
            out['%s.%s' % (schema, table)] = (len(rows), hashlib.sha256(text.encode()).hexdigest())
    return out


def sequences(server, database):
    with server.connect(database) as con:
        return dict(((s, n), con.execute('SELECT last_value, is_called FROM "%s"."%s"' % (s, n)).fetchone())
                    for s, n in con.execute("SELECT sequence_schema, sequence_name FROM information_schema.sequences "
                                            "ORDER BY 1, 2").fetchall())


def databases(server):
    return sorted(r[0] for r in server.sql('SELECT datname FROM pg_database'))
