# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the MySQL/MariaDB engine (docs/engines/mysql.md).

Facts and table statistics come from PyMySQL; dumps and restores from the client tools, which get
their credentials only from a 0600 ``--defaults-extra-file`` given as their first argument.

Snapshot: per-table counts/checksums in a consistent snapshot, then ``mariadb-dump``/``mysqldump``
in one transaction, streamed through the compressor into the hashing file; a dump whose stream
does not end with the tool's ``-- Dump completed`` footer is a failed dump whatever the exit status.

Restore: the database is dropped and re-created with the recorded character set and collation,
then the dump streams into the client, which stops at the first error. MySQL DDL is not
transactional, so a failure leaves the target partly restored; the error says so.
"""

from __future__ import annotations

import re
import ssl

from ansible_collections.djangoops.maintenance.plugins.module_utils import _mysql_client as client
from ansible_collections.djangoops.maintenance.plugins.module_utils import _mysql_stats as stats
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (
    Engine, EngineError, alongside, encryption_record, input_chain, limits, lock_wait_seconds, output_chain, parse_version,
    resolve_excluded_tables, time_left, version_text)
from ansible_collections.djangoops.maintenance.plugins.module_utils._mysql_definers import DefinerRewriter
from ansible_collections.djangoops.maintenance.plugins.module_utils._mysql_load import ParallelSqlLoader
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    Step, TailTap, ToolError, find_tool, run, run_pipeline)

try:
    import pymysql
    from pymysql.constants import CLIENT
except ImportError:  # reported when first needed, naming the package to install
    pymysql = None

DUMP_NAME = 'database.sql'
FOOTER = b'\n-- Dump completed'
# The client refuses statements longer than this; 1 GiB is the protocol's maximum. The server's own
# max_allowed_packet must still fit the largest row.
MAX_PACKET = '--max-allowed-packet=1G'
DEFINER_MODES = ('keep', 'current_user')
# DROP DATABASE waits for every session's metadata locks, by default for a year.
DROP_LOCK_WAIT = 60
SERVER_LOCK_WAIT = 31536000  # the largest lock_wait_timeout (MySQL's default): no limit of ours

_DUMP_ERRORS = (r"(?m)^\S*(?:mysqldump|mariadb-dump): (?:Got error|Got errno|Couldn't|Error|Lost connection)",)
_CLIENT_ERRORS = (r'(?m)^ERROR \d+',)
_MYSQL_ACCESS_DENIED = 1045
_NAME_RE = re.compile(r'^[A-Za-z0-9_]+$')
# Errors with which the server refuses DROP DATABASE before it drops anything: no privilege (1044, 1227), a lock
# not granted in time (1205), a read lock held (1223), a read-only server (1290). After any other error the
# target may be partly dropped (MariaDB drops it table by table).
_REFUSED_BEFORE_DROP = (1044, 1205, 1223, 1227, 1290)


class FooterTap(TailTap):
    """Fails the pipeline when the dump's stream does not end with the tool's completion footer."""

    def __init__(self, tool):
        super().__init__(size=512)
        self.tool = tool

    def finish(self):
        if FOOTER not in self.tail[-200:]:
            raise ToolError('%s exited successfully, but its output does not end with the "-- Dump completed" footer '
                            '(%d bytes written): the dump is incomplete and was discarded' % (self.tool, self.total))


class MySQLEngine(Engine):
    name = 'mysql'
    formats = ('sql',)
    default_format = 'sql'
    text_dump = True

    def __init__(self, conn, secrets):
        super().__init__(conn, secrets)
        self.endpoint = client.resolve_endpoint(conn)
        self.user = conn.get('login_user') or 'root'
        self._tools = {}
        self._defaults_files = {}
        self._server_tls = True  # until a probe says otherwise: the client tools keep their own TLS default
        self._probe = None

    # -- connections -------------------------------------------------------------------------
    def _where(self):
        return 'the MySQL/MariaDB server at %s' % client.endpoint_text(self.endpoint)

    def _ssl_options(self):
        """PyMySQL's TLS settings as (context, required): context None for the driver's default,
        False for no TLS."""
        mode = client.effective_ssl_mode(self.conn)
        if mode == 'disable':
            return False, False
        required = mode in ('require', 'verify-ca', 'verify-full')
        if not required and not self.conn.get('ssl_cert'):
            return None, False
        ctx = ssl.create_default_context(cafile=self.conn.get('ssl_ca'))
        ctx.check_hostname = mode == 'verify-full'
        ctx.verify_mode = ssl.CERT_REQUIRED if mode in ('verify-ca', 'verify-full') else ssl.CERT_NONE
        if self.conn.get('ssl_cert'):
            ctx.load_cert_chain(self.conn['ssl_cert'], keyfile=self.conn.get('ssl_key'))
        return ctx, required

    def connect(self, database=None):
        if pymysql is None:
            raise EngineError('engine mysql needs the Python library PyMySQL on the host the task runs on '
                              '(Debian/Ubuntu: apt install python3-pymysql; RHEL: python3-PyMySQL; pip: PyMySQL)')
        # As bytes: PyMySQL would encode a str password as latin-1, the client tools send UTF-8.
        kw = dict(user=self.user, password=(self.conn.get('login_password') or '').encode('utf-8'), charset='utf8mb4',
                  autocommit=True, connect_timeout=self.conn.get('connect_timeout') or 10)
        if self.endpoint.get('socket'):
            kw['unix_socket'] = self.endpoint['socket']
        else:
            kw.update(host=self.endpoint['host'], port=self.endpoint['port'])
        if database:
            kw['database'] = database
        try:
            ctx, required = self._ssl_options()
        except (OSError, ssl.SSLError) as e:
            raise EngineError('cannot set up TLS for %s (ssl_ca, ssl_cert, ssl_key): %s' % (self._where(), e))
        if ctx is False:
            kw['ssl_disabled'] = True
        elif ctx is not None:
            kw['ssl'] = ctx
        try:
            con = pymysql.connect(**kw)
        except pymysql.err.MySQLError as e:
            code = e.args[0] if e.args else None
            detail = e.args[1] if len(e.args) > 1 else str(e)
            if code == _MYSQL_ACCESS_DENIED:
                raise EngineError('%s refused the login of user %r (wrong password, or no such account for this '
                                  'client host): %s' % (self._where(), self.user, detail))
            raise EngineError('cannot connect to %s as user %r: %s' % (self._where(), self.user, detail))
        except (OSError, ssl.SSLError) as e:
            raise EngineError('cannot connect to %s as user %r: %s' % (self._where(), self.user, e))
        except RuntimeError as e:
            if 'cryptography' not in str(e):
                raise
            # MySQL 8+'s caching_sha2_password, when the server has not cached the account (after a restart or
            # FLUSH PRIVILEGES) and the connection has no TLS: the password must go RSA-encrypted.
            raise EngineError('cannot log in to %s as user %r: the account authenticates with caching_sha2_password '
                              '(or sha256_password), and over a connection without TLS PyMySQL needs the Python '
                              'package cryptography for that; install it on this host (Debian/Ubuntu: apt install '
                              'python3-cryptography; pip: PyMySQL[rsa]), or connect with TLS (ssl_mode: require)'
                              % (self._where(), self.user))
        if required and not self.endpoint.get('socket'):
            self._require_tls(con)
        return con

    def _require_tls(self, con):
        # Old PyMySQL falls back to plain text when the server offers no TLS; ssl_mode says it must not.
        with con.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
        if not row or not row[1]:
            con.close()
            raise EngineError('ssl_mode=%s, but %s did not accept TLS'
                              % (client.effective_ssl_mode(self.conn), self._where()))

    def _query(self, sql, params=None, database=None):
        con = self.connect(database)
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        except pymysql.err.MySQLError as e:
            raise EngineError('%s: %s' % (self._where(), e))
        finally:
            con.close()

    # -- client tools ------------------------------------------------------------------------
    def tool(self, role):
        """ClientInfo of the dump tool (``dump``) or the client (``client``), found once."""
        if role not in self._tools:
            names = client.DUMP_TOOLS if role == 'dump' else client.CLIENT_TOOLS
            path = client.find_client_tool(names, self.conn.get('client_bin_dir'), find_tool)
            if path is None:
                raise EngineError('neither %s was found on this host%s; install the MariaDB or MySQL client tools '
                                  '(Debian: mariadb-client)' % (' nor '.join(names), (
                                      ' (searched client_bin_dir %s first)' % self.conn['client_bin_dir'])
                                      if self.conn.get('client_bin_dir') else ''))
            out, err = run([path, '--version'], timeout=30)
            self._tools[role] = client.ClientInfo(path, out or err)
        return self._tools[role]

    def defaults_file(self, info):
        """The 0600 option file with the credentials, one per client flavour and version, written once."""
        key = (info.flavour, tuple(info.version))
        if key not in self._defaults_files:
            text = client.option_file(info.flavour, self.endpoint, self.user, self.conn.get('login_password'),
                                      self.conn, info.version, self._server_tls)
            self._defaults_files[key] = self.secrets.write('my-%s-%d.cnf' % (info.flavour, len(self._defaults_files)),
                                                           text)
        return self._defaults_files[key]

    def tool_argv(self, info, *args):
        # --defaults-extra-file is only honoured as the very first argument.
        return [info.path, '--defaults-extra-file=%s' % self.defaults_file(info)] + list(args)

    # -- facts -------------------------------------------------------------------------------
    def _database(self, database=None):
        name = database or self.conn.get('database')
        if not name:
            raise EngineError('engine mysql needs database: the name of the database')
        return name

    def probe(self, database=None):
        name = self._database(database)
        con = self.connect()
        try:
            with con.cursor() as cur:
                # Whether the server offers TLS, as the handshake said: the client tools are told to match.
                self._server_tls = bool(con.server_capabilities & CLIENT.SSL)
                cur.execute('SELECT VERSION(), @@version_comment, CURRENT_USER()')
                version, comment, current_user = cur.fetchone()
                cur.execute('SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA '
                            'WHERE SCHEMA_NAME = %s', (name,))
                schema = cur.fetchone()
                data_bytes, index_bytes = stats.database_sizes(cur, name, pymysql.err.MySQLError)
        except pymysql.err.MySQLError as e:
            raise EngineError('%s: %s' % (self._where(), e))
        finally:
            con.close()
        dump_tool, client_tool = self.tool('dump'), self.tool('client')
        flavour = client.server_flavour(version, comment)
        facts = {
            'database': name,
            'database_exists': schema is not None,
            'database_bytes': int(data_bytes) + int(index_bytes),
            'data_bytes': int(data_bytes),
            'server_flavour': flavour,
            'server_version': version_text(parse_version(version)),
            'server_version_text': version,
            'client_flavour': dump_tool.flavour,
            'client_version': version_text(dump_tool.version),
            'client_tool': dump_tool.name,
            'restore_client_tool': client_tool.name,
            'restore_client_version': version_text(client_tool.version),
            'current_user': current_user,
        }
        if schema is not None:
            facts['charset'], facts['collation'] = schema
        self._probe = facts
        return facts

    def check_client(self, probe, part_meta=None):
        version = parse_version(probe['server_version'])
        for role in ('dump', 'client'):
            problem = client.client_problem(self.tool(role), probe['server_flavour'], version)
            if problem:
                raise EngineError(problem)

    def estimate_dump_bytes(self, probe, opts):
        # Indexes are not dumped; BLOBs are dumped as hex (twice their size), which compresses back
        # to about their size. Worst cases, so a database of BLOBs still fits.
        data = probe.get('data_bytes') or 0
        return int(data * (1.0 if opts.get('compression', 'none') != 'none' else 2.0))

    def table_stats(self, mode, database=None):
        name = self._database(database)
        con = self.connect()
        try:
            with con.cursor() as cur:
                return stats.table_stats(cur, name, mode)
        except stats.StatsError as e:
            raise EngineError('database %s: %s' % (name, e))
        except pymysql.err.MySQLError as e:
            raise EngineError('table statistics of %s on %s failed: %s' % (name, self._where(), e))
        finally:
            con.close()

    def table_names(self, database=None):
        name = self._database(database)
        con = self.connect()
        try:
            with con.cursor() as cur:
                return sorted(stats.base_tables(cur, name))
        except pymysql.err.MySQLError as e:
            raise EngineError('reading the table names of %s on %s failed: %s' % (name, self._where(), e))
        finally:
            con.close()

    def exclusions(self, names, database=None):
        name = self._database(database)
        info = self.tool('dump')
        out, err = run([info.path, '--no-defaults', '--help'], timeout=30)
        if '--ignore-table-data' not in (out or '') + (err or ''):
            raise EngineError('exclude_table_data needs a dump tool with --ignore-table-data (MariaDB\'s '
                              'mariadb-dump has it, MySQL\'s mysqldump does not); %s %s has none'
                              % (info.name, version_text(info.version)))
        con = self.connect()
        try:
            with con.cursor() as cur:
                tables, keys = stats.base_tables(cur, name), stats.foreign_keys(cur, name)
        except pymysql.err.MySQLError as e:
            raise EngineError('reading the tables of %s on %s for exclude_table_data failed: %s'
                              % (name, self._where(), e))
        finally:
            con.close()
        return resolve_excluded_tables(names, dict((t, (t, '%s.%s' % (name, t))) for t in tables), keys,
                                       'database %s' % name)

    def _open_snapshot(self, opts=None):
        """A connection inside a consistent snapshot (InnoDB MVCC) opened now: the dump opens its own
        a moment later, and the table stats, views and definers are read in this one meanwhile. Exact
        when nothing writes in the milliseconds between the two (docs/engines/mysql.md)."""
        con = self.connect()
        try:
            with con.cursor() as cur:
                # Same text for TIMESTAMP values whatever the server's zone; the dump uses UTC too.
                cur.execute("SET SESSION time_zone = '+00:00'")
                if time_left(opts or {}) is not None:
                    # The statistics wait for a table lock no longer than the dump may run.
                    cur.execute('SET SESSION lock_wait_timeout = %d' % lock_wait_seconds(opts, SERVER_LOCK_WAIT))
                cur.execute('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ')
                cur.execute('START TRANSACTION WITH CONSISTENT SNAPSHOT')
        except pymysql.err.MySQLError as e:
            con.close()
            raise EngineError('opening a consistent snapshot of %s failed: %s' % (self._where(), e))
        return con

    def _snapshot_facts(self, con, name, mode, excluded=()):
        """Table stats, views and definers, read in ``con``'s snapshot; closes ``con``."""
        try:
            with con.cursor() as cur:
                facts = {'tables': stats.table_stats(cur, name, mode, excluded), 'views': stats.views(cur, name),
                         'definers': stats.definers(cur, name)}
                cur.execute('COMMIT')
                return facts
        except stats.StatsError as e:
            raise EngineError('database %s: %s' % (name, e))
        except pymysql.err.MySQLError as e:
            raise EngineError('reading the tables of %s on %s failed: %s' % (name, self._where(), e))
        finally:
            con.close()

    # -- snapshot ----------------------------------------------------------------------------
    def dump_argv(self, info, database, excluded=()):
        """Where the dump argv is built. See docs/engines/mysql.md for why each flag is there."""
        return self.tool_argv(
            info, '--single-transaction', '--routines', '--triggers', '--events', '--hex-blob', '--quick',
            '--default-character-set=utf8mb4', '--no-tablespaces', '--comments', MAX_PACKET,
            *client.dump_flags(info)) + ['--ignore-table-data=%s.%s' % (database, t) for t in excluded] + ['--', database]

    def dump(self, part, opts):
        name = self._database()
        probe = self._probe or self.probe()
        info = self.tool('dump')
        compression = opts.get('compression', 'none')
        level = opts.get('compression_level')
        mode = opts.get('table_stats', 'counts')
        excluded = list(opts.get('exclude_table_data') or ())
        snapshot_con = self._open_snapshot(opts)
        self.record('table statistics (%s) in a consistent snapshot opened just before the dump\'s, read while '
                    'it runs' % mode)
        dump_step = Step(self.dump_argv(info, name, excluded), error_patterns=_DUMP_ERRORS, name=info.name)
        items = [dump_step, FooterTap(info.name)]
        chain, suffix = output_chain(opts)
        items += chain
        self.record(' | '.join(i.display() for i in items if isinstance(i, Step)))
        try:
            hf = part.create(DUMP_NAME + suffix)
        except BaseException:
            snapshot_con.close()
            raise
        try:
            dummy, facts = alongside(lambda: run_pipeline(items, sink=hf, **limits(opts)),
                                     lambda: self._snapshot_facts(snapshot_con, name, mode, frozenset(excluded)))
        except BaseException:
            hf.discard()
            raise
        hf.close()
        part.add_hashed(hf)
        meta = {
            'kind': 'database',
            'engine': self.name,
            'database': name,
            'format': 'sql',
            'compression': compression,
            'compression_level': level if compression != 'none' else None,
            'server_flavour': probe['server_flavour'],
            'server_version': probe['server_version'],
            'server_version_text': probe['server_version_text'],
            'client_flavour': info.flavour,
            'client_version': version_text(info.version),
            'client_tool': info.name,
            'charset': probe.get('charset'),
            'collation': probe.get('collation'),
            'table_stats': opts.get('table_stats', 'counts'),
            'tables': facts['tables'],
            'views': facts['views'],
            'definers': facts['definers'],
        }
        if opts.get('compression_params'):
            meta['compression_params'] = opts['compression_params']
        encryption = encryption_record(opts, part.files)
        if encryption:
            meta['encryption'] = encryption
        return meta

    # -- restore -----------------------------------------------------------------------------
    def client_argv(self, info, database, unbuffered=False):
        # --unbuffered: the parallel loader reads the main client's answers as they come (see _mysql_load)
        return self.tool_argv(info, '--batch', '--default-character-set=utf8mb4', MAX_PACKET,
                              '--connect-timeout=%d' % (self.conn.get('connect_timeout') or 10),
                              *(['--unbuffered'] if unbuffered else []), '--database=%s' % database)

    def check_definers(self, part_meta, mode, current_user):
        """With definers kept, every recorded definer must exist on the target server: one that does
        not would make the restored object fail when used, and the restore report success."""
        if mode == 'current_user':
            return
        foreign = [d for d in part_meta.get('definers') or [] if d != current_user]
        if not foreign:
            return
        missing = []
        for account in foreign:
            user, host = stats.split_account(account)
            try:
                rows = self._query('SELECT COUNT(*) FROM mysql.user WHERE User = %s AND Host = %s', (user, host))
            except EngineError as e:
                raise EngineError('the snapshot has objects defined by %s, and whether those accounts exist on the '
                                  'target server cannot be checked (%s); grant %s SELECT on mysql.user, or set '
                                  'mysql_definers: current_user' % (', '.join(foreign), e, current_user))
            if not rows[0][0]:
                missing.append(account)
        if missing:
            raise EngineError('the snapshot has views/routines/triggers/events defined by %s, which do not exist on '
                              'the target server; create the account(s), or set mysql_definers: current_user to '
                              'define them as %s. Nothing was changed.' % (', '.join(missing), current_user))

    def restore(self, snapshot, part_meta, opts):
        target = self._database(opts.get('database') or part_meta.get('database'))
        mode = opts.get('mysql_definers') or 'keep'
        if mode not in DEFINER_MODES:
            raise EngineError('mysql_definers must be one of %s, got %r' % (', '.join(DEFINER_MODES), mode))
        if part_meta.get('format') != 'sql':
            raise EngineError('snapshot part holds a %r dump; engine mysql restores only sql' % part_meta.get('format'))
        info = self.tool('client')
        problem = client.restore_problem(part_meta.get('client_flavour'), info)
        if problem:
            raise EngineError(problem)
        probe = self._probe or self.probe(target)
        self.check_definers(part_meta, mode, probe['current_user'])
        self._recreate(target, part_meta, opts)
        items = []
        chain = input_chain(part_meta, opts.get('identity'))
        source = part_meta.get('database') or target
        rewriter = None
        if mode == 'current_user' or source != target:
            rewriter = DefinerRewriter(definers=mode == 'current_user', rename=(source, target))
        jobs = max(1, opts.get('jobs') or 1)
        if chain:
            items += chain
        elif rewriter is not None or jobs > 1:
            items.append(Step([find_tool('cat')], name='cat'))  # a pipeline starts with a process
        if rewriter is not None:
            items.append(rewriter)

        def client_step(main=True):
            return Step(self.client_argv(info, target, unbuffered=main and jobs > 1), error_patterns=_CLIENT_ERRORS,
                        name=info.name)

        loader = None
        if jobs > 1:
            loader = ParallelSqlLoader(client_step, jobs, self.record)
            self.record(' | '.join(i.display() for i in items if isinstance(i, Step)) + ' | ' +
                        client_step().display() + ' (the rows of a table with more than one INSERT statement on %d '
                        'more clients at once)' % jobs)
        else:
            items.append(client_step())
            self.record(' | '.join(i.display() for i in items if isinstance(i, Step)))
        try:
            try:
                run_pipeline(items, stdin_path=snapshot.file_path(part_meta['files'][0]), sink=loader,
                             **limits(opts), then=loader.finish if loader else None,
                             on_timeout=loader.kill if loader else None)
            except BaseException:
                if loader is not None:
                    loader.abort()
                raise
        except ToolError as e:
            raise ToolError('restore of snapshot %s into database %s failed, and the database is now PARTLY restored '
                            '(MySQL and MariaDB cannot roll back DDL): %s. Fix the cause and run the restore again; '
                            'the snapshot is unchanged.' % (snapshot.id, target, e),
                            command=e.command, rc=e.rc, stderr=e.stderr)
        if loader is not None:
            self.record(loader.describe())
        details = {'database': target, 'mysql_definers': mode, 'charset': part_meta.get('charset'),
                   'collation': part_meta.get('collation')}
        if mode == 'current_user':
            details['definers_rewritten'] = rewriter.rewritten
        if rewriter is not None and rewriter.renamed:
            self.record('ALTER DATABASE statements of the dump given the name %s instead of %s: %d'
                        % (target, source, rewriter.renamed))
        return details

    def _recreate(self, target, part_meta, opts):
        charset, collation = part_meta.get('charset'), part_meta.get('collation')
        for value in (charset, collation):
            if value is not None and not _NAME_RE.match(value):
                raise EngineError('snapshot records an invalid character set or collation %r' % (value,))
        create = 'CREATE DATABASE %s' % stats.quote_ident(target)
        if charset:
            create += ' CHARACTER SET %s' % charset
        if collation:
            create += ' COLLATE %s' % collation
        con = self.connect()
        dropped = False
        try:
            with con.cursor() as cur:
                # Wait for other sessions' locks no longer than the restore may take.
                cur.execute('SET SESSION lock_wait_timeout = %d' % lock_wait_seconds(opts, DROP_LOCK_WAIT))
                self.target_changed = True  # from the DROP on, unless the server refuses it (below)
                cur.execute('DROP DATABASE IF EXISTS %s' % stats.quote_ident(target))
                self.record('DROP DATABASE IF EXISTS %s' % stats.quote_ident(target))
                dropped = True
                cur.execute(create)
                self.record(create)
        except pymysql.err.MySQLError as e:
            code = e.args[0] if e.args else None
            if not dropped and code in _REFUSED_BEFORE_DROP:
                self.target_changed = False
            hint = ' (other sessions hold locks on it: stop the application first)' if code == 1205 else ''
            if dropped:
                state = ' It was dropped but could not be created again.'
            elif self.target_changed:
                state = ' Dropping it failed part-way: it may be partly dropped.'
            else:
                state = ' It was not changed.'
            raise EngineError('could not re-create database %s on %s%s: %s.%s' % (target, self._where(), hint, e,
                                                                                  state))
        finally:
            con.close()
