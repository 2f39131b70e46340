# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: loading a PostgreSQL snapshot part into a database with pg_restore or
psql (the pipelines only; which database, and what happens around it, is the engine's business).

- ``transaction``: everything in ONE psql transaction (plain dumps, and ``pg_clean: schemas``
  where the emptying SQL runs first in the same transaction): all or nothing.
- ``parallel``: ``pg_restore --jobs`` into a fresh database. pg_restore reads a pipe only with one
  worker, so a compressed custom dump is first decompressed into a private file beside the
  snapshots (while a second stream restores the pre-data section); without room for that it is
  streamed into one worker. An encrypted dump is always streamed into one worker: decrypting it
  into a file would put plaintext on disk, which encryption at rest rules out.

Every read of a snapshot file goes through ``_engine_base.input_chain`` (decrypt, decompress).

With ``--role=<owner>`` (a superuser restoring for the database owner), what only a superuser may do would fail,
so an archive is restored in passes, each with ``--use-list`` (``owner_lists``): its SCHEMA entries as the owner
(an extension may live in one of them); its EXTENSION entries (with their comments) and the data of the
extensions' configuration tables (TABLE DATA and SEQUENCE SET entries without a table or sequence of the archive)
as the login user; everything else as the owner; and last, as the login user, what pg_restore itself restores
last: the privileges (ACL, DEFAULT ACL: a superuser grants "as though it were issued by the owner of the affected
object", so the owner's objects end up the same and an extension's right) and the materialized views' data (a
refresh runs as the view's owner, after the privileges it may need). A plain dump goes through a
``PlainDumpFilter``, which runs the same statements as the login user.

In the ONE psql transaction the SQL script (a plain dump, or what pg_restore writes of an archive) goes through a
``PlainDumpFilter`` in any case: pg_dump brackets the large objects' data with its own ``BEGIN``/``COMMIT``,
which would end the restore's transaction half-way. psql takes the owner role itself (``set_role_statement``).
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import shutil
import tempfile
import threading

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import input_chain, limits
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_archive import (
    BlockScan, Incomplete, UnknownLayout, add_data_offsets, freeze_copies)
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_connect import dbname_option
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_plain import PlainDumpFilter, quote_ident
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    Step, Tap, display, find_tool, run_pipeline)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import free_bytes

PG_RESTORE_ERRORS = (r'(?m)^pg_restore: (error|fatal):', r'(?m)^pg_restore: .*\b(ERROR|FATAL|PANIC):')
PSQL_ERRORS = (r'(?m)^psql:.*\b(ERROR|FATAL|PANIC):', r'(?m)^(ERROR|FATAL|PANIC):')

# "2; 3079 16385 EXTENSION - dblink" and "3441; 0 0 COMMENT - EXTENSION dblink" in pg_restore --list.
EXTENSION_ENTRY = re.compile(r'^\d+; \d+ \d+ (EXTENSION - |COMMENT - EXTENSION )')
# "9; 2615 16386 SCHEMA - ext app" (its COMMENT and ACL entries say "COMMENT - SCHEMA ext", "ACL - SCHEMA ext").
SCHEMA_ENTRY = re.compile(r'^\d+; \d+ \d+ SCHEMA - ')
# What pg_restore restores last: "3438; 0 0 ACL public FUNCTION dblink_connect_u(text) postgres",
# "2087; 826 16441 DEFAULT ACL - DEFAULT PRIVILEGES FOR TABLES postgres" ("ACL LANGUAGE" in old archives), then
# "3397; 0 16444 MATERIALIZED VIEW DATA public mv app".
# Event triggers too (only a superuser may create one), after the privileges as pg_restore puts them: created
# before them, they would fire on the GRANTs of this pass.
LAST_ENTRY = re.compile(r'^\d+; \d+ \d+ (ACL|DEFAULT ACL|ACL LANGUAGE|MATERIALIZED VIEW DATA|EVENT TRIGGER'
                        r'|COMMENT - EVENT TRIGGER) ')
# "3395; 0 16435 TABLE DATA public t app" names the oid of its table's "217; 1259 16435 TABLE public t app" (any
# relation: pg_class is 1259); "3411; 0 0 SEQUENCE SET public s app" names its "218; 1259 16440 SEQUENCE public s
# app" only by the rest of the line.
TABLE_DATA_ENTRY = re.compile(r'^\d+; 0 (\d+) TABLE DATA ')
RELATION_ENTRY = re.compile(r'^\d+; 1259 (\d+) ')
SEQUENCE_SET_ENTRY = re.compile(r'^\d+; \d+ \d+ SEQUENCE SET (.*)$')
SEQUENCE_ENTRY = re.compile(r'^\d+; 1259 \d+ SEQUENCE (.*)$')

# The --use-list files of a restore for the owner role by a superuser, None where a pass has no entries: SCHEMA
# entries (as the owner), the extensions and their configuration tables' data (as the login user), the rest (as
# the owner), and what pg_restore restores last (as the login user).
SplitLists = collections.namedtuple('SplitLists', 'schemas extensions rest last')

# Room kept free beyond the decompressed dump itself.
SPACE_SLACK = 64 * 1024 * 1024


def set_role_statement(role):
    """SQL that makes ``role``, the owner of the database the session is in, the current role. A name that is not
    plain ASCII is not written into it: the bytes PostgreSQL stored for it are those of the database it was
    created from, and the text the module holds was decoded in the encoding of the database it was read from, so
    no spelling (raw or ``U&"..."``) names it in every database. The session then takes the database owner's name
    from the server itself."""
    if role.isascii():
        return 'SET ROLE %s' % quote_ident(role)
    return ("SELECT pg_catalog.set_config('role', pg_catalog.pg_get_userbyid(datdba), false) "
            "FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()")


def split_toc(listing):
    """(extension entries, all other lines) of a ``pg_restore --list`` output."""
    return _split(listing.splitlines(), EXTENSION_ENTRY.match)


def split_schemas(lines):
    """(SCHEMA entries, all other lines) of ``pg_restore --list`` lines. An extension may be created into a
    schema of the archive, so the schemas are restored before the extensions; their comments and privileges
    stay with the rest (they need nothing but the schema, and come after it there too)."""
    return _split(lines, SCHEMA_ENTRY.match)


def split_last(lines):
    """(the entries pg_restore restores last - privileges, then materialized views' data - all other lines)."""
    return _split(lines, LAST_ENTRY.match)


def split_extension_data(lines):
    """(the data entries of tables and sequences the archive does not create - an extension's configuration
    tables, which ``CREATE EXTENSION`` makes - all other lines), in the archive's order."""
    relations = set(m.group(1) for m in map(RELATION_ENTRY.match, lines) if m)
    sequences = set(m.group(1) for m in map(SEQUENCE_ENTRY.match, lines) if m)

    def foreign(line):
        data, setval = TABLE_DATA_ENTRY.match(line), SEQUENCE_SET_ENTRY.match(line)
        return bool(data and data.group(1) not in relations or setval and setval.group(1) not in sequences)
    return _split(lines, foreign)


def _split(lines, test):
    chosen, rest = [], []
    for line in lines:
        (chosen if test(line) else rest).append(line)
    return chosen, rest


def owner_split(listing):
    """``SplitLists`` of lines (empty lists where a pass has none) of a ``pg_restore --list`` output."""
    ext, rest = split_toc(listing)
    data, rest = split_extension_data(rest)
    last, rest = split_last(rest)
    schemas, rest = split_schemas(rest) if ext or data else ([], rest)
    return SplitLists(schemas, ext + data, rest, last)


class _Collect(object):
    """A sink that keeps a small output (a TOC listing) in memory."""

    def __init__(self):
        self.data = bytearray()

    def write(self, chunk):
        self.data += chunk

    def text(self):
        return self.data.decode('utf-8', 'replace')


class FreezeFilter(Tap):
    """Rewrites the table of contents at the start of a custom-format archive stream so that every table
    is loaded frozen (``_pg_archive.freeze_copies``) and passes the rest through unchanged. Only in front
    of a restore into a database created for it. An archive it cannot read, or a table of contents larger
    than ``MAX_HEAD``, passes unchanged (``reason`` says why): the restore is then as fast as before."""

    MAX_HEAD = 64 * 1024 * 1024

    def __init__(self):
        self.head = bytearray()
        self.next_try = 0
        self.done = False
        self.tables = 0
        self.reason = None

    def observe(self, chunk):
        pass  # pass_on does the work

    def pass_on(self, chunk):
        if self.done:
            return chunk
        self.head += chunk
        if len(self.head) < self.next_try:
            return b''
        try:
            out, self.tables, self.reason = freeze_copies(bytes(self.head))
        except Incomplete:
            if len(self.head) < self.MAX_HEAD:
                self.next_try = 2 * len(self.head)
                return b''
            out, self.reason = bytes(self.head), 'the table of contents is larger than %d bytes' % self.MAX_HEAD
        except UnknownLayout as e:
            out, self.reason = bytes(self.head), str(e)
        self.done, self.head = True, None
        return out

    def flush(self):
        if self.done:
            return b''
        self.done, rest, self.head = True, bytes(self.head), None
        self.reason = 'the stream ended inside the table of contents'
        return rest

    def describe(self):
        if self.tables:
            return 'tables loaded frozen (TRUNCATE ONLY, then COPY ... WITH (FREEZE)): %d' % self.tables
        return 'tables loaded frozen: none (%s)' % self.reason


class _FileSink(object):
    """Writes a stream into an open file descriptor."""

    def __init__(self, fd):
        self.fd = fd

    def write(self, chunk):
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view):]


class PgLoader(object):
    def __init__(self, pg, tools, secrets_dir, record):
        self.pg = pg
        self.tools = tools
        self.secrets = secrets_dir
        self.record = record

    # -- argv --------------------------------------------------------------------------------
    def psql(self, database, scripts, role=None, after=()):
        """psql running ``scripts`` (``('-f', path)`` or ``('-c', sql)``, in this order), then stdin (as
        ``role``, the owner of ``database``), then ``after``, all in one transaction."""
        argv = [self.tools.path('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction'] + \
            self.pg.tool_args() + [dbname_option(database)]
        owner = [('-c', set_role_statement(role))] if role else []
        for option, value in list(scripts) + owner + [('-f', '-')] + list(after):
            argv += [option, value]
        return Step(argv, env=self.pg.tool_env(), error_patterns=PSQL_ERRORS, name='psql')

    def pg_restore(self, args, database=None, role=None, toc=None):
        argv = [self.tools.path('pg_restore'), '--no-owner']
        if toc:
            argv.append('--use-list=' + toc)
        if database is not None:
            argv += ['--exit-on-error'] + self.pg.tool_args() + [dbname_option(database)]
        if role:
            argv.append('--role=' + role)
        return Step(argv + args, env=self.pg.tool_env(), error_patterns=PG_RESTORE_ERRORS, name='pg_restore')

    def run(self, items, stdin_path, opts, sink=None):
        self.record(' | '.join(display(i.argv) for i in items if isinstance(i, Step)) +
                    (' < %s' % stdin_path if stdin_path else ''))
        run_pipeline(items, stdin_path=stdin_path, sink=sink, **limits(opts))

    # -- pieces ------------------------------------------------------------------------------
    @staticmethod
    def freeze_filter(items, fmt):
        """Append a FreezeFilter to ``items`` when they stream a custom-format archive, and return it (None
        otherwise). Only for a load into tables the restore itself creates (see FreezeFilter)."""
        if not items or fmt != 'custom':
            return None
        freeze = FreezeFilter()
        items.append(freeze)
        return freeze

    @staticmethod
    def chain(meta, opts, partial=False):
        """Decryptor and decompressor in front of pg_restore/psql; for a pass that reads only the start
        of the archive (``partial``), the reader hanging up early (SIGPIPE) is expected. A directory
        archive is read by pg_restore itself."""
        if meta['format'] == 'directory':
            return []
        return input_chain(meta, opts.get('identity'), partial=partial)

    @staticmethod
    def _archive(fmt, source, chain):
        """pg_restore arguments naming the archive (none when it comes on stdin) and the stdin path."""
        if not chain:
            return ['--format=' + fmt, source], None
        return ['--format=' + fmt], source

    def owner_lists(self, meta, source, opts):
        """``SplitLists`` of files for ``--use-list`` (None where a pass has no entries), or None when the
        archive has nothing the login user must restore itself."""
        fmt = meta['format']
        reader = self.chain(meta, opts, partial=True)
        args, stdin = self._archive(fmt, source, reader)
        sink = _Collect()
        self.run(reader + [self.pg_restore(['--list'] + args)], stdin, opts, sink=sink)
        lines = owner_split(sink.text())
        if not (lines.extensions or lines.last):
            return None
        tag = secrets.token_hex(4)
        return SplitLists(*[self._list_file('%s-%s.list' % (name, tag), entries)
                            for name, entries in zip(('schemas', 'extensions', 'objects', 'last'), lines)])

    def _list_file(self, name, entries):
        return self.secrets.write(name, '\n'.join(entries) + '\n') if entries else None

    # -- the two ways ------------------------------------------------------------------------
    def transaction(self, meta, source, database, role, opts, first_sql=None, as_superuser=False):
        """One psql transaction: ``first_sql`` (a file) first, then the snapshot; all or nothing. ``role``: the
        owner of ``database``, who the snapshot is restored for (None: the login user)."""
        fmt = meta['format']
        items = self.chain(meta, opts)
        scripts = [('-f', first_sql)] if first_sql else []
        if fmt == 'plain':
            self._transaction_plain(items, source, database, role, opts, scripts, as_superuser)
            return
        args, stdin = self._archive(fmt, source, items)
        lists = self.owner_lists(meta, source, opts) if role and as_superuser else None
        toc, after = None, ()
        if lists:
            scripts += self._first_scripts(meta, source, role, opts, lists)
            toc = lists.rest
            after = self._last_scripts(meta, source, opts, lists)
        # Every table the archive creates is created in this transaction: loading it frozen is safe.
        freeze = self.freeze_filter(items, fmt)
        items.append(self.pg_restore(['--file=-'] + args, toc=toc))
        self._through_psql(items, stdin, database, role, opts, scripts, after=after)
        if freeze:
            self.record(freeze.describe())

    def _transaction_plain(self, items, source, database, role, opts, scripts, as_superuser):
        """A plain dump into psql as ``role``; a superuser runs what it must (see PlainDumpFilter) as itself."""
        if not items:
            items.append(Step([find_tool('cat')], name='cat'))  # a pipeline starts with a process
        self._through_psql(items, source, database, role, opts, scripts, role if as_superuser else None)

    def _through_psql(self, items, stdin, database, role, opts, scripts, wrap_for=None, after=()):
        """``items`` (which write an SQL script) through a PlainDumpFilter (for ``wrap_for``) into psql."""
        statements = PlainDumpFilter(set_role_statement(wrap_for) if wrap_for else None)
        items += [statements, self.psql(database, scripts, role=role, after=after)]
        self.run(items, stdin, opts)
        for line in statements.describe():
            self.record(line)

    def _first_scripts(self, meta, source, role, opts, lists):
        """psql scripts that restore the archive's schemas as ``role`` and then its extensions (and their
        configuration tables' data) as the login user, ahead of the rest."""
        scripts = []
        if lists.schemas:
            scripts += [('-c', set_role_statement(role)),
                        ('-f', self._sql_file(meta, source, opts, 'schemas', lists.schemas)), ('-c', 'RESET ROLE')]
        if lists.extensions:
            scripts.append(('-f', self._sql_file(meta, source, opts, 'extensions', lists.extensions)))
        return scripts

    def _last_scripts(self, meta, source, opts, lists):
        """psql scripts that restore, after the rest, what pg_restore restores last as the login user."""
        if not lists.last:
            return []
        return [('-c', 'RESET ROLE'), ('-f', self._sql_file(meta, source, opts, 'last', lists.last))]

    def _sql_file(self, meta, source, opts, name, toc):
        """The SQL pg_restore writes for the entries of ``toc``, in a private file."""
        path = os.path.join(self.secrets.path, '%s-%s.sql' % (name, secrets.token_hex(4)))
        reader = self.chain(meta, opts, partial=True)
        args, stdin = self._archive(meta['format'], source, reader)
        self.run(reader + [self.pg_restore(['--file=' + path] + args, toc=toc)], stdin, opts)
        return path

    def parallel(self, meta, source, database, role, opts, scratch_root, jobs, as_superuser=False):
        """pg_restore with ``jobs`` workers into a database created for this restore: a compressed custom
        dump goes through a FreezeFilter, whose TRUNCATE before each table's COPY is only safe there."""
        lists = self.owner_lists(meta, source, opts) if role and as_superuser else None
        if lists and lists.schemas:
            self._restore_entries(meta, source, database, opts, lists.schemas, role=role)
        if lists and lists.extensions:
            self._restore_entries(meta, source, database, opts, lists.extensions)
        self._restore_main(meta, source, database, role, opts, scratch_root, jobs, lists.rest if lists else None,
                           last=lists.last if lists else None)

    def _restore_main(self, meta, source, database, role, opts, scratch_root, jobs, toc, last=None):
        """The archive's entries (those of ``toc``) as ``role``, with ``jobs`` workers where it can; then those of
        ``last`` as the login user (with the workers too where the archive is a file: materialized views)."""
        streamed = bool(self.chain(meta, opts))
        if not streamed:
            self._restore(meta, source, database, role, opts, jobs, toc)
            if last:
                self._restore(meta, source, database, None, opts, jobs, last)
            return
        if not (meta.get('encryption') or jobs < 2):
            need = meta.get('dump_bytes')
            if need and free_bytes(scratch_root) >= need + SPACE_SLACK:
                self._restore_decompressed(meta, source, database, role, opts, jobs, toc, scratch_root, last)
                return
        self._restore_streamed(meta, source, database, role, opts, jobs, toc, scratch_root)
        if last:
            self._restore_entries(meta, source, database, opts, last)

    def _restore_streamed(self, meta, source, database, role, opts, jobs, toc, scratch_root):
        """One worker reading the decompressing (decrypting) stream."""
        if meta.get('encryption') and jobs > 1:
            self.record('the dump is encrypted: restoring from the decrypting stream with one worker (a '
                        'parallel restore would need the plaintext dump on disk)')
        elif jobs > 1:
            self.record('not enough free space under %s for the decompressed dump (%s bytes): restoring from a '
                        'pipe with one worker' % (scratch_root, meta.get('dump_bytes')))
        self._restore(meta, source, database, role, opts, 1, toc)

    def _restore_entries(self, meta, source, database, opts, toc, role=None):
        """The entries of ``toc`` (a few), as ``role`` or the login user."""
        reader = self.chain(meta, opts, partial=True)
        args, stdin = self._archive(meta['format'], source, reader)
        self.run(reader + [self.pg_restore(args, database, role=role, toc=toc)], stdin, opts)

    def _restore(self, meta, source, database, role, opts, jobs, toc, sections=(), plain_file=False):
        """One pg_restore; ``plain_file``: ``source`` is the decompressed archive, read directly. A
        custom-format stream that holds the data goes through a FreezeFilter (the database is new)."""
        items = [] if plain_file else self.chain(meta, opts, partial=bool(sections))
        args, stdin = self._archive(meta['format'], source, items)
        freeze = self.freeze_filter(items, meta['format']) if not sections or 'data' in sections else None
        workers = ['--jobs=%d' % jobs] if jobs > 1 else []
        items.append(self.pg_restore(workers + ['--section=' + s for s in sections] + args, database, role=role,
                                     toc=toc))
        self.run(items, stdin, opts)
        if freeze:
            self.record(freeze.describe())

    def _restore_decompressed(self, meta, source, database, role, opts, jobs, toc, scratch_root, last=None):
        """Decompress into a private file for the parallel workers and, meanwhile, restore the
        pre-data section (the CREATE statements, which need only the archive's table of contents)
        from a second stream: the decompression pass then costs hardly any wall time. Never used
        for an encrypted dump (the file would be plaintext)."""
        tmpdir = tempfile.mkdtemp(prefix='.restore-', dir=scratch_root)
        try:
            plain = os.path.join(tmpdir, 'database.dump')
            os.close(os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            errors = []

            def pre_data():
                try:
                    self._restore(meta, source, database, role, opts, 1, toc, sections=('pre-data',))
                except BaseException as e:  # pylint: disable=broad-except
                    errors.append(e)

            worker = threading.Thread(target=pre_data, daemon=True)
            worker.start()
            scan = BlockScan(plain) if meta['format'] == 'custom' else None
            if scan:
                scan.start()
            try:
                reader = self.chain(meta, opts)
                self.record(' | '.join(display(s.argv) for s in reader) + ' < %s > %s' % (source, plain))
                freeze = self.freeze_filter(reader, meta['format'])
                if freeze:
                    fd = os.open(plain, os.O_WRONLY)
                    try:
                        run_pipeline(reader, stdin_path=source, sink=_FileSink(fd), **limits(opts))
                    finally:
                        os.close(fd)
                else:
                    run_pipeline(reader, stdin_path=source, stdout_path=plain, **limits(opts))
            finally:
                worker.join()
                block_starts = scan.stop() if scan else None
            if errors:
                raise errors[0]
            if freeze:
                self.record(freeze.describe())
            if scan:
                written, why = add_data_offsets(plain, block_starts)
                self.record('data offsets for the parallel workers: %s' % (
                    'written for %d tables' % written if written else 'not written (%s)' % why))
            self._restore(meta, plain, database, role, opts, jobs, toc, sections=('data', 'post-data'),
                          plain_file=True)
            if last:
                self._restore(meta, plain, database, None, opts, jobs, last, plain_file=True)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
