# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throwaway PostgreSQL and MariaDB servers for the tests: own data directory, a free port,
password authentication on TCP, started in about a second and killed without mercy.

The servers run as the ``postgres`` / ``mysql`` system users (PostgreSQL refuses root), so their
directories live under /tmp where those users can reach them."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_BIN_CANDIDATES = sorted(glob.glob('/usr/lib/postgresql/*/bin'), reverse=True)
# The versions tested besides Debian 12's own, fetched by scripts/fetch_engines.py (make test).
BUILD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), '.build')
PG_SERIES = ('17', '18')
# A psql from before the \\restrict line that pg_dump writes into plain scripts (13.22, 14.19, 15.14 ...).
PG_OLD_CLIENT = '14.1'
MARIADB_SERIES = ('11.8',)
MYSQL_SERIES = ('9.7',)


def _fetched(kind, version):
    where = os.path.join(BUILD_DIR, kind, version)
    if not os.path.isfile(os.path.join(where, 'ready')):
        raise RuntimeError('%s %s is not under %s: make test fetches it (scripts/fetch_engines.py)'
                           % (kind, version, os.path.dirname(where)))
    return where


def pg_series(major):
    """``(server bin dir, client bin dir)`` of PostgreSQL ``major`` as scripts/fetch_engines.py left them."""
    where = _fetched('postgresql', major)
    return os.path.join(where, 'server', 'bin'), os.path.join(where, 'client')


def pg_client(version):
    """The directory of pg_dump, pg_restore and psql of PostgreSQL ``version`` (a series above, or an old minor
    release such as ``14.1``) as scripts/fetch_engines.py left it."""
    return os.path.join(_fetched('postgresql', version), 'client')


def mariadb_series(version):
    """The base directory (bin/, sbin/mariadbd, share/) of MariaDB ``version`` as scripts/fetch_engines.py left it."""
    return os.path.join(_fetched('mariadb', version), 'base')


def mysql_series(version):
    """Where scripts/fetch_engines.py left MySQL ``version``: ``base/`` (sbin/mysqld, bin/ wrappers) and ``root/``."""
    return _fetched('mysql', version)


# Passwords that would break any naive quoting: quotes, spaces, $, #, backslash, colon, unicode.
TRICKY_PASSWORD = 'p\'a"s s$w#o\\r:d-\u00e9\u00df\u2603'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _own_dir(path, user):
    """``path`` exists and belongs to ``user``."""
    os.makedirs(path, exist_ok=True)
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _chown_tree(path, user):
    pw = pwd.getpwnam(user)
    for dirpath, dirs, files in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)
        del dirs


def _wait_port(host, port, proc, seconds, log):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('server exited with %s; log:\n%s' % (proc.returncode, _read(log)))
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError('server did not listen on %s:%s within %ss; log:\n%s' % (host, port, seconds, _read(log)))


def _read(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read()[-4000:]
    except OSError:
        return ''


class PostgresServer(object):
    """A PostgreSQL cluster: superuser ``postgres`` with TRICKY_PASSWORD over TCP (scram-sha-256),
    trust on its private Unix socket directory."""

    superuser = 'postgres'

    def __init__(self, host='127.0.0.1', port=None, base=None, netns=None, bindir=None, client_bindir=None):
        if not bindir and not PG_BIN_CANDIDATES:
            raise RuntimeError('no PostgreSQL server binaries under /usr/lib/postgresql')
        self.bindir = bindir or PG_BIN_CANDIDATES[0]  # initdb, pg_ctl, postgres
        self.client_bindir = client_bindir or self.bindir  # pg_dump, pg_restore, psql of the same version
        self.host = host
        self.port = port or free_port()
        self.base = base or tempfile.mkdtemp(prefix='djangoops-pg-', dir='/tmp')
        os.chmod(self.base, 0o755)
        self.datadir = os.path.join(self.base, 'data')
        self.sockdir = os.path.join(self.base, 'sock')
        self.log = os.path.join(self.base, 'server.log')
        self.password = TRICKY_PASSWORD
        self.netns = netns

    def _as_postgres(self, argv, **kw):
        prefix = ['ip', 'netns', 'exec', self.netns] if self.netns else []
        return subprocess.run(prefix + ['runuser', '-u', 'postgres', '--'] + argv, check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)

    def start(self):
        if not os.path.isdir(self.datadir):
            os.makedirs(self.sockdir)
            pwfile = os.path.join(self.base, 'pw')
            with open(pwfile, 'w', encoding='utf-8') as f:
                f.write(self.password + '\n')
            _chown_tree(self.base, 'postgres')
            self._as_postgres([os.path.join(self.bindir, 'initdb'), '-D', self.datadir, '-U', self.superuser,
                               '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256',
                               '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
            os.unlink(pwfile)
            if self.host not in ('127.0.0.1', 'localhost', '::1'):
                # initdb lets only loopback in over TCP; a server on a rig host serves its whole subnet.
                with open(os.path.join(self.datadir, 'pg_hba.conf'), 'a', encoding='utf-8') as f:
                    f.write('host all all samenet scram-sha-256\n')
        opts = '-p %d -k %s -c listen_addresses=%s -c fsync=off -c full_page_writes=off -c max_connections=50' % (
            self.port, self.sockdir, self.host)
        self._as_postgres([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-l', self.log, '-w',
                           '-t', '30', '-o', opts, 'start'])
        return self

    def stop(self, mode='fast'):
        if os.path.exists(os.path.join(self.datadir, 'postmaster.pid')):
            try:
                self._as_postgres([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-m', mode, '-w',
                                   'stop'], timeout=60)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self.kill()

    def kill(self):
        pidfile = os.path.join(self.datadir, 'postmaster.pid')
        try:
            with open(pidfile, encoding='utf-8') as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def destroy(self):
        self.stop(mode='immediate')
        shutil.rmtree(self.base, ignore_errors=True)

    def conn_args(self, database='postgres'):
        """Module connection options for this server."""
        return dict(engine='postgresql', login_host=self.host, login_port=self.port, login_user=self.superuser,
                    login_password=self.password, database=database)

    def connect(self, database='postgres', autocommit=True):
        import psycopg  # pylint: disable=import-outside-toplevel
        return psycopg.connect(host=self.host, port=self.port, user=self.superuser, password=self.password,
                               dbname=database, autocommit=autocommit)

    def sql(self, statement, database='postgres', params=None):
        with self.connect(database) as con:
            cur = con.execute(statement, params)
            return cur.fetchall() if cur.description else None

    def create_database(self, name):
        self.sql('CREATE DATABASE "%s"' % name)

    def drop_database(self, name):
        self.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


class MariaDBServer(object):
    """A MariaDB server: user ``djangoops`` with TRICKY_PASSWORD over TCP, root by socket."""

    user = 'djangoops'

    def __init__(self, host='127.0.0.1', port=None, base=None, netns=None, extra_args=(), basedir=None):
        self.basedir = basedir  # a MariaDB base directory (bin/, sbin/mariadbd, share/); None: Debian 12's, on PATH
        self.bindir = os.path.join(basedir, 'bin') if basedir else None  # its client tools
        self.host = host
        self.port = port or free_port()
        self.extra_args = list(extra_args)  # more mariadbd options (TLS certificates, ...)
        self.base = base or tempfile.mkdtemp(prefix='djangoops-my-', dir='/tmp')
        os.chmod(self.base, 0o755)
        self.datadir = os.path.join(self.base, 'data')
        # Its own temporary directory: at start-up a server deletes every #sql* file in its tmpdir, so with
        # the default /tmp one test's server starting removed the temporary tables another one (or its
        # mariadb-install-db) was using ("Could not remove temporary table", "Unknown table
        # 'mysql.tmp_user_sys'").
        self.tmpdir = os.path.join(self.base, 'tmp')
        self.socket = os.path.join(self.base, 'mysqld.sock')
        self.pidfile = os.path.join(self.base, 'mysqld.pid')
        self.log = os.path.join(self.base, 'server.log')
        self.password = TRICKY_PASSWORD
        self.netns = netns
        self.proc = None

    def start(self):
        fresh = not os.path.isdir(self.datadir)
        _own_dir(self.tmpdir, 'mysql')
        if fresh:
            os.makedirs(self.datadir)
            _chown_tree(self.base, 'mysql')
            p = subprocess.run([self._program('bin', 'mariadb-install-db'), '--no-defaults'] + self._base_args() + [
                '--user=mysql', '--datadir=' + self.datadir, '--auth-root-authentication-method=normal',
                '--skip-test-db'], check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if p.returncode:
                raise RuntimeError('mariadb-install-db failed (exit status %d): %s'
                                   % (p.returncode, p.stdout.decode('utf-8', 'replace')[-3000:]))
        prefix = ['ip', 'netns', 'exec', self.netns] if self.netns else []
        with open(self.log, 'ab') as log:
            self.proc = subprocess.Popen(
                prefix + [self._program('sbin', 'mariadbd'), '--no-defaults'] + self._base_args() + [
                    '--user=mysql', '--datadir=' + self.datadir,
                    '--socket=' + self.socket, '--port=%d' % self.port, '--bind-address=' + self.host,
                    '--pid-file=' + self.pidfile, '--skip-log-bin', '--skip-name-resolve',
                    '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=0', '--log-error=' + self.log,
                    '--character-set-server=utf8mb4', '--collation-server=utf8mb4_unicode_ci'] + self.extra_args,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not self.netns:
            _wait_port(self.host, self.port, self.proc, 60, self.log)
        else:
            deadline = time.monotonic() + 60
            while not os.path.exists(self.socket) and time.monotonic() < deadline:
                time.sleep(0.1)
        if fresh:
            self._create_user()
        return self

    def _create_user(self):
        """The tests' account, from anywhere and from localhost, with every privilege."""
        for where in ('%', 'localhost'):
            # The host '%' goes through PyMySQL's %-formatting too, so it is doubled there.
            self.root_sql("CREATE USER '%s'@'%s' IDENTIFIED BY %%s" % (self.user, where.replace('%', '%%')),
                          (self.password,))
            self.root_sql("GRANT ALL ON *.* TO '%s'@'%s' WITH GRANT OPTION" % (self.user, where))

    def _program(self, where, name):
        return os.path.join(self.basedir, where, name) if self.basedir else name

    def _base_args(self):
        return (['--basedir=' + self.basedir] if self.basedir else []) + ['--tmpdir=' + self.tmpdir]

    def root_sql(self, statement, params=None):
        """One statement as root over the Unix socket (``%%`` for a literal percent sign when params are given)."""
        import pymysql  # pylint: disable=import-outside-toplevel
        con = pymysql.connect(unix_socket=self.socket, user='root', autocommit=True, charset='utf8mb4')
        try:
            with con.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            con.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def destroy(self):
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def conn_args(self, database=None):
        args = dict(engine='mysql', login_host=self.host, login_port=self.port, login_user=self.user,
                    login_password=self.password)
        if database:
            args['database'] = database
        return args

    def connect(self, database=None):
        import pymysql  # pylint: disable=import-outside-toplevel
        # PyMySQL encodes a str password as latin-1; the server stored its UTF-8 bytes.
        return pymysql.connect(host=self.host, port=self.port, user=self.user, password=self.password.encode('utf-8'),
                               database=database, autocommit=True, charset='utf8mb4',
                               client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)

    def sql(self, statement, database=None, params=None):
        con = self.connect(database)
        try:
            with con.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            con.close()

    def create_database(self, name):
        self.sql('CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci' % name)

    def drop_database(self, name):
        self.sql('DROP DATABASE IF EXISTS `%s`' % name)


class MySQLServer(MariaDBServer):
    """Oracle's MySQL (scripts/fetch_engines.py): user ``djangoops`` with TRICKY_PASSWORD over TCP, authenticated
    with MySQL's default plugin (caching_sha2_password), root by socket."""

    def __init__(self, where, **kw):
        super().__init__(**kw)
        self.where = where
        self.bindir = os.path.join(where, 'base', 'bin')  # its client tools
        usr = os.path.join(where, 'root', 'usr')
        # The data files of the relocated server: error messages, character sets, plugins.
        self.server_args = ['--basedir=' + usr, '--lc-messages-dir=' + os.path.join(usr, 'share', 'mysql'),
                            '--character-sets-dir=' + os.path.join(usr, 'share', 'mysql', 'charsets'),
                            '--plugin-dir=' + os.path.join(usr, 'lib', 'mysql', 'plugin')]

    def start(self):
        mysqld = os.path.join(self.where, 'base', 'sbin', 'mysqld')
        fresh = not os.path.isdir(self.datadir)
        server_args = self.server_args + ['--tmpdir=' + self.tmpdir]
        _own_dir(self.tmpdir, 'mysql')
        if fresh:
            _chown_tree(self.base, 'mysql')  # the datadir itself is made by --initialize, as the mysql user
            subprocess.run([mysqld, '--no-defaults', '--initialize-insecure', '--user=mysql',
                            '--datadir=' + self.datadir] + server_args,
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        with open(self.log, 'ab') as log:  # no --log-error: the server logs to its stderr, this file
            self.proc = subprocess.Popen(
                [mysqld, '--no-defaults', '--user=mysql', '--datadir=' + self.datadir] + server_args + [
                    '--socket=' + self.socket, '--port=%d' % self.port, '--bind-address=' + self.host,
                    '--mysqlx=OFF', '--secure-file-priv=NULL', '--pid-file=' + self.pidfile, '--skip-log-bin',
                    '--skip-name-resolve', '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=OFF',
                    '--character-set-server=utf8mb4', '--collation-server=utf8mb4_unicode_ci'] + self.extra_args,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.host, self.port, self.proc, 60, self.log)
        if fresh:
            self._create_user()
        return self
