# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: what a MySQL/MariaDB database holds, read through a PyMySQL
connection - per-table row counts and content checksums computed by the server, the views, and
the definers of stored objects.

The checksum is ``_engine_base.RowDigest`` done in SQL: per row, sha256 of an unambiguous text
of the row; the first 8 bytes as an unsigned number; summed over the table modulo 2**64 (the
server sums exactly as DECIMAL, Python takes the modulo). Equal row multisets give equal
checksums whatever the row order, and nothing but two integers leaves the server per table.
"""

from __future__ import annotations

import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import excluded_stats

# Tables with rows to count; MariaDB's SEQUENCE objects are tables too but hold one state row.
BASE_TABLE_TYPES = ('BASE TABLE', 'SYSTEM VERSIONED')

# Types whose CAST(... AS CHAR) is short and exact; every other type is hashed per column, so
# a 1 GiB BLOB is never copied into the row text (which the server caps at max_allowed_packet).
_TEXT_TYPES = frozenset((
    'tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint', 'decimal', 'numeric', 'float', 'double',
    'real', 'date', 'datetime', 'timestamp', 'time', 'year',
))


# The InnoDB tablespace views: MariaDB's, then MySQL 8's. Reading them needs the PROCESS privilege.
_TABLESPACE_VIEWS = ('INNODB_SYS_TABLESPACES', 'INNODB_TABLESPACES')
_PLAIN_NAME = re.compile(r'^[A-Za-z0-9_]+$')  # a database name its directory spells the same way


def database_sizes(cur, name, errors):
    """``(data bytes, index bytes)`` of database ``name``, for the snapshot's size estimate.

    ``information_schema.TABLES`` gives InnoDB's sizes from its statistics, which lag behind a bulk load
    (measured on MariaDB 10.11: 2.6 MB for a table of 24 MiB right after the load, 25.7 MB ten seconds
    later). Where the tables' files can be read (the PROCESS privilege, one ``.ibd`` per table), the InnoDB
    data is the larger of the statistics and the files' size less the indexes and free space they record.
    ``errors``: the driver's exception class; a view that cannot be read is skipped."""
    try:
        cur.execute('SET SESSION information_schema_stats_expiry = 0')  # MySQL 8+ caches the sizes a day
    except errors:
        pass  # MariaDB has no such cache (nor the variable)
    cur.execute('SELECT ENGINE, COALESCE(SUM(DATA_LENGTH), 0), COALESCE(SUM(INDEX_LENGTH), 0), '
                'COALESCE(SUM(DATA_FREE), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s '
                'GROUP BY ENGINE', (name,))
    data = index = innodb_data = innodb_rest = 0
    for engine, data_length, index_length, data_free in cur.fetchall():
        data, index = data + int(data_length), index + int(index_length)
        if (engine or '').lower() == 'innodb':
            innodb_data, innodb_rest = int(data_length), int(index_length) + int(data_free)
    files = innodb_file_bytes(cur, name, errors) if innodb_data or innodb_rest else None
    if files is not None and files - innodb_rest > innodb_data:
        data += files - innodb_rest - innodb_data
    return data, index


def innodb_file_bytes(cur, name, errors):
    """Bytes of the per-table tablespace files of database ``name``, or None where they cannot be read."""
    if not _PLAIN_NAME.match(name):
        return None  # other characters are encoded in file names (@002d ...)
    pattern = name.replace('_', '\\_') + '/%'
    for view in _TABLESPACE_VIEWS:
        try:
            cur.execute('SELECT COALESCE(SUM(FILE_SIZE), 0), COUNT(*) FROM information_schema.%s '
                        'WHERE NAME LIKE %%s' % view, (pattern,))
            size, count = cur.fetchone()
        except errors:
            continue  # not this server's view, or no PROCESS privilege
        return int(size) if count else None
    return None


def quote_ident(name):
    return '`%s`' % name.replace('`', '``')


def column_expr(name, data_type):
    """One column as text that cannot be confused with another value of the row: 'n' for NULL,
    else 'v' and the value (numbers, dates) or the hex sha256 of its bytes (everything else).
    Neither form contains the ',' that separates columns."""
    col = quote_ident(name)
    if data_type.lower() in _TEXT_TYPES:
        value = 'CAST(%s AS CHAR)' % col
    else:
        value = 'SHA2(%s, 256)' % col
    return "IF(%s IS NULL, 'n', CONCAT('v', %s))" % (col, value)


def checksum_query(schema, table, columns):
    """SELECT rows, summed row hashes, rows hashed. ``columns`` is [(name, data_type)] in order.

    A row whose text comes out NULL (a function result over max_allowed_packet) would drop out of
    SUM silently; counting the hashed rows separately turns that into an error."""
    # CONCAT, not CONCAT_WS: CONCAT_WS skips a NULL part, CONCAT turns the row NULL, which is counted.
    row = 'CONCAT(%s)' % ", ',', ".join(column_expr(n, t) for n, t in columns)
    row_hash = 'CAST(CONV(LEFT(SHA2(%s, 256), 16), 16, 10) AS UNSIGNED)' % row
    return 'SELECT COUNT(*), COALESCE(SUM(h), 0), COUNT(h) FROM (SELECT %s AS h FROM %s.%s) AS rows_hashed' % (
        row_hash, quote_ident(schema), quote_ident(table))


def count_query(schema, table):
    return 'SELECT COUNT(*) FROM %s.%s' % (quote_ident(schema), quote_ident(table))


class StatsError(Exception):
    pass


def _fetch(cur, sql, params=None):
    cur.execute(sql, params)
    return cur.fetchall()


def base_tables(cur, schema):
    rows = _fetch(cur, 'SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN '
                       '(%s) ORDER BY TABLE_NAME' % ('%s', ', '.join(['%s'] * len(BASE_TABLE_TYPES))),
                  (schema,) + BASE_TABLE_TYPES)
    return [r[0] for r in rows]


def columns_of(cur, schema):
    """{table: [(column, data_type)]} in column order, for every table of ``schema``."""
    out = {}
    for table, column, data_type in _fetch(
            cur, 'SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s '
                 'ORDER BY TABLE_NAME, ORDINAL_POSITION', (schema,)):
        out.setdefault(table, []).append((column, data_type))
    return out


def foreign_keys(cur, schema):
    """Foreign keys between the tables of ``schema``: (referencing table, 'foreign key `name`', referenced table)."""
    return [(r[0], 'foreign key %s' % quote_ident(r[1]), r[2]) for r in _fetch(
        cur, 'SELECT TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS '
             'WHERE CONSTRAINT_SCHEMA = %s AND UNIQUE_CONSTRAINT_SCHEMA = %s', (schema, schema))]


def table_stats(cur, schema, mode, excluded=()):
    """``{table: {'rows': n, 'checksum': hex16 | None}}`` of every base table, in the caller's
    transaction (the caller opens a consistent snapshot first when it matters). The tables in ``excluded``
    (whose rows the dump leaves out) are recorded empty, as the dump holds them, without reading them."""
    if mode == 'none':
        return {}
    # A TIMESTAMP prints in the session's zone: pinned to UTC, so the digest of the same row is the same on
    # a server in another zone, or after the server's zone changed (the dump writes UTC too).
    cur.execute("SET SESSION time_zone = '+00:00'")
    tables = base_tables(cur, schema)
    columns = columns_of(cur, schema) if mode == 'checksums' else {}
    stats = {}
    for table in tables:
        if table in excluded:
            stats[table] = excluded_stats(mode)
            continue
        if mode == 'counts':
            stats[table] = {'rows': int(_fetch(cur, count_query(schema, table))[0][0]), 'checksum': None}
            continue
        rows, total, hashed = _fetch(cur, checksum_query(schema, table, columns[table]))[0]
        if rows != hashed:
            raise StatsError('table %s: %d of %d rows could not be checksummed (a value larger than the server\'s '
                             'max_allowed_packet?); use table_stats: counts' % (table, rows - hashed, rows))
        stats[table] = {'rows': int(rows), 'checksum': '%016x' % (int(total) % (1 << 64))}
    return stats


def views(cur, schema):
    return [r[0] for r in _fetch(cur, 'SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s '
                                      'ORDER BY TABLE_NAME', (schema,))]


def definers(cur, schema):
    """Sorted distinct 'user@host' definers of the views, routines, triggers and events of ``schema``."""
    found = set()
    for sql in ('SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s',
                'SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s',
                'SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s',
                'SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s'):
        found.update(r[0] for r in _fetch(cur, sql, (schema,)) if r[0])
    return sorted(found)


def split_account(account):
    """'user@host' -> (user, host); a role (no '@') -> (role, '')."""
    if '@' in account:
        user, host = account.rsplit('@', 1)
        return user, host
    return account, ''
