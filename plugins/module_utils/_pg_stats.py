# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: per-table row counts and content checksums of a PostgreSQL database,
computed on the server.

The checksum mirrors ``_engine_base.RowDigest``: the row count, and the sum modulo 2**64 of the
first 8 bytes of sha256 over each row's text form. A sum does not care about row order and the
server streams it in constant memory, so nothing but two numbers per table leaves the server.
A row's text form depends on session settings (time zone, date and float formats), which are
pinned here so a snapshot and a restore render the same row the same way.
"""

from __future__ import annotations

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import EngineError, excluded_stats
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_connect import error_text, psycopg, sql

CHECKSUM_ALGORITHM = 'sum64(sha256(row::text))'

# Leaf tables with their own rows (relkind 'r'), outside system schemas, not owned by an extension
# (pg_dump does not dump an extension's tables). Partitions are 'r' and counted one by one; the
# partitioned parent ('p') holds no rows of its own. Unlogged tables are dumped, so they count.
TABLES_SQL = r'''
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
ORDER BY 1, 2
'''

# Every foreign key as (referencing table, constraint, referenced table), in the keys of the table statistics.
# A key on a partitioned table has a clone on each partition, so leaf tables are covered.
FOREIGN_KEYS_SQL = r'''
SELECT cn.nspname || '.' || c.relname, pg_catalog.format('foreign key %I', con.conname), rn.nspname || '.' || r.relname
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE con.contype = 'f'
ORDER BY 1, 2
'''

# What a database-wide ANALYZE would process (tables, materialized views, partitioned tables; not
# foreign tables, TOAST or other sessions' temporary tables), limited to what this login may
# analyze so no relation is skipped with a warning; largest first, so that parallel workers finish
# together.
ANALYZE_TARGETS_SQL = r'''
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp\_%'
  AND (pg_catalog.pg_has_role(c.relowner, 'USAGE')
       OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
       OR (NOT c.relisshared
           AND pg_catalog.pg_has_role((SELECT d.datdba FROM pg_catalog.pg_database d
                                       WHERE d.datname = pg_catalog.current_database()), 'USAGE')))
ORDER BY pg_catalog.pg_relation_size(c.oid) DESC, 1
'''

# Pinned so that a row prints the same on the snapshot's server and the restore's.
STATS_SETTINGS = (
    ('TimeZone', 'UTC'),
    ('DateStyle', 'ISO, YMD'),
    ('IntervalStyle', 'postgres'),
    ('extra_float_digits', '3'),
    ('bytea_output', 'hex'),
    ('lc_monetary', 'C'),
    ('search_path', ''),
    # As pg_dump does: fail rather than count rows a policy hides.
    ('row_security', 'off'),
)

# A whole-row reference by an alias no column is called: a column named like the alias would win.
_ROW = sql.Identifier('djangoops row') if sql is not None else None


def prepare_session(con):
    """Pin the settings that shape a row's text (inside the current transaction or session)."""
    for name, value in STATS_SETTINGS:
        con.execute('SELECT pg_catalog.set_config(%s, %s, true)', (name, value))


def list_tables(con):
    return [(r[0], r[1]) for r in con.execute(TABLES_SQL).fetchall()]


def foreign_keys(con):
    return [(r[0], r[1], r[2]) for r in con.execute(FOREIGN_KEYS_SQL).fetchall()]


def _count_query(schema, table):
    return sql.SQL('SELECT pg_catalog.count(*), NULL FROM ONLY {}.{}').format(
        sql.Identifier(schema), sql.Identifier(table))


def _checksum_query(schema, table, encoding):
    # convert_to with the database's own encoding is a no-op that gives bytes to hash, and never
    # fails on a SQL_ASCII database holding bytes that are not valid UTF-8.
    return sql.SQL(
        "SELECT pg_catalog.count(*), pg_catalog.sum(('x' || pg_catalog.encode(pg_catalog.substr("
        "pg_catalog.sha256(pg_catalog.convert_to({row}::text, {enc})), 1, 8), 'hex'))"
        "::pg_catalog.bit(64)::pg_catalog.int8) FROM ONLY {}.{} AS {row}").format(
            sql.Identifier(schema), sql.Identifier(table), row=_ROW, enc=sql.Literal(encoding))


def collect(con, mode, excluded=()):
    """``{"schema.table": {"rows": n, "checksum": hex|None}}`` for ``mode`` counts | checksums, read in
    ``con``'s current transaction (the caller decides which snapshot that is). The tables in ``excluded``
    (whose rows the dump leaves out) are recorded as the dump holds them, empty, without reading them."""
    if mode == 'none':
        return {}
    if mode not in ('counts', 'checksums'):
        raise EngineError('table statistics mode must be counts or checksums, got %r' % (mode,))
    try:
        prepare_session(con)
        encoding = con.execute('SELECT pg_catalog.getdatabaseencoding()').fetchone()[0]
        if mode == 'checksums' and con.info.server_version < 110000:
            raise EngineError('table_stats=checksums needs PostgreSQL 11 or later (sha256 on the server); this '
                              'server is %s, use table_stats: counts' % con.info.server_version)
        stats = {}
        for schema, table in list_tables(con):
            if '%s.%s' % (schema, table) in excluded:
                stats['%s.%s' % (schema, table)] = excluded_stats(mode)
                continue
            query = _checksum_query(schema, table, encoding) if mode == 'checksums' else _count_query(schema, table)
            rows, total = con.execute(query).fetchone()
            checksum = None if mode == 'counts' else '%016x' % (int(total or 0) % (1 << 64))
            stats['%s.%s' % (schema, table)] = {'rows': rows, 'checksum': checksum}
        return stats
    except psycopg.errors.QueryCanceled:
        raise EngineError('reading table statistics was cancelled')
    except psycopg.Error as e:
        raise EngineError('reading table statistics failed: %s' % error_text(e))


def analyze_targets(con):
    """The relations a database-wide ANALYZE would process, as quoted names, largest first."""
    return [r[0] for r in con.execute(ANALYZE_TARGETS_SQL).fetchall()]
