# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Connection options shared by every module that talks to a database.
    DOCUMENTATION = r'''
options:
  engine:
    description:
      - The database engine.
      - V(mysql) covers MySQL and MariaDB.
    type: str
    required: true
    choices: [postgresql, mysql, sqlite]
  database:
    description:
      - The database name (Django's C(NAME)); for O(engine=sqlite), the absolute path of the database file.
    type: str
    aliases: [db]
  login_host:
    description:
      - Host name or address of the database server. Omit to use the local Unix socket.
      - Ignored for O(engine=sqlite).
    type: str
    aliases: [host]
  login_port:
    description:
      - TCP port of the database server. Defaults to the engine's own default (5432, 3306).
    type: int
    aliases: [port]
  login_user:
    description:
      - User to log in as. Defaults to the engine's own default (the OS user for PostgreSQL, C(root) for MySQL).
    type: str
    aliases: [user]
  login_password:
    description:
      - Password of O(login_user).
      - Handed to the client tools through a temporary 0600 file (a PostgreSQL passfile, a MySQL
        C(--defaults-extra-file)) that is removed when the task ends; it never appears in a command line,
        a log line or the task result.
    type: str
    aliases: [password]
  login_unix_socket:
    description:
      - Path of the server's Unix socket (MySQL), or the socket directory (PostgreSQL).
    type: path
    aliases: [unix_socket]
  ssl_mode:
    description:
      - TLS requirement, in PostgreSQL's terms; mapped to the MySQL client's C(--ssl-mode) or MariaDB's
        C(--ssl)/C(--ssl-verify-server-cert) options.
      - MySQL/MariaDB - the connection that checks the server enforces V(require) before any tool runs, but
        MariaDB's client tools before 11.4 cannot refuse a plain-text fallback on their own, and verify the host
        name whenever they verify the certificate (V(verify-ca) acts as V(verify-full)). Giving only O(ssl_ca)
        means V(verify-ca), as with the MySQL client.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ssl_ca:
    description: Certificate authority file to verify the server with.
    type: path
  ssl_cert:
    description: Client certificate file.
    type: path
  ssl_key:
    description: Client private key file.
    type: path
  connect_timeout:
    description: Seconds to wait for the server to answer before failing.
    type: int
    default: 10
  client_bin_dir:
    description:
      - Directory holding the client tools (C(pg_dump), C(pg_restore), C(psql); C(mariadb-dump)/C(mysqldump),
        C(mariadb)/C(mysql)), searched before E(PATH).
      - For PostgreSQL, when omitted, C(/usr/lib/postgresql/<version>/bin) (or C(/usr/pgsql-<version>/bin)) of the
        server's own major version is used, else the closest newer version, else E(PATH).
      - PostgreSQL client tools 17 and later cannot restore into a server before 17 (they set
        C(transaction_timeout) in every session); with such a server they are refused before anything is written or
        touched.
      - A C(psql) older than 13.22, 14.19, 15.14, 16.10 or 17.6 (by its major version) cannot run a plain snapshot
        that a newer C(pg_dump) wrote (it begins with C(\restrict)); C(db_restore) refuses it before the target is
        touched.
    type: path
requirements:
  - PostgreSQL - C(psycopg) 3 and the PostgreSQL client tools on the host the task runs on.
  - MySQL/MariaDB - C(PyMySQL) and the MariaDB or MySQL client tools on the host the task runs on.
  - C(zstd) or C(gzip) when compression is used.
'''
