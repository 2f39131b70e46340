# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: facts about a PostgreSQL database and the statements that create,
drop, rename and empty one. Everything is composed with ``psycopg.sql`` (identifiers and literals
quoted by the driver), never by string formatting."""

from __future__ import annotations

import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import EngineError
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_connect import error_text, psycopg, sql

LOCALE_PROVIDERS = ('icu', 'builtin')
SYSTEM_SCHEMA_FILTER = r'''n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%' '''


def maintenance_database(target):
    """Where to connect to create, drop or rename ``target``: never ``target`` itself."""
    return 'template1' if target == 'postgres' else 'postgres'


def database_facts(con):
    """What a restore must reproduce about the connected database, and who we are on the server."""
    version = con.info.server_version
    provider = "NULL, NULL, NULL"
    if version >= 170000:
        provider = "d.datlocprovider::text, d.datlocale, d.daticurules"
    elif version >= 160000:
        provider = "d.datlocprovider::text, d.daticulocale, d.daticurules"
    elif version >= 150000:
        provider = "d.datlocprovider::text, d.daticulocale, NULL"
    row = con.execute(
        'SELECT d.datname, pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, '
        'pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_database_size(d.oid), %s, '
        'current_user, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), '
        "pg_catalog.current_setting('server_version_num')::int "
        'FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()' % provider).fetchone()
    facts = dict(database=row[0], encoding=row[1], lc_collate=row[2], lc_ctype=row[3], owner=row[4],
                 database_bytes=int(row[5]), current_user=row[9], is_superuser=bool(row[10]),
                 server_version_num=int(row[11]))
    if row[6] and row[6] != 'c':
        facts['locale_provider'] = {'i': 'icu', 'b': 'builtin'}.get(row[6], row[6])
        facts['provider_locale'] = row[7]
        if row[8]:
            facts['icu_rules'] = row[8]
    facts['extensions'] = [dict(name=r[0], version=r[1], schema=r[2]) for r in con.execute(
        'SELECT e.extname, e.extversion, n.nspname FROM pg_catalog.pg_extension e '
        'JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace ORDER BY 1').fetchall()]
    return facts


def server_facts(con):
    row = con.execute(
        "SELECT pg_catalog.current_setting('server_version_num')::int, current_user, "
        '(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)').fetchone()
    return dict(server_version_num=int(row[0]), current_user=row[1], is_superuser=bool(row[2]))


def database_owner(con, name):
    """Owner of database ``name``, or None when it does not exist."""
    row = con.execute('SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = %s',
                      (name,)).fetchone()
    return row[0] if row else None


def can_act_as(con, role):
    """Whether the login user may create things owned by ``role`` (superuser, the role, or a member)."""
    row = con.execute(
        'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s) '
        'AND pg_catalog.pg_has_role(current_user, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s), '
        "'MEMBER')", (role, role)).fetchone()
    return bool(row[0])


def _other_sessions_query(con, select):
    """``SELECT <select>`` over the other sessions of a database (its name the one parameter). Autovacuum
    workers are left out: they are no application's, and PostgreSQL stops them itself for a DROP or RENAME
    DATABASE (and an in-place restore's locks cancel them), while after a bad deploy's writes one is often at
    work in the target."""
    query = ('SELECT %s FROM pg_catalog.pg_stat_activity WHERE datname = %%s '
             'AND pid <> pg_catalog.pg_backend_pid()' % select)
    if con.info.server_version >= 100000:  # backend_type is new in PostgreSQL 10
        query += " AND backend_type IS DISTINCT FROM 'autovacuum worker'"
    return query


def other_sessions(con, name):
    """How many other sessions are in database ``name`` (not autovacuum workers)."""
    row = con.execute(_other_sessions_query(con, 'count(*)'), (name,)).fetchone()
    return int(row[0])


def terminate_sessions(con, name):
    """Terminate the other sessions of database ``name`` (not autovacuum workers: see other_sessions); their
    number. A session the login user may not terminate (a superuser's, another role's, for a login user
    that is neither a superuser nor in pg_signal_backend) is a clear EngineError, not a traceback."""
    try:
        return len(con.execute(_other_sessions_query(con, 'pg_catalog.pg_terminate_backend(pid)'), (name,)).fetchall())
    except psycopg.Error as e:
        raise EngineError('terminating the other sessions of database %s failed: %s; stop them (the application, '
                          'other clients) or restore as a user allowed to terminate them (a superuser, or a member '
                          'of pg_signal_backend)' % (name, error_text(e)))


def create_database_statement(name, meta, owner, server_version_num):
    """CREATE DATABASE from template0 with the encoding and locale the snapshot recorded."""
    parts = [sql.SQL('CREATE DATABASE {} WITH TEMPLATE template0').format(sql.Identifier(name))]
    if owner:
        parts.append(sql.SQL('OWNER {}').format(sql.Identifier(owner)))
    if meta.get('encoding'):
        parts.append(sql.SQL('ENCODING {}').format(sql.Literal(meta['encoding'])))
    if meta.get('lc_collate'):
        parts.append(sql.SQL('LC_COLLATE {}').format(sql.Literal(meta['lc_collate'])))
    if meta.get('lc_ctype'):
        parts.append(sql.SQL('LC_CTYPE {}').format(sql.Literal(meta['lc_ctype'])))
    provider = meta.get('locale_provider')
    if provider:
        if provider not in LOCALE_PROVIDERS:
            raise EngineError('the snapshot records an unknown locale provider %r' % (provider,))
        if server_version_num < 150000 or (provider == 'builtin' and server_version_num < 170000):
            raise EngineError('the snapshot\'s database uses the %s locale provider, which this PostgreSQL server '
                              '(%s) does not offer' % (provider, server_version_num))
        parts.append(sql.SQL('LOCALE_PROVIDER {}').format(sql.SQL(provider)))
        if meta.get('provider_locale'):
            keyword = 'BUILTIN_LOCALE' if provider == 'builtin' else 'ICU_LOCALE'
            parts.append(sql.SQL(keyword + ' {}').format(sql.Literal(meta['provider_locale'])))
        if meta.get('icu_rules') and server_version_num >= 160000:
            parts.append(sql.SQL('ICU_RULES {}').format(sql.Literal(meta['icu_rules'])))
    return sql.SQL(' ').join(parts)


def drop_database_statement(name, force=False):
    stmt = sql.SQL('DROP DATABASE {}').format(sql.Identifier(name))
    if force:
        stmt = stmt + sql.SQL(' WITH (FORCE)')
    return stmt


def rename_database_statement(old, new):
    return sql.SQL('ALTER DATABASE {} RENAME TO {}').format(sql.Identifier(old), sql.Identifier(new))


def allow_connections_statement(name, allow):
    return sql.SQL('ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}').format(
        sql.Identifier(name), sql.SQL('true' if allow else 'false'))


def clean_statements(con):
    """Statements that leave the connected database as empty as a new one from template0, for
    ``pg_clean: schemas``: every extension, schema, large object, event trigger, publication and
    foreign-data wrapper the dump could bring back or a later change could have added.

    ``public`` is emptied but kept with its owner, ACL and comment: pg_dump never emits CREATE
    SCHEMA public, so the restore needs it to exist."""
    stmts = [sql.SQL('SET LOCAL client_min_messages = warning')]
    for (name,) in con.execute('SELECT evtname FROM pg_catalog.pg_event_trigger ORDER BY 1').fetchall():
        stmts.append(sql.SQL('DROP EVENT TRIGGER {}').format(sql.Identifier(name)))
    for (name,) in con.execute('SELECT pubname FROM pg_catalog.pg_publication ORDER BY 1').fetchall():
        stmts.append(sql.SQL('DROP PUBLICATION {}').format(sql.Identifier(name)))
    # plpgsql lives in pg_catalog and comes with template0; everything else was added to this database.
    for (name,) in con.execute("SELECT extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' "
                               'ORDER BY 1').fetchall():
        stmts.append(sql.SQL('DROP EXTENSION IF EXISTS {} CASCADE').format(sql.Identifier(name)))
    for (name,) in con.execute(
            'SELECT w.fdwname FROM pg_catalog.pg_foreign_data_wrapper w WHERE NOT EXISTS ('
            'SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = \'pg_catalog.pg_foreign_data_wrapper\''
            "::pg_catalog.regclass AND d.objid = w.oid AND d.deptype = 'e') ORDER BY 1").fetchall():
        stmts.append(sql.SQL('DROP FOREIGN DATA WRAPPER IF EXISTS {} CASCADE').format(sql.Identifier(name)))
    stmts.append(sql.SQL('SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata'))
    stmts += reset_default_acl_statements(con)
    public = None
    for name, owner, comment in con.execute(
            'SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner), '
            "pg_catalog.obj_description(n.oid, 'pg_namespace') FROM pg_catalog.pg_namespace n WHERE "
            + SYSTEM_SCHEMA_FILTER + 'ORDER BY 1').fetchall():
        stmts.append(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(name)))
        if name == 'public':
            public = (owner, comment)
    if public is None:
        return stmts
    owner, comment = public
    stmts.append(sql.SQL('CREATE SCHEMA public AUTHORIZATION {}').format(sql.Identifier(owner)))
    for grantee, privilege, grantable in con.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END, "
            'a.privilege_type, a.is_grantable FROM pg_catalog.pg_namespace n, '
            "LATERAL pg_catalog.aclexplode(n.nspacl) a WHERE n.nspname = 'public' "
            'AND a.grantee <> n.nspowner ORDER BY 1, 2').fetchall():
        if not re.match(r'^[A-Z ]+$', privilege):
            raise EngineError('unexpected privilege %r on schema public' % (privilege,))
        stmts.append(sql.SQL('GRANT {} ON SCHEMA public TO {}{}').format(
            sql.SQL(privilege), sql.Identifier(grantee) if grantee else sql.SQL('PUBLIC'),
            sql.SQL(' WITH GRANT OPTION') if grantable else sql.SQL('')))
    if comment is not None:
        stmts.append(sql.SQL('COMMENT ON SCHEMA public IS {}').format(sql.Literal(comment)))
    return stmts


# Database-wide default privileges (ALTER DEFAULT PRIVILEGES without IN SCHEMA) live in pg_default_acl with no
# schema, so dropping the schemas keeps them. The object types, and what PUBLIC has by default (acldefault).
_DEFAULT_ACL_KINDS = {'r': ('TABLES', None), 'S': ('SEQUENCES', None), 'f': ('FUNCTIONS', 'EXECUTE'),
                      'T': ('TYPES', 'USAGE'), 'n': ('SCHEMAS', None), 'L': ('LARGE OBJECTS', None)}


def reset_default_acl_statements(con):
    """For ``pg_clean: schemas``: statements that give every database-wide default privilege back its built-in
    value, as in a new database - revoke everything from every grantee and the role itself, then grant the role
    everything and PUBLIC what it has by default; PostgreSQL then removes the entry. The dump brings back those of
    the snapshot. Only entries of roles the login user may act for (a member, or a superuser); a login user who may
    not cannot have changed them either."""
    stmts = []
    for role, kind, grantees in con.execute(
            'SELECT pg_catalog.pg_get_userbyid(d.defaclrole), d.defaclobjtype::text, '
            'pg_catalog.array_agg(DISTINCT CASE WHEN a.grantee = 0 THEN NULL '
            'ELSE pg_catalog.pg_get_userbyid(a.grantee) END) '
            'FROM pg_catalog.pg_default_acl d LEFT JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a ON true '
            "WHERE d.defaclnamespace = 0 AND pg_catalog.pg_has_role(d.defaclrole, 'MEMBER') "
            'GROUP BY 1, 2 ORDER BY 1, 2').fetchall():
        if kind not in _DEFAULT_ACL_KINDS:
            raise EngineError('unexpected default privileges of role %s for object type %r' % (role, kind))
        objects, public = _DEFAULT_ACL_KINDS[kind]
        prefix = sql.SQL('ALTER DEFAULT PRIVILEGES FOR ROLE {} ').format(sql.Identifier(role))
        targets = sorted(set(g for g in grantees if g is not None) | {role})
        names = [sql.Identifier(g) for g in targets] + ([sql.SQL('PUBLIC')] if None in grantees else [])
        stmts.append(prefix + sql.SQL('REVOKE ALL ON {} FROM {}').format(sql.SQL(objects), sql.SQL(', ').join(names)))
        stmts.append(prefix + sql.SQL('GRANT ALL ON {} TO {}').format(sql.SQL(objects), sql.Identifier(role)))
        if public:
            stmts.append(prefix + sql.SQL('GRANT {} ON {} TO PUBLIC').format(sql.SQL(public), sql.SQL(objects)))
    return stmts


def run_statement(con, statement, record):
    """Execute one composed statement, recording its text; errors become EngineError."""
    text = statement.as_string(con)
    record('SQL: ' + text)
    try:
        con.execute(statement)
    except psycopg.Error as e:
        raise EngineError('%s failed: %s' % (text, error_text(e))) from e
