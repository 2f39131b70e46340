# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: how the PostgreSQL engine reaches a server.

One object builds both views of a connection - keyword arguments for psycopg, and argv plus
environment for the client tools - so the two can never disagree about host, user or TLS.
The password lands only in a libpq passfile (0600, in the call's private directory) that both
read: through ``passfile=`` for psycopg and ``PGPASSFILE`` for the tools. It is in no argv, no
environment value and no message.
"""

from __future__ import annotations

import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import EngineError

try:
    import psycopg
    from psycopg import sql
    HAS_PSYCOPG = True
except ImportError:
    psycopg = None
    sql = None
    HAS_PSYCOPG = False

PSYCOPG_MISSING = ('engine postgresql needs the Python library psycopg (version 3) on the host the task runs on, '
                   'and it could not be imported: install the Debian/Ubuntu package python3-psycopg, or '
                   '"pip install psycopg" for the Python that runs the module')

# ``sql`` is re-exported: the other PostgreSQL helpers take psycopg from here, guarded once.
__all__ = ['HAS_PSYCOPG', 'PSYCOPG_MISSING', 'PgConnection', 'dbname_option', 'error_text', 'is_unreachable',
           'passfile_line', 'psycopg', 'require_psycopg', 'sql']

APPLICATION_NAME = 'djangoops.maintenance'

# Session settings for our own connections: a role or database default must not kill a long checksum
# query, nor the idle transaction that holds the snapshot pg_dump is reading.
SESSION_SETTINGS = (
    ('statement_timeout', '0'),
    ('idle_in_transaction_session_timeout', '0'),
)

# libpq texts that mean the server was not reached or refused the login itself: connecting to another
# database would fail the same way.
_NOT_WORTH_RETRYING = re.compile(
    r'Connection refused|timeout expired|could not translate host name|No such file or directory|'
    r'Network is unreachable|No route to host|server closed the connection|authentication failed|'
    r'no password supplied|SSL')


def require_psycopg():
    if not HAS_PSYCOPG:
        raise EngineError(PSYCOPG_MISSING)


def passfile_line(password):
    """One libpq passfile line matching any host, port, database and user.

    libpq reads ``\\`` and ``:`` as escapable in every field, the password included; a line break
    cannot be represented at all."""
    if '\n' in password or '\r' in password:
        raise EngineError('login_password contains a line break, which PostgreSQL client tools cannot be given '
                          'through a passfile; use a password without line breaks')
    return '*:*:*:*:%s\n' % password.replace('\\', '\\\\').replace(':', '\\:')


def dbname_option(name):
    """``--dbname=`` for a tool. libpq reads a dbname holding ``=`` or starting like a URI as a
    connection string, so such names are wrapped as ``dbname='...'``."""
    if '=' in name or re.match(r'^postgres(ql)?://', name):
        return "--dbname=dbname='%s'" % name.replace('\\', '\\\\').replace("'", "\\'")
    return '--dbname=' + name


def is_unreachable(message):
    return bool(_NOT_WORTH_RETRYING.search(message or ''))


class PgConnection(object):
    """Connection options of one module call (``conn`` is the module's connection params)."""

    def __init__(self, conn, secrets):
        self.conn = conn
        self.secrets = secrets
        self.host = conn.get('login_host') or conn.get('login_unix_socket')
        self.port = conn.get('login_port')
        self.user = conn.get('login_user')
        self.timeout = conn.get('connect_timeout') or 10
        self._passfile = None

    def passfile(self):
        password = self.conn.get('login_password')
        if not password:
            return None
        if self._passfile is None:
            self._passfile = self.secrets.write('pgpass', passfile_line(password))
        return self._passfile

    def where(self, database=None):
        """``server at HOST:PORT as user U, database D`` for messages."""
        place = self.host or 'the local socket'
        if self.port:
            place = '%s:%s' % (place, self.port)
        who = 'user %s' % self.user if self.user else 'the default user'
        return 'PostgreSQL at %s as %s%s' % (place, who, ', database %s' % database if database else '')

    # -- client tools ------------------------------------------------------------------------
    def tool_args(self):
        """Connection options every libpq tool accepts; ``--no-password`` so a tool never waits on a
        prompt nobody will answer."""
        args = []
        if self.host:
            args += ['--host', self.host]
        if self.port:
            args += ['--port', str(self.port)]
        if self.user:
            args += ['--username', self.user]
        return args + ['--no-password']

    def tool_env(self):
        env = {'PGCONNECT_TIMEOUT': str(self.timeout), 'PGAPPNAME': APPLICATION_NAME}
        passfile = self.passfile()
        if passfile:
            env['PGPASSFILE'] = passfile
            env['PGPASSWORD'] = ''  # an inherited PGPASSWORD would win over the passfile
        for option, var in (('ssl_mode', 'PGSSLMODE'), ('ssl_ca', 'PGSSLROOTCERT'), ('ssl_cert', 'PGSSLCERT'),
                            ('ssl_key', 'PGSSLKEY')):
            if self.conn.get(option):
                env[var] = str(self.conn[option])
        return env

    # -- psycopg -----------------------------------------------------------------------------
    def connect_kwargs(self, database):
        kw = dict(dbname=database, connect_timeout=self.timeout, application_name=APPLICATION_NAME)
        for key, value in (('host', self.host), ('port', self.port), ('user', self.user),
                           ('passfile', self.passfile()), ('sslmode', self.conn.get('ssl_mode')),
                           ('sslrootcert', self.conn.get('ssl_ca')), ('sslcert', self.conn.get('ssl_cert')),
                           ('sslkey', self.conn.get('ssl_key'))):
            if value:
                kw[key] = value
        return kw

    def connect(self, database, autocommit=True):
        """A psycopg connection; a refused or failed login becomes an EngineError naming server,
        user and database (libpq's own text, which never holds the password)."""
        require_psycopg()
        try:
            con = psycopg.connect(autocommit=autocommit, **self.connect_kwargs(database))
        except psycopg.Error as e:
            raise EngineError('cannot connect to %s: %s' % (self.where(database), error_text(e)))
        try:
            for name, value in SESSION_SETTINGS:
                con.execute('SELECT pg_catalog.set_config(%s, %s, false)', (name, value))
            if not autocommit:
                con.commit()
        except psycopg.Error as e:
            con.close()
            raise EngineError('%s: setting up the session failed: %s' % (self.where(database), error_text(e)))
        return con


def error_text(error):
    """A psycopg error as one line for an operator."""
    text = re.sub(r'^connection failed: ', '', str(error).strip())
    return re.sub(r'\s*\n\s*', ' ', text)
