# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the PostgreSQL engine.

Snapshot: one REPEATABLE READ transaction exports its snapshot and pg_dump reads exactly that
snapshot (``--snapshot``) while the same transaction counts (and checksums) every table, so the
recorded statistics describe the dumped rows even while the application keeps writing. Custom and
plain dumps are written uncompressed (``-Z 0``) into a streaming compressor and hashed by the sink;
the directory format is compressed by pg_dump itself and hashed after it finished.

Restore: ``pg_clean: recreate`` restores into a new scratch database created from template0 with
the recorded encoding and locale, and only once that succeeded swaps it into the target's place in ONE
transaction (the target renamed aside, the scratch database renamed to the target's name), then drops
the old database: a restore that fails leaves the target as it was, and at no moment is there no
database of that name.
``pg_clean: schemas`` empties the target and restores into it inside ONE psql transaction, so a
failure rolls back the emptying too. See docs/engines/postgresql.md.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (
    DEFAULT_LEVEL, Engine, EngineError, check_compression, encryption_record, in_workers, output_chain,
    limits, parse_version, resolve_excluded_tables, version_text)
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_client import (
    ClientTools, dump_client_problem, major, restore_client_problem)
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_connect import (
    PgConnection, dbname_option, error_text, is_unreachable, psycopg, require_psycopg)
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_database import (
    allow_connections_statement, can_act_as, clean_statements, create_database_statement, database_facts,
    database_owner, drop_database_statement, maintenance_database, other_sessions, rename_database_statement,
    run_statement, server_facts, terminate_sessions)
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_load import PgLoader, quote_ident
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_stats import (
    CHECKSUM_ALGORITHM, analyze_targets, collect, foreign_keys, list_tables)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    CountingTap, Step, TailTap, ToolError, run_pipeline)

DUMP_NAMES = {'custom': 'database.dump', 'plain': 'database.sql', 'directory': 'database.dir'}
PLAIN_FOOTER = b'-- PostgreSQL database dump complete'
SCRATCH_PREFIX = 'djangoops_restore_'
REPLACED_PREFIX = 'djangoops_replaced_'

PG_DUMP_ERRORS = (r'(?m)^pg_dump: (error|fatal):', r'(?m)^pg_dump: .*\b(ERROR|FATAL|PANIC):')


def version_from_num(num):
    """server_version_num to a version tuple: 150018 -> (15, 18), 90624 -> (9, 6, 24)."""
    if num >= 100000:
        return (num // 10000, num % 10000)
    return (num // 10000, num // 100 % 100, num % 100)


def directory_compress_args(compression, level, pg_dump_version):
    """pg_dump's own compression for the directory format."""
    if compression == 'none':
        return ['-Z', '0']
    if compression == 'gzip':
        return ['-Z', str(level)]
    if compression == 'zstd':
        if major(pg_dump_version) < (16,):
            raise EngineError('format directory with compression zstd needs pg_dump 16 or later (this host has '
                              'pg_dump %s); use compression gzip or none, or the custom format'
                              % version_text(pg_dump_version))
        return ['--compress=zstd:%d' % level]
    raise EngineError('compression %r is not available for the directory format' % (compression,))


def with_note(error, note):
    """The same kind of error with a sentence for the operator appended."""
    msg = '%s; %s' % (str(error).rstrip('. '), note)
    if isinstance(error, ToolError):
        return ToolError(msg, command=error.command, rc=error.rc, stderr=error.stderr)
    return type(error)(msg)


class FooterTap(TailTap):
    """A plain dump is complete only when it ends with pg_dump's completion comment."""

    def finish(self):
        if PLAIN_FOOTER not in self.tail:
            raise ToolError('the plain dump ended without pg_dump\'s "%s" footer after %d bytes; it is incomplete'
                            % (PLAIN_FOOTER.decode(), self.total))


class ExportedSnapshot(object):
    """A REPEATABLE READ transaction that exports its snapshot for pg_dump and, in a thread,
    computes table statistics in that same snapshot while the dump runs."""

    def __init__(self, pg, database, mode, excluded=()):
        self.pg = pg
        self.database = database
        self.mode = mode
        self.excluded = excluded
        self.con = None
        self.snapshot_id = None
        self.stats = None
        self.error = None
        self._thread = None

    def __enter__(self):
        self.con = self.pg.connect(self.database, autocommit=False)
        try:
            self.con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.con.read_only = True
            self.snapshot_id = self.con.execute('SELECT pg_catalog.pg_export_snapshot()').fetchone()[0]
        except psycopg.Error as e:
            self.con.close()
            raise EngineError('%s: exporting a snapshot for pg_dump failed: %s'
                              % (self.pg.where(self.database), error_text(e)))
        return self

    def start_stats(self):
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self):
        try:
            self.stats = collect(self.con, self.mode, self.excluded)
        except BaseException as e:  # pylint: disable=broad-except
            self.error = e

    def finish(self):
        """Wait for the statistics; raise what went wrong while computing them."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.stats

    def stop(self):
        """Cancel the statistics if they still run; return the error they ended with, if any.
        A failed statistics query aborts the transaction and so the snapshot pg_dump needs: then
        that error, not pg_dump's "could not import the requested snapshot", is the cause."""
        if self._thread is not None:
            if self._thread.is_alive():
                try:
                    self.con.cancel()
                except psycopg.Error:
                    pass
            self._thread.join()
        return self.error

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        try:
            self.con.rollback()
        except psycopg.Error:
            pass
        self.con.close()
        return False


class PostgreSQLEngine(Engine):
    name = 'postgresql'
    formats = ('custom', 'directory', 'plain')
    default_format = 'custom'
    text_dump = True

    def __init__(self, conn, secrets_dir):
        super().__init__(conn, secrets_dir)
        self.pg = PgConnection(conn, secrets_dir)
        self.tools = None
        self._facts = {}
        self._dump_opts = None
        self._auto_compression = False
        self._loaded = False
        self._restored_stats = None
        self._excluded = {}  # exclude_table_data: key -> (schema, table)

    # -- options -----------------------------------------------------------------------------
    def resolve_options(self, opts):
        self._auto_compression = opts.get('compression') in (None, 'auto')
        opts = super().resolve_options(opts)
        jobs = opts.get('jobs') or 1
        if jobs < 1:
            raise EngineError('jobs must be 1 or more, got %s' % jobs)
        opts['jobs'] = jobs
        if opts['format'] == 'directory':
            opts.pop('compression_params', None)  # pg_dump compresses each file itself, at the level alone
        if opts['format'] == 'directory' and opts.get('encryption'):
            raise EngineError('format directory cannot be encrypted: pg_dump writes its files itself, so they would '
                              'be plaintext on disk; with encrypt_recipients use format custom (restored with '
                              'pg_restore too) or plain')
        # check_client finishes the choice once pg_dump's version is known (zstd in the directory format).
        self._dump_opts = opts
        return opts

    # -- facts -------------------------------------------------------------------------------
    def _database(self, database=None):
        name = database or self.conn.get('database')
        if not name:
            raise EngineError('engine postgresql needs database: the name of the database')
        return name

    def probe(self, database=None):
        require_psycopg()
        database = self._database(database)
        facts = self._probe_server(database)
        facts['server_version'] = version_text(version_from_num(facts['server_version_num']))
        if self.tools is None:
            self.tools = ClientTools(self.conn.get('client_bin_dir'), version_from_num(facts['server_version_num']))
        try:
            facts['client_version'] = version_text(self.tools.version('pg_dump'))
        except (EngineError, ToolError) as e:
            facts['client_version'] = None
            facts['client_problem'] = str(e)
        facts['client_bin_dir'] = self.tools.bin_dir
        self._facts[database] = facts
        return facts

    def _probe_server(self, database):
        try:
            con = self.pg.connect(database)
        except EngineError as first:
            if is_unreachable(str(first)):
                raise
            # Not necessarily a missing database: ask the server from a database that surely exists.
            facts = self._probe_missing(database, first)
            facts.update(database=database, database_exists=False, database_bytes=0)
            return facts
        with con:
            facts = database_facts(con)
        facts['database_exists'] = True
        return facts

    def _probe_missing(self, database, first):
        for maint in (maintenance_database(database), 'template1'):
            try:
                con = self.pg.connect(maint)
            except EngineError:
                continue
            with con:
                exists = database_owner(con, database) is not None
                facts = server_facts(con)
            if exists:
                raise first
            return facts
        raise first

    def check_client(self, probe, part_meta=None):
        if part_meta is not None:
            self._check_restore_tools(part_meta, version_from_num(probe['server_version_num']))
            return
        opts = self._dump_opts
        if not probe.get('client_version'):
            raise EngineError(probe.get('client_problem') or 'pg_dump was not found')
        server_version = version_from_num(probe['server_version_num'])
        pg_dump_version = parse_version(probe['client_version'])
        problem = dump_client_problem('pg_dump', pg_dump_version, server_version)
        if problem:
            raise EngineError(problem)
        if opts['format'] == 'directory' and opts['compression'] == 'zstd' and major(pg_dump_version) < (16,) \
                and self._auto_compression:
            # compression auto means "the best this host can do"; in the directory format that is gzip here.
            opts['compression'] = 'gzip'
            opts['compression_level'] = DEFAULT_LEVEL['gzip']
        if opts['format'] == 'directory':
            directory_compress_args(opts['compression'], opts['compression_level'], pg_dump_version)

    def table_stats(self, mode, database=None):
        if mode == 'none':
            return {}
        database = self._database(database)
        con = self.pg.connect(database, autocommit=False)
        try:
            con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            con.read_only = True
            return collect(con, mode)
        finally:
            try:
                con.rollback()
            finally:
                con.close()

    def table_names(self, database=None):
        database = self._database(database)
        try:
            with self.pg.connect(database) as con:
                return sorted('%s.%s' % t for t in list_tables(con))
        except psycopg.Error as e:
            raise EngineError('%s: reading the table names failed: %s' % (self.pg.where(database), error_text(e)))

    def exclusions(self, names, database=None):
        database = self._database(database)
        try:
            with self.pg.connect(database) as con:
                tables, keys = list_tables(con), foreign_keys(con)
        except psycopg.Error as e:
            raise EngineError('%s: reading the tables for exclude_table_data failed: %s'
                              % (self.pg.where(database), error_text(e)))
        by_key = dict(('%s.%s' % (schema, table), (schema, table)) for schema, table in tables)
        chosen = resolve_excluded_tables(names, dict((k, (k, t[1])) for k, t in by_key.items()), keys,
                                         'database %s' % database)
        self._excluded = dict((k, by_key[k]) for k in chosen)
        return chosen

    @staticmethod
    def exclude_pattern(schema, table):
        """A pg_dump pattern that matches exactly this table: quoted, so no character is a wildcard."""
        return '"%s"."%s"' % (schema.replace('"', '""'), table.replace('"', '""'))

    # -- snapshot ----------------------------------------------------------------------------
    def dump(self, part, opts):
        database = self._database()
        facts = self._facts.get(database) or self.probe(database)
        fmt = opts['format']
        compression = opts.get('compression', 'none')
        level = check_compression(compression, opts.get('compression_level'))
        pg_dump = self.tools.path('pg_dump')
        pg_dump_version = self.tools.version('pg_dump')
        argv = [pg_dump] + self.pg.tool_args() + [dbname_option(database), '--format=' + fmt]
        if fmt == 'plain':
            argv.append('--no-owner')  # psql cannot skip ownership at restore time the way pg_restore can
        excluded = list(opts.get('exclude_table_data') or ())
        if set(excluded) - set(self._excluded):
            self.exclusions(excluded, database)
        argv += ['--exclude-table-data=' + self.exclude_pattern(*self._excluded[k]) for k in excluded]
        mode = opts.get('table_stats', 'counts')
        holder = ExportedSnapshot(self.pg, database, mode, frozenset(excluded)) if mode != 'none' else None
        with holder if holder is not None else contextlib.nullcontext():
            if holder is not None:
                argv.append('--snapshot=' + holder.snapshot_id)
                holder.start_stats()
            try:
                if fmt == 'directory':
                    extra = self._dump_directory(part, argv, compression, level, opts, pg_dump_version)
                else:
                    extra = self._dump_stream(part, argv, fmt, compression, level, opts)
            except ToolError as e:
                cause = holder.stop() if holder is not None else None
                if isinstance(cause, EngineError) and 'cancelled' not in str(cause):
                    raise EngineError('%s (so pg_dump failed: %s)' % (cause, e))
                raise
            tables = holder.finish() if holder is not None else {}
        meta = {
            'kind': 'database',
            'engine': self.name,
            'database': database,
            'format': fmt,
            'compression': compression,
            'compression_level': level,
            'server_version': facts['server_version'],
            'server_version_num': facts['server_version_num'],
            'client_version': version_text(pg_dump_version),
            'pg_dump_version': version_text(pg_dump_version),
            'encoding': facts.get('encoding'),
            'lc_collate': facts.get('lc_collate'),
            'lc_ctype': facts.get('lc_ctype'),
            'owner': facts.get('owner'),
            'extensions': facts.get('extensions', []),
            'table_stats': mode,
            'checksum_algorithm': CHECKSUM_ALGORITHM if mode == 'checksums' else None,
            'stats_snapshot': 'same as the dump (pg_dump --snapshot)' if mode != 'none' else None,
            'tables': tables,
        }
        for key in ('locale_provider', 'provider_locale', 'icu_rules'):
            if facts.get(key):
                meta[key] = facts[key]
        if opts.get('compression_params'):
            meta['compression_params'] = opts['compression_params']
        meta.update(extra)
        encryption = encryption_record(opts, part.files)
        if encryption:
            meta['encryption'] = encryption
        return meta

    def _dump_stream(self, part, argv, fmt, compression, level, opts):
        """custom and plain: pg_dump -Z 0 | compressor -> hashing sink."""
        argv = argv + ['-Z', '0']
        dump = Step(argv, env=self.pg.tool_env(), error_patterns=PG_DUMP_ERRORS, name='pg_dump')
        tap = FooterTap() if fmt == 'plain' else CountingTap()  # counts the uncompressed bytes
        items = [dump, tap]
        chain, suffix = output_chain(dict(opts, compression=compression, compression_level=level))
        items += chain
        self.record(' | '.join(i.display() for i in items if isinstance(i, Step)))
        hf = part.create(DUMP_NAMES[fmt] + suffix)
        try:
            run_pipeline(items, sink=hf, **limits(opts))
            hf.close()
        except BaseException:
            hf.discard()
            raise
        part.add_hashed(hf)
        return {'dump_bytes': tap.total}

    def _dump_directory(self, part, argv, compression, level, opts, pg_dump_version):
        """directory: pg_dump compresses each file itself with --jobs workers; hashed afterwards."""
        out = part.path_of(DUMP_NAMES['directory'])
        argv = argv + ['--file=' + out, '--jobs=%d' % opts['jobs']] + \
            directory_compress_args(compression, level, pg_dump_version)
        step = Step(argv, env=self.pg.tool_env(), error_patterns=PG_DUMP_ERRORS, name='pg_dump')
        self.record(step.display())
        run_pipeline([step], **limits(opts))
        os.chmod(out, 0o700)
        for name in sorted(os.listdir(out)):
            part.add_existing(os.path.join(DUMP_NAMES['directory'], name))
        return {'jobs': opts['jobs']}

    # -- restore -----------------------------------------------------------------------------
    def restore(self, snapshot, part_meta, opts):
        target = self._database(opts.get('database') or part_meta.get('database'))
        fmt = part_meta.get('format')
        if fmt not in self.formats:
            raise EngineError('snapshot %s holds a PostgreSQL dump in format %r, which this engine cannot restore'
                              % (snapshot.id, fmt))
        facts = self._facts.get(target) or self.probe(target)
        source = self._source(snapshot, part_meta)
        if opts.get('pg_clean', 'recreate') == 'schemas':
            self._restore_in_place(source, part_meta, target, facts, opts, snapshot)
            return {'database': target}
        result = {'database': target}
        warning = self._restore_recreate(source, part_meta, target, opts, snapshot)
        if warning:
            result['warnings'] = [warning]
        return result

    def _check_restore_tools(self, meta, server_version):
        """Before the target is touched: the tools the restore runs are there, can read the snapshot and can
        restore into this server."""
        writer = parse_version(meta.get('pg_dump_version') or '')
        self.tools.path('psql')
        tool = self.tools.version('pg_restore' if meta['format'] != 'plain' else 'psql')
        problem = restore_client_problem(meta['format'], tool, writer, server_version)
        if problem:
            raise EngineError(problem)

    @staticmethod
    def _source(snapshot, meta):
        files = meta.get('files') or []
        if not files:
            raise EngineError('snapshot %s: the database part lists no files' % snapshot.id)
        first = snapshot.file_path(files[0])
        if meta['format'] == 'directory':
            return os.path.dirname(first)
        return first

    def _connect_maintenance(self, target):
        try:
            return self.pg.connect(maintenance_database(target))
        except EngineError:
            return self.pg.connect('template1')

    def _choose_owner(self, con, existing_owner, meta, me):
        """Who owns what the restore creates: the target's owner, else the recorded owner when the
        login user may act as that role, else the login user."""
        if existing_owner:
            if not can_act_as(con, existing_owner):
                raise EngineError('user %s may not replace database %s, which belongs to %s; log in as %s, a member '
                                  'of it, or a superuser' % (me, meta.get('database'), existing_owner, existing_owner))
            return existing_owner
        recorded = meta.get('owner')
        if recorded and can_act_as(con, recorded):
            return recorded
        return me

    def _restore_recreate(self, source, meta, target, opts, snapshot):
        con = self._connect_maintenance(target)
        scratch = None
        swapped = False
        version_num = 0
        try:
            server = server_facts(con)
            version_num = server['server_version_num']
            existing_owner = database_owner(con, target)
            owner = self._choose_owner(con, existing_owner, dict(meta, database=target), server['current_user'])
            if existing_owner and not opts.get('terminate_connections'):
                self._refuse_if_busy(con, target)
            scratch = SCRATCH_PREFIX + secrets.token_hex(6)
            try:
                run_statement(con, create_database_statement(scratch, meta, owner, server['server_version_num']),
                              self.record)
            except EngineError as e:
                scratch = None
                if 'permission denied' in str(e):
                    raise EngineError('%s. pg_clean: recreate restores into a new database and needs CREATEDB; '
                                      'without it use pg_clean: schemas' % e)
                raise
            role = owner if owner != server['current_user'] else None
            try:
                self._load(source, meta, scratch, role, opts, snapshot, as_superuser=server['is_superuser'])
            except (ToolError, EngineError) as e:
                raise with_note(e, 'database %s was not changed: the restore ran into the scratch database %s, '
                                   'which is dropped' % (target, scratch))
            if not existing_owner:
                self.target_changed = True  # from this rename on, a database of the target's name exists
                run_statement(con, rename_database_statement(scratch, target), self.record)
                swapped = True
                return None
            try:
                replaced = self._swap(con, scratch, target, opts)
            except EngineError as e:
                raise with_note(e, 'database %s was not changed; the restored copy %s is dropped' % (target, scratch))
            swapped = True
            return self._drop_replaced(con, replaced, target, version_num)
        except BaseException:
            if scratch is not None and not swapped:
                try:
                    run_statement(con, drop_database_statement(scratch, force=version_num >= 130000),
                                  self.record)
                except Exception:  # pylint: disable=broad-except
                    pass  # the original error matters; the scratch name says what it is
            raise
        finally:
            con.close()

    def _refuse_if_busy(self, con, target):
        busy = other_sessions(con, target)
        if busy:
            raise EngineError('database %s is in use by %d other session(s); stop the application or set '
                              'terminate_connections: true' % (target, busy))

    def _swap(self, con, scratch, target, opts):
        """Put the restored copy in the target's place: ONE transaction renames the target aside and the
        scratch database to the target's name, so the name always holds a complete database, the old or
        the new one. A rename needs the database to itself: with ``terminate_connections`` new sessions are
        shut out (ALLOW_CONNECTIONS false, undone if the swap fails) and the others terminated; without it a
        busy target is refused and nothing changes. Returns the name the old database now has."""
        replaced = REPLACED_PREFIX + secrets.token_hex(6)
        terminate = opts.get('terminate_connections')
        shut_out = False  # whether this swap turned ALLOW_CONNECTIONS off (and so must turn it on again)
        if not terminate:
            self._refuse_if_busy(con, target)
        elif con.execute('SELECT datallowconn FROM pg_catalog.pg_database WHERE datname = %s',
                         (target,)).fetchone()[0]:
            run_statement(con, allow_connections_statement(target, False), self.record)
            shut_out = True
        swap = [rename_database_statement(target, replaced), rename_database_statement(scratch, target)]
        attempts_left = 5 if terminate else 1
        try:
            while True:
                attempts_left -= 1
                if terminate:
                    self.record('terminate other sessions of %s: %d' % (target, terminate_sessions(con, target)))
                try:
                    with con.transaction():
                        for statement in swap:
                            run_statement(con, statement, self.record)
                        # Both renames done: the commit puts the restored copy in the target's place. A failed
                        # statement rolled back changes nothing; a commit that failed may have happened.
                        self.target_changed = True
                    return replaced
                except (EngineError, psycopg.Error) as e:  # a statement (run_statement wraps it), or the commit
                    cause = e.__cause__ if isinstance(e, EngineError) else e
                    # ObjectInUse (55006): a session is still there; a terminated one takes a moment to go
                    if not attempts_left or not isinstance(cause, psycopg.errors.ObjectInUse):
                        raise EngineError('swapping the restored copy %s in for %s failed: %s'
                                          % (scratch, target, error_text(cause)))
                time.sleep(0.1)
        except BaseException:
            if shut_out:
                try:
                    run_statement(con, allow_connections_statement(target, True), self.record)
                except Exception:  # pylint: disable=broad-except
                    # The original error matters; but the target now refuses connections, which the
                    # application would find: it is not as it was.
                    self.target_changed = True
            raise

    def _drop_replaced(self, con, replaced, target, version_num):
        """Drop the database the restore replaced; a warning (not a failure: the restore is done) if that fails."""
        try:
            run_statement(con, drop_database_statement(replaced, force=version_num >= 130000), self.record)
        except EngineError as e:
            return ('database %s was restored; the database it replaced is kept as %s because dropping it failed '
                    '(%s): drop it with DROP DATABASE %s' % (target, replaced, e, quote_ident(replaced)))
        return None

    def _restore_in_place(self, source, meta, target, facts, opts, snapshot):
        created = False
        if not facts.get('database_exists'):
            self._create_target(target, meta)
            created = True
            self.target_changed = True  # dropped again below if the restore fails
        try:
            con = self.pg.connect(target)
            try:
                server = server_facts(con)
                owner = database_owner(con, target)
                if opts.get('terminate_connections'):
                    self.record('terminate other sessions of %s: %d' % (target, terminate_sessions(con, target)))
                else:
                    self._refuse_if_busy(con, target)
                clean_sql = ''.join(s.as_string(con) + ';\n' for s in clean_statements(con))
                role = owner if owner != server['current_user'] and can_act_as(con, owner) else None
            finally:
                con.close()
            # Not a secret, but it lives and dies with the call like one.
            clean_file = self.secrets.write('clean-%s.sql' % secrets.token_hex(4), clean_sql)
            self.record('empty every schema of %s in the restore transaction:\n%s' % (target, clean_sql.strip()))
            self.target_changed = True  # the transaction that empties and restores the target may commit
            self._load(source, meta, target, role, opts, snapshot, clean_file=clean_file,
                       as_superuser=server['is_superuser'])
        except (ToolError, EngineError) as e:
            if self._loaded:
                raise
            if created:
                self.target_changed = not self._drop_quietly(target)
                raise with_note(e, 'database %s, created for this restore, was dropped again' % target)
            self.target_changed = False  # the one transaction failed, so it was rolled back
            raise with_note(e, 'database %s was not changed: emptying and restoring ran in one transaction, '
                               'which was rolled back' % target)

    def _create_target(self, target, meta):
        con = self._connect_maintenance(target)
        try:
            server = server_facts(con)
            owner = self._choose_owner(con, None, meta, server['current_user'])
            run_statement(con, create_database_statement(target, meta, owner, server['server_version_num']),
                          self.record)
        finally:
            con.close()

    def _drop_quietly(self, name):
        """Best effort: the error that led here is what the operator must see. Returns whether it was dropped."""
        try:
            con = self._connect_maintenance(name)
        except EngineError:
            return False
        try:
            force = server_facts(con)['server_version_num'] >= 130000
            run_statement(con, drop_database_statement(name, force=force), self.record)
        except Exception:  # pylint: disable=broad-except
            return False
        finally:
            con.close()
        return True

    # -- loading -----------------------------------------------------------------------------
    def _load(self, source, meta, database, role, opts, snapshot, clean_file=None, as_superuser=False):
        loader = PgLoader(self.pg, self.tools, self.secrets, self.record)
        if meta['format'] == 'plain' or clean_file:
            loader.transaction(meta, source, database, role, opts, first_sql=clean_file, as_superuser=as_superuser)
        else:
            loader.parallel(meta, source, database, role, opts, os.path.dirname(snapshot.path),
                            max(1, opts.get('jobs') or 1), as_superuser=as_superuser)
        self._loaded = True
        self._after_load(database, opts)

    def restored_stats(self, mode):
        if self._restored_stats is not None and self._restored_stats[0] == mode:
            return self._restored_stats[1]
        return None

    def _after_load(self, database, opts):
        """Fresh planner statistics (the application comes back to a database it can query fast) and,
        with ``verify_tables``, the table statistics db_restore compares with the manifest. Both only
        read the restored rows, so they run at once on ``jobs`` connections: the statistics first,
        then ANALYZE relation by relation, largest first."""
        mode = opts.get('verify_tables') or 'none'
        jobs = max(1, opts.get('jobs') or 1)
        con = self.pg.connect(database)
        try:
            relations = analyze_targets(con)
        except psycopg.Error as e:
            raise EngineError('ANALYZE after the restore of %s failed: %s' % (database, error_text(e)))
        finally:
            con.close()

        def analyze(relation):
            def task(worker_con):
                try:
                    worker_con.execute('ANALYZE ' + relation)  # a name quoted by format('%I.%I')
                except psycopg.Error as e:
                    raise EngineError('ANALYZE after the restore of %s failed on %s: %s'
                                      % (database, relation, error_text(e)))
            return task

        tasks = [analyze(r) for r in relations]
        if mode != 'none':
            tasks.insert(0, lambda dummy: self.table_stats(mode, database=database))
        self.record('SQL: ANALYZE (in %s, %d relations on %d connections%s)'
                    % (database, len(relations), min(jobs, len(tasks)),
                       ', with the table %s' % mode if mode != 'none' else ''))
        results = in_workers(tasks, jobs, lambda: contextlib.closing(self.pg.connect(database)))
        self._restored_stats = (mode, results[0]) if mode != 'none' else None
