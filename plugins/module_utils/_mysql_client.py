# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: everything about the MySQL and MariaDB client tools that is pure
logic - which flavour a version string names, the flags each flavour needs, the option file that
carries the credentials, and which client may dump or restore which server.

MySQL and MariaDB differ here and only here: the tables below are chosen once from a version
string; the engine never branches on the flavour itself.
"""

from __future__ import annotations

import os
import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import parse_version, version_text

MARIADB = 'mariadb'
MYSQL = 'mysql'
LABEL = {MARIADB: 'MariaDB', MYSQL: 'MySQL'}

# Tool names by role, newest name first. On MariaDB hosts mysqldump/mysql are compatibility
# links (deprecated in 11.x, with a warning on every call), so the mariadb-* names win.
DUMP_TOOLS = ('mariadb-dump', 'mysqldump')
CLIENT_TOOLS = ('mariadb', 'mysql')

# Where servers put their socket when login_host and login_unix_socket are both omitted.
DEFAULT_SOCKETS = ('/run/mysqld/mysqld.sock', '/var/run/mysqld/mysqld.sock', '/var/lib/mysql/mysql.sock',
                   '/tmp/mysql.sock')

# Extra dump flags by client flavour and minimum client version; the first matching row wins.
_DUMP_FLAGS = (
    # mysqldump 8 reads information_schema.COLUMN_STATISTICS, which MariaDB and MySQL 5.7 servers
    # lack; and without --set-gtid-purged=OFF a dump of a GTID server starts with
    # SET @@GLOBAL.GTID_PURGED, which fails on any server that has executed transactions.
    (MYSQL, (8, 0), ('--set-gtid-purged=OFF', '--column-statistics=0')),
    (MYSQL, (5, 6), ('--set-gtid-purged=OFF',)),
    (MYSQL, (), ()),
    (MARIADB, (), ()),
)

# ssl_mode (PostgreSQL's words) -> option-file lines. MariaDB clients before 11.4 have no
# "require TLS but do not verify" switch and cannot verify the CA without the host name, so
# require is best effort there and verify-ca is as strict as verify-full (docs/engines/mysql.md).
_SSL_LINES = {
    MYSQL: {
        'disable': ('ssl-mode=DISABLED',),
        'allow': ('ssl-mode=PREFERRED',),
        'prefer': ('ssl-mode=PREFERRED',),
        'require': ('ssl-mode=REQUIRED',),
        'verify-ca': ('ssl-mode=VERIFY_CA',),
        'verify-full': ('ssl-mode=VERIFY_IDENTITY',),
    },
    MARIADB: {
        'disable': ('skip-ssl',),
        'allow': (),
        'prefer': ('ssl',),
        'require': ('ssl',),
        'verify-ca': ('ssl', 'ssl-verify-server-cert'),
        'verify-full': ('ssl', 'ssl-verify-server-cert'),
    },
}

# From 11.4 on, MariaDB's clients require TLS unless told otherwise (and verify the server's certificate, a
# self-signed one by the password); before, they spoke plain text to a server without TLS, as PyMySQL does.
MARIADB_TLS_BY_DEFAULT = (11, 4)

_OPTION_ESCAPES = {'\\': '\\\\', '"': '\\"', "'": "\\'", '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b'}


class ClientInfo(object):
    """A client tool: its path, flavour and version, parsed once from ``--version``."""

    def __init__(self, path, version_output):
        self.path = path
        self.name = os.path.basename(path)
        self.flavour, self.version = parse_client_version(version_output)
        self.version_output = version_output.strip()

    @property
    def label(self):
        return '%s %s (%s)' % (self.name, version_text(self.version), LABEL[self.flavour])


def parse_client_version(text):
    """(flavour, version tuple) from a client's ``--version`` line.

    'mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu' -> (mariadb, (10, 11, 19))
    'mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux'               -> (mariadb, (11, 4, 2))
    'mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)' -> (mysql, (8, 0, 36))
    'mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)'                -> (mysql, (5, 7, 44))
    The 'Ver' of old tools is the protocol's, not the product's; Distrib/from name the product."""
    text = text or ''
    flavour = MARIADB if 'mariadb' in text.lower() else MYSQL
    m = re.search(r'\bDistrib\s+(\d+\.\d+(?:\.\d+)?)', text) or re.search(r'\bfrom\s+(\d+\.\d+(?:\.\d+)?)', text) \
        or re.search(r'\bVer\s+(\d+\.\d+(?:\.\d+)?)', text)
    return flavour, parse_version(m.group(1)) if m else ()


def server_flavour(version, version_comment=''):
    """The server's flavour from SELECT VERSION() and @@version_comment."""
    both = ('%s %s' % (version or '', version_comment or '')).lower()
    return MARIADB if 'mariadb' in both else MYSQL


def dump_flags(client):
    for flavour, minimum, flags in _DUMP_FLAGS:
        if client.flavour == flavour and tuple(client.version) >= minimum:
            return list(flags)
    return []


def client_problem(client, server_flav, server_version):
    """Why ``client`` cannot work with this server, or None. The rules (docs/engines/mysql.md):

    - a client older (major.minor) than a server of its own flavour is refused, as pg_dump is:
      it does not know the server's newer syntax and system tables;
    - a MySQL 8+ server needs a MySQL client of 8.0 or later (older ones lack its authentication
      and information_schema) or a MariaDB client of 10.3 or later;
    - a MariaDB server is dumped by MySQL clients of 5.7 or later."""
    have, need = tuple(client.version), tuple(server_version[:2])
    if not have:
        return 'could not tell the version of %s from %r' % (client.name, client.version_output)
    if client.flavour == server_flav:
        if have[:2] < need:
            return ('%s is older than the %s %s server; install a client of %s or later (or point client_bin_dir '
                    'at one)' % (client.label, LABEL[server_flav], version_text(server_version),
                                 version_text(need)))
        return None
    if server_flav == MYSQL and need >= (8, 0) and client.flavour == MARIADB and have < (10, 3):
        return ('%s cannot work with MySQL %s; install a MySQL 8 client or MariaDB 10.3 or later'
                % (client.label, version_text(server_version)))
    if server_flav == MARIADB and client.flavour == MYSQL and have < (5, 7):
        return '%s is too old for MariaDB; install MySQL 5.7 or later, or the MariaDB client' % client.label
    return None


def restore_problem(dump_flav, client):
    """Why ``client`` cannot replay a dump written by a ``dump_flav`` dump tool, or None."""
    if dump_flav == MARIADB and client.flavour == MYSQL:
        return ('the snapshot was written by the MariaDB dump tool, whose SQL (its first line is a MariaDB '
                'sandbox-mode command) the MySQL client %s rejects; restore with the MariaDB client '
                '(install it, or point client_bin_dir at it)' % client.label)
    return None


def option_value(value):
    """A value for a MySQL option file, quoted so that the server's parser gives back exactly
    ``value``: it strips unquoted outer spaces, ends the line at an unquoted '#', and decodes
    these backslash escapes inside quotes."""
    return '"%s"' % ''.join(_OPTION_ESCAPES.get(ch, ch) for ch in str(value))


def ssl_lines(flavour, conn, client_version=(), server_tls=True):
    """Option-file lines for the TLS options of ``conn``, for a client of ``flavour`` and ``client_version``
    talking to a server that offers TLS or not (``server_tls``, from the connection that checked it).

    Without ssl_mode (or with allow or prefer) TLS is not required: a MariaDB client that would require it by
    itself (11.4 and later) is told to speak plain text to a server without TLS, as older clients and the
    module's own connection do; against a server with TLS it keeps its default (TLS, verified)."""
    mode = effective_ssl_mode(conn)
    if (flavour == MARIADB and tuple(client_version) >= MARIADB_TLS_BY_DEFAULT and not server_tls
            and mode in (None, 'allow', 'prefer')):
        return ['skip-ssl']
    lines = list(_SSL_LINES[flavour].get(mode, ())) if mode else []
    for key, option in (('ssl_ca', 'ssl-ca'), ('ssl_cert', 'ssl-cert'), ('ssl_key', 'ssl-key')):
        if conn.get(key):
            lines.append('%s=%s' % (option, option_value(conn[key])))
    return lines


def effective_ssl_mode(conn):
    """ssl_mode, or verify-ca when only a CA is given (as the MySQL client itself does)."""
    if conn.get('ssl_mode'):
        return conn['ssl_mode']
    return 'verify-ca' if conn.get('ssl_ca') else None


def option_file(flavour, endpoint, user, password, conn, client_version=(), server_tls=True):
    """The text of the ``--defaults-extra-file`` for a client of ``flavour`` and ``client_version`` (TLS: see
    ``ssl_lines``).

    Only options every client tool of the flavour knows go in [client]: an option a tool does not
    know there (connect-timeout for mysqldump) makes it refuse to start."""
    lines = ['[client]', 'user=%s' % option_value(user)]
    if password is not None:
        lines.append('password=%s' % option_value(password))
    if endpoint.get('socket'):
        lines += ['socket=%s' % option_value(endpoint['socket']), 'protocol=socket']
    else:
        lines += ['host=%s' % option_value(endpoint['host']), 'port=%d' % endpoint['port'], 'protocol=tcp']
    lines += ssl_lines(flavour, conn, client_version, server_tls)
    return '\n'.join(lines) + '\n'


def resolve_endpoint(conn, exists=os.path.exists):
    """Where to connect: the socket when one is given (or, with no host either, the first
    standard socket that exists), else TCP to the host. PyMySQL and the tools are given the same
    endpoint, so they can never reach different servers."""
    if conn.get('login_unix_socket'):
        return {'socket': conn['login_unix_socket']}
    if not conn.get('login_host'):
        for path in DEFAULT_SOCKETS:
            if exists(path):
                return {'socket': path}
    return {'host': conn.get('login_host') or 'localhost', 'port': conn.get('login_port') or 3306}


def endpoint_text(endpoint):
    if endpoint.get('socket'):
        return 'socket %s' % endpoint['socket']
    return '%s:%s' % (endpoint['host'], endpoint['port'])


def find_client_tool(names, bin_dir=None, find=None):
    """Path of the first of ``names`` in ``bin_dir``, else the first on PATH; None if none.
    ``bin_dir`` wins whatever the name, so a user's choice is never overridden by PATH."""
    if bin_dir:
        for name in names:
            candidate = os.path.join(bin_dir, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    for name in names:
        path = find(name, required=False)
        if path:
            return path
    return None
