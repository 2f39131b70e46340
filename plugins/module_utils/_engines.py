# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the connection argument spec shared by every module that talks to
a database (documented by the ``djangoops.maintenance.connection`` doc fragment), and the one place
that maps an engine name to its implementation."""

from __future__ import annotations

ENGINES = ('postgresql', 'mysql', 'sqlite')


def connection_argument_spec():
    return dict(
        engine=dict(type='str', required=True, choices=list(ENGINES)),
        database=dict(type='str', aliases=['db']),
        login_host=dict(type='str', aliases=['host']),
        login_port=dict(type='int', aliases=['port']),
        login_user=dict(type='str', aliases=['user']),
        login_password=dict(type='str', no_log=True, aliases=['password']),
        login_unix_socket=dict(type='path', aliases=['unix_socket']),
        ssl_mode=dict(type='str', choices=['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ssl_ca=dict(type='path'),
        ssl_cert=dict(type='path'),
        ssl_key=dict(type='path', no_log=False),
        connect_timeout=dict(type='int', default=10),
        client_bin_dir=dict(type='path'),
    )


CONNECTION_KEYS = tuple(connection_argument_spec())


def connection_params(params):
    """The connection options out of a module's params."""
    return dict((k, params.get(k)) for k in CONNECTION_KEYS)


def get_engine(name, conn, secrets):
    """The engine implementation for ``name``. Imports are local so a host that only runs SQLite
    needs neither psycopg nor PyMySQL."""
    if name == 'postgresql':
        from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_postgresql import PostgreSQLEngine
        return PostgreSQLEngine(conn, secrets)
    if name == 'mysql':
        from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_mysql import MySQLEngine
        return MySQLEngine(conn, secrets)
    if name == 'sqlite':
        from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_sqlite import SQLiteEngine
        return SQLiteEngine(conn, secrets)
    raise ValueError('unknown engine %r; expected one of %s' % (name, ', '.join(ENGINES)))
