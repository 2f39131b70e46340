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

With ``--role=<owner>`` (a superuser restoring for the database owner), extensions that only a
superuser may create would fail, so an archive with EXTENSION entries is restored in three passes: its
SCHEMA entries as the owner (an extension may live in one of them), its EXTENSION entries (and their
comments) as the login user, then everything else as the owner. A plain dump goes through an
``ExtensionRoleFilter``, which runs its ``CREATE EXTENSION`` and ``COMMENT ON EXTENSION`` statements as the
login user.
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
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_plain import ExtensionRoleFilter, quote_ident
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    Step, Tap, display, find_tool, run_pipeline)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import free_bytes

PG_RESTORE_ERRORS = (r'(?m)^pg_restore: (error|fatal):', r'(?m)^pg_restore: .*\b(ERROR|FATAL|PANIC):')
PSQL_ERRORS = (r'(?m)^psql:.*\b(ERROR|FATAL|PANIC):', r'(?m)^(ERROR|FATAL|PANIC):')

# "2; 3079 16385 EXTENSION - dblink" and "3441; 0 0 COMMENT - EXTENSION dblink" in pg_restore --list.
EXTENSION_ENTRY = re.compile(r'^\d+; \d+ \d+ (EXTENSION - |COMMENT - EXTENSION )')
# "9; 2615 16386 SCHEMA - ext app" (its COMMENT and ACL entries say "COMMENT - SCHEMA ext", "ACL - SCHEMA ext").
SCHEMA_ENTRY = re.compile(r'^\d+; \d+ \d+ SCHEMA - ')

# The --use-list files of a restore for the owner role: SCHEMA entries (None: the archive has none), EXTENSION
# entries, and the rest.
SplitLists = collections.namedtuple('SplitLists', 'schemas extensions rest')

# Room kept free beyond the decompressed dump itself.
SPACE_SLACK = 64 * 1024 * 1024


def split_toc(listing):
    """(extension entries, all other lines) of a ``pg_restore --list`` output."""
    ext, rest = [], []
    for line in listing.splitlines():
        (ext if EXTENSION_ENTRY.match(line) else rest).append(line)
    return ext, rest


def split_schemas(lines):
    """(SCHEMA entries, all other lines) of ``pg_restore --list`` lines. An extension may be created into a
    schema of the archive, so the schemas are restored before the extensions; their comments and privileges
    stay with the rest (they need nothing but the schema, and come after it there too)."""
    schemas, rest = [], []
    for line in lines:
        (schemas if SCHEMA_ENTRY.match(line) else rest).append(line)
    return schemas, rest


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
    def psql(self, database, scripts, role=None):
        """psql running ``scripts`` (``('-f', path)`` or ``('-c', sql)``, in this order), then stdin (as
        ``role``), all in one transaction."""
        argv = [self.tools.path('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction'] + \
            self.pg.tool_args() + [dbname_option(database)]
        for option, value in scripts:
            argv += [option, value]
        if role:
            argv += ['-c', 'SET ROLE %s' % quote_ident(role)]
        return Step(argv + ['-f', '-'], env=self.pg.tool_env(), error_patterns=PSQL_ERRORS, name='psql')

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

    def extension_lists(self, meta, source, opts):
        """``SplitLists`` of files for ``--use-list``, or None when the archive has no extension."""
        fmt = meta['format']
        reader = self.chain(meta, opts, partial=True)
        args, stdin = self._archive(fmt, source, reader)
        sink = _Collect()
        self.run(reader + [self.pg_restore(['--list'] + args)], stdin, opts, sink=sink)
        ext, rest = split_toc(sink.text())
        if not ext:
            return None
        schemas, rest = split_schemas(rest)
        tag = secrets.token_hex(4)
        return SplitLists(
            self.secrets.write('schemas-%s.list' % tag, '\n'.join(schemas) + '\n') if schemas else None,
            self.secrets.write('extensions-%s.list' % tag, '\n'.join(ext) + '\n'),
            self.secrets.write('objects-%s.list' % tag, '\n'.join(rest) + '\n'))

    # -- the two ways ------------------------------------------------------------------------
    def transaction(self, meta, source, database, role, opts, first_sql=None, as_superuser=False):
        """One psql transaction: ``first_sql`` (a file) first, then the snapshot; all or nothing."""
        fmt = meta['format']
        items = self.chain(meta, opts)
        scripts = [('-f', first_sql)] if first_sql else []
        if fmt == 'plain':
            self._transaction_plain(items, source, database, role, opts, scripts, as_superuser)
            return
        args, stdin = self._archive(fmt, source, items)
        lists = self.extension_lists(meta, source, opts) if role and as_superuser else None
        toc = None
        if lists:
            scripts += self._first_scripts(meta, source, role, opts, lists)
            toc = lists.rest
        # Every table the archive creates is created in this transaction: loading it frozen is safe.
        freeze = self.freeze_filter(items, fmt)
        items.append(self.pg_restore(['--file=-'] + args, role=role, toc=toc))
        items.append(self.psql(database, scripts))
        self.run(items, stdin, opts)
        if freeze:
            self.record(freeze.describe())

    def _transaction_plain(self, items, source, database, role, opts, scripts, as_superuser):
        """A plain dump into psql as ``role``; a superuser runs its extension statements as itself."""
        rewriter = None
        if role and as_superuser:
            if not items:
                items.append(Step([find_tool('cat')], name='cat'))  # a pipeline starts with a process
            rewriter = ExtensionRoleFilter(role)
            items.append(rewriter)
        items.append(self.psql(database, scripts, role=role))
        self.run(items, source, opts)
        if rewriter:
            self.record(rewriter.describe())

    def _first_scripts(self, meta, source, role, opts, lists):
        """psql scripts that restore the archive's schemas as ``role`` and then its extensions as the login
        user, ahead of the rest (which pg_restore writes for ``role``)."""
        scripts = []
        if lists.schemas:
            scripts.append(('-f', self._sql_file(meta, source, opts, 'schemas', lists.schemas, role=role)))
            scripts.append(('-c', 'RESET ROLE'))  # that file's SET ROLE holds for the rest of the session
        scripts.append(('-f', self._sql_file(meta, source, opts, 'extensions', lists.extensions)))
        return scripts

    def _sql_file(self, meta, source, opts, name, toc, role=None):
        """The SQL pg_restore writes for the entries of ``toc``, in a private file."""
        path = os.path.join(self.secrets.path, '%s-%s.sql' % (name, secrets.token_hex(4)))
        reader = self.chain(meta, opts, partial=True)
        args, stdin = self._archive(meta['format'], source, reader)
        self.run(reader + [self.pg_restore(['--file=' + path] + args, role=role, toc=toc)], stdin, opts)
        return path

    def parallel(self, meta, source, database, role, opts, scratch_root, jobs, as_superuser=False):
        """pg_restore with ``jobs`` workers into a database created for this restore: a compressed custom
        dump goes through a FreezeFilter, whose TRUNCATE before each table's COPY is only safe there."""
        streamed = bool(self.chain(meta, opts))
        lists = self.extension_lists(meta, source, opts) if role and as_superuser else None
        if lists:
            if lists.schemas:
                self._restore_entries(meta, source, database, opts, lists.schemas, role=role)
            self._restore_entries(meta, source, database, opts, lists.extensions)
        toc = lists.rest if lists else None
        if not streamed:
            self._restore(meta, source, database, role, opts, jobs, toc)
            return
        need = meta.get('dump_bytes')
        if meta.get('encryption'):
            if jobs > 1:
                self.record('the dump is encrypted: restoring from the decrypting stream with one worker (a '
                            'parallel restore would need the plaintext dump on disk)')
        elif jobs > 1 and need and free_bytes(scratch_root) >= need + SPACE_SLACK:
            self._restore_decompressed(meta, source, database, role, opts, jobs, toc, scratch_root)
            return
        elif jobs > 1:
            self.record('not enough free space under %s for the decompressed dump (%s bytes): restoring from a '
                        'pipe with one worker' % (scratch_root, need))
        self._restore(meta, source, database, role, opts, 1, toc)

    def _restore_entries(self, meta, source, database, opts, toc, role=None):
        """The entries of ``toc`` (a few, from the start of the archive), as ``role`` or the login user."""
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

    def _restore_decompressed(self, meta, source, database, role, opts, jobs, toc, scratch_root):
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
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
