# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the interface every database engine implements, and the pieces
they share (compression steps, version parsing, the order-independent table checksum).

One engine class per database (``_engine_postgresql``, ``_engine_mysql``, ``_engine_sqlite``),
chosen once by ``_engines.get_engine``. Modules never branch on the engine name.
"""

from __future__ import annotations

import hashlib
import re
import signal
import threading
import time

from ansible_collections.djangoops.maintenance.plugins.module_utils import _age
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Step, find_tool

COMPRESSIONS = ('none', 'gzip', 'zstd')
COMPRESSION_CHOICES = ('auto',) + COMPRESSIONS
DEFAULT_LEVEL = {'gzip': 6, 'zstd': 3}
LEVEL_RANGE = {'gzip': (1, 9), 'zstd': (1, 19)}
SUFFIX = {'none': '', 'gzip': '.gz', 'zstd': '.zst'}
# zstd's level 3 with a minimum match of 6 and larger match tables, for SQL dumps at the default level: measured on
# text rows (docs/benchmarks.md) it makes a PostgreSQL custom archive 0.6 % smaller than level 3 - smaller than
# `pg_dump | gzip`, which level 3 is not - for 13 % more of zstd's CPU, and SQL text, Debian's package
# list and the Python library's sources smaller than gzip -6 each. Level 3's own matches are better on binary
# pages (a SQLite file): those keep the plain level.
ZSTD_TEXT_PARAMS = 'mml=6,hlog=18,clog=17'
TABLE_STATS = ('none', 'counts', 'checksums')


class EngineError(Exception):
    """A database-side failure, phrased for the operator (never contains a password)."""


def parse_version(text):
    """First dotted number in ``text`` as a tuple of ints: 'pg_dump (PostgreSQL) 15.18' -> (15, 18)."""
    m = re.search(r'(\d+)\.(\d+)(?:\.(\d+))?', text or '')
    if not m:
        return ()
    return tuple(int(x) for x in m.groups() if x is not None)


def version_text(version):
    return '.'.join(str(x) for x in version)


def check_compression(compression, level):
    if compression not in COMPRESSIONS:
        raise EngineError('compression must be one of %s, got %r' % (', '.join(COMPRESSIONS), compression))
    if compression == 'none':
        return None
    if level is None:
        return DEFAULT_LEVEL[compression]
    lo, hi = LEVEL_RANGE[compression]
    if not lo <= level <= hi:
        raise EngineError('compression_level %s is out of range for %s (%d-%d)' % (level, compression, lo, hi))
    return level


def resolve_compression(compression):
    """``auto`` is zstd where it is installed (several times faster than gzip for a smaller file),
    else gzip."""
    if compression in (None, 'auto'):
        return 'zstd' if find_tool('zstd', required=False) else 'gzip'
    return compression


def compressor_step(compression, level, threads=0, params=None):
    """A streaming compressor reading stdin and writing stdout; ``params``: zstd's advanced parameters
    (``ZSTD_TEXT_PARAMS``) on top of the level."""
    level = check_compression(compression, level)
    if compression == 'zstd':
        # -T0: one worker per core; compression, not the dump tool, is what costs time.
        return Step([find_tool('zstd'), '-q', '-c', '-%d' % level] + (['--zstd=' + params] if params else [])
                    + ['-T%d' % threads], name='zstd')
    if compression == 'gzip':
        pigz = find_tool('pigz', required=False)
        if pigz:
            return Step([pigz, '-c', '-%d' % level], name='pigz')
        return Step([find_tool('gzip'), '-c', '-%d' % level], name='gzip')
    return None


def decompressor_step(compression):
    """A streaming decompressor; the file comes in on stdin."""
    if compression == 'zstd':
        return Step([find_tool('zstd'), '-q', '-d', '-c'], name='zstd')
    if compression == 'gzip':
        return Step([find_tool('gzip'), '-d', '-c'], name='gzip')
    if compression == 'none':
        return None
    raise EngineError('snapshot uses compression %r, which this collection does not know' % (compression,))


def output_chain(opts, threads=None):
    """The stages between a dump tool and the snapshot file: the compressor, then the encryptor.
    Every engine writes through this, so encryption happens in the stream and only ciphertext
    reaches the disk. Returns (steps, file-name suffix)."""
    compression = opts.get('compression', 'none')
    steps = []
    comp = compressor_step(compression, opts.get('compression_level'),
                           opts.get('threads', 0) if threads is None else threads, opts.get('compression_params'))
    if comp is not None:
        steps.append(comp)
    suffix = SUFFIX[compression]
    if opts.get('encryption'):
        steps.append(_age.encrypt_step(opts['encryption']))
        suffix += _age.SUFFIX
    return steps, suffix


def input_chain(part_meta, identity=None, partial=False):
    """The stages that turn a snapshot file back into the dump tool's output: the decryptor, then the
    decompressor. ``partial``: the reader may stop early (a table-of-contents pass)."""
    steps = []
    if _age.part_encryption(part_meta):
        if not identity:
            raise EngineError('the snapshot part is encrypted; an identity (decrypt_identity) is needed to read it')
        steps.append(_age.decrypt_step(identity, partial=partial))
    decomp = decompressor_step(part_meta.get('compression', 'none'))
    if decomp is not None:
        if partial:
            decomp = Step(decomp.argv, ok_returncodes=(0, -signal.SIGPIPE), name=decomp.name)
        steps.append(decomp)
    return steps


def encryption_record(opts, files):
    """What a part's metadata says about its encryption (None when it is not encrypted): method,
    recipients and which files (relative to the snapshot) hold ciphertext."""
    enc = opts.get('encryption')
    if not enc:
        return None
    return {'method': enc['method'], 'recipients': list(enc['recipients']), 'files': sorted(f['path'] for f in files)}


def start_clock(opts):
    """Start the task's ``timeout`` now: every step after this gets what is left of it (``time_left``),
    so ``timeout`` bounds the whole dump or restore, not each of its pipelines."""
    if opts.get('timeout') is not None:
        opts['deadline'] = time.monotonic() + opts['timeout']
    return opts


def time_left(opts):
    """Seconds left of the task's ``timeout`` (None: no limit). Never below a millisecond: a step that starts
    after the time ran out is stopped at once, with the timeout's message."""
    if opts.get('deadline') is None:
        return opts.get('timeout')
    return max(0.001, opts['deadline'] - time.monotonic())


def limits(opts):
    """``run_pipeline`` keyword arguments for a step of the task: what is left of its ``timeout``, and the
    timeout itself for the message."""
    return {'timeout': time_left(opts), 'timeout_total': opts.get('timeout')}


def lock_wait_seconds(opts, default):
    """A session's lock wait (whole seconds, at least 1): ``default``, or what is left of ``timeout`` when
    that is shorter."""
    left = time_left(opts)
    return default if left is None else max(1, min(default, int(left + 0.999)))


def alongside(main, side):
    """Run ``side`` in a thread while ``main`` runs in this one; wait for both and return
    ``(main's result, side's result)``. ``main``'s error wins: it is the one the operator must see.
    For work that only reads what ``main`` reads or writes (hash a copy while it is checked, count
    rows in a snapshot while the dump streams), so two cores do it at once."""
    out, errors = [None], []

    def guarded():
        try:
            out[0] = side()
        except BaseException as e:  # pylint: disable=broad-except
            errors.append(e)

    worker = threading.Thread(target=guarded, daemon=True)
    worker.start()
    try:
        result = main()
    finally:
        worker.join()
    if errors:
        raise errors[0]
    return result, out[0]


def in_workers(tasks, count, resource):
    """Run the callables of ``tasks`` (taken in list order) on ``count`` threads. Each thread opens
    ``resource()`` (a context manager, such as a connection of its own) and calls every task it
    takes with what that yields. Returns the tasks' results in order. After an error no thread takes
    a new task; the first error is raised once every thread stopped."""
    results = [None] * len(tasks)
    errors = []
    lock = threading.Lock()
    pending = list(enumerate(tasks))
    pending.reverse()

    def take():
        with lock:
            return pending.pop() if pending and not errors else None

    def work():
        try:
            with resource() as opened:
                item = take()
                while item is not None:
                    results[item[0]] = item[1](opened)
                    item = take()
        except BaseException as e:  # pylint: disable=broad-except
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=work, daemon=True) for dummy in range(max(1, min(count, len(tasks))) - 1)]
    for t in threads:
        t.start()
    try:
        work()
    finally:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return results


class RowDigest(object):
    """Order-independent digest of a table's rows: the count, and the sum modulo 2**64 of the first
    8 bytes of each row's sha256. Equal row multisets give equal digests; it streams in O(1) memory.
    Used by engines that hash rows client-side (SQLite); server-side engines mirror it in SQL."""

    def __init__(self):
        self.rows = 0
        self.total = 0

    def add(self, encoded_row):
        self.rows += 1
        self.total = (self.total + int.from_bytes(hashlib.sha256(encoded_row).digest()[:8], 'big')) % (1 << 64)

    def hexdigest(self):
        return '%016x' % self.total


def compare_tables(recorded, actual):
    """Per-table comparison of stats dicts ``{table: {'rows': n, 'checksum': c}}``.

    Returns (match, mismatches). A checksum is compared only when both sides have one."""
    mismatches = []
    for table in sorted(set(recorded) | set(actual)):
        a, b = recorded.get(table), actual.get(table)
        if a is None:
            mismatches.append({'table': table, 'problem': 'not in the snapshot', 'actual': b})
        elif b is None:
            mismatches.append({'table': table, 'problem': 'missing after restore', 'expected': a})
        elif a.get('rows') != b.get('rows'):
            mismatches.append({'table': table, 'problem': 'row count differs', 'expected': a, 'actual': b})
        elif a.get('checksum') and b.get('checksum') and a['checksum'] != b['checksum']:
            mismatches.append({'table': table, 'problem': 'content checksum differs', 'expected': a, 'actual': b})
    return not mismatches, mismatches


EMPTY_CHECKSUM = '%016x' % 0  # what a table without rows sums to, in every engine


def resolve_excluded_tables(names, spellings, foreign_keys, where):
    """The tables ``exclude_table_data`` names, as the keys the table statistics use, in the order given.

    ``spellings``: ``{key: (spelling, ...)}`` - each table of the database and the names a user may give
    it (PostgreSQL ``schema.table`` and ``table``). A key itself always matches only that table; another
    spelling must match exactly one. ``foreign_keys``: ``[(referencing key, constraint, referenced key)]``.
    A table whose rows are left out may not be referenced by one whose rows are kept: its restore would fail
    on that key, so the snapshot is refused now rather than the restore later. Raises EngineError naming the
    bad value."""
    chosen = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise EngineError('exclude_table_data: %r is not a table name' % (name,))
        matches = [name] if name in spellings else sorted(k for k, names_of in spellings.items() if name in names_of)
        if not matches:
            raise EngineError('exclude_table_data: there is no table %s in %s' % (name, where))
        if len(matches) > 1:
            raise EngineError('exclude_table_data: %s names %d tables in %s (%s); name the one meant as it is '
                              'listed' % (name, len(matches), where, ', '.join(matches)))
        if matches[0] not in chosen:
            chosen.append(matches[0])
    left_out = set(chosen)
    for referencing, constraint, referenced in sorted(foreign_keys):
        if referenced in left_out and referencing not in left_out:
            raise EngineError(
                'exclude_table_data: the rows of %s are referenced by %s of %s, whose rows are kept, so restoring '
                'the snapshot would fail on that key; leave out the rows of %s too, or keep those of %s'
                % (referenced, constraint, referencing, referencing, referenced))
    return chosen


def excluded_stats(mode):
    """What the table statistics record for a table whose rows the dump leaves out: what it holds after a
    restore."""
    return {'rows': 0, 'checksum': EMPTY_CHECKSUM if mode == 'checksums' else None, 'data_excluded': True}


def json_value(v):
    """A database value as something JSON can carry: bytes as hex, decimals and dates as text."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return str(v)


class Engine(object):
    """The seam. Subclasses set ``name`` and implement every method below.

    ``conn`` is the module's connection options (login_host, login_port, login_user, login_password,
    login_unix_socket, database, ssl_*, client_bin_dir, connect_timeout); ``secrets`` is a
    ``_proc.private_dir`` for credential files, alive for the whole call.

    ``target_changed``: ``restore`` sets it at the first step that changes the target database, or may have
    (a swap, a rename over it, a DROP), and clears it again only where a failure provably undid that step.
    False after a failure means the target is exactly as it was: db_restore reports it, and a caller that
    stopped the application for the restore may start it again.
    """

    name = None
    formats = ('native',)
    default_format = 'native'
    # Its dumps are SQL text, which zstd compresses with ZSTD_TEXT_PARAMS at the default level.
    text_dump = False

    def __init__(self, conn, secrets):
        self.conn = conn
        self.secrets = secrets
        self.commands = []
        self.target_changed = False

    def resolve_options(self, opts):
        """Fill in defaults and refuse options this engine cannot honour. Engines extend it."""
        opts = dict(opts)
        fmt = opts.get('format') or self.default_format
        if fmt not in self.formats:
            raise EngineError('format %r is not available for engine %s (it offers: %s)'
                              % (fmt, self.name, ', '.join(self.formats)))
        opts['format'] = fmt
        opts['compression'] = resolve_compression(opts.get('compression'))
        if self.text_dump and opts['compression'] == 'zstd' and opts.get('compression_level') is None:
            opts['compression_params'] = ZSTD_TEXT_PARAMS  # the default level, tuned for SQL text
        opts['compression_level'] = check_compression(opts['compression'], opts.get('compression_level'))
        opts['encryption'] = _age.encryption_options(opts.get('encrypt_recipients'))
        opts.setdefault('table_stats', 'counts')
        if opts['table_stats'] not in TABLE_STATS:
            raise EngineError('table_stats must be one of %s, got %r' % (', '.join(TABLE_STATS), opts['table_stats']))
        return opts

    # -- facts -------------------------------------------------------------------------------
    def probe(self, database=None):
        """Server and client versions, database size and existence. Raises EngineError when the
        server does not answer or refuses the login. Returns a dict with at least
        ``server_version``, ``client_version``, ``database``, ``database_exists``, ``database_bytes``."""
        raise NotImplementedError

    def probe_restore_target(self, database=None):
        """``probe`` of the database a restore is about to replace."""
        return self.probe(database)

    def check_client(self, probe, part_meta=None):
        """Raise EngineError when the client tools cannot dump this server (too old), or, given the snapshot
        part to restore (``part_meta``), cannot restore it into this server."""

    def exclusions(self, names, database=None):
        """Resolve ``exclude_table_data`` against the database (``resolve_excluded_tables``): the keys of the
        tables whose rows the dump leaves out. Engines that can leave rows out override it."""
        raise EngineError('exclude_table_data is not available for engine %s' % self.name)

    def estimate_dump_bytes(self, probe, opts):
        """Upper estimate of the snapshot's size, for the free-space pre-flight."""
        size = probe.get('database_bytes') or 0
        return int(size * (0.6 if opts.get('compression', 'none') != 'none' else 1.1))

    def table_stats(self, mode, database=None):
        """``{table: {'rows': n, 'checksum': hex|None}}`` for ``mode`` in counts | checksums."""
        raise NotImplementedError

    def table_names(self, database=None):
        """The names of the database's tables, sorted, as ``table_stats`` keys them (db_restore's diff)."""
        raise NotImplementedError

    def restored_stats(self, mode):
        """The table statistics (as ``table_stats``) that ``restore`` read from the restored rows when
        asked to (``verify_tables`` in its options), or None: then the caller reads them itself."""
        return None

    def run_queries(self, queries, database=None):
        """Run each SQL text in ``queries`` in ONE read-only transaction; return a list of row lists
        (values made JSON-safe with ``json_value``). Used by verification, never for changes."""
        raise NotImplementedError

    # -- work --------------------------------------------------------------------------------
    def dump(self, part, opts):
        """Dump into the PartWriter ``part``; return the part metadata (kind, engine, format, ...)."""
        raise NotImplementedError

    def restore(self, snapshot, part_meta, opts):
        """Replace the target database's contents with the snapshot part. Returns details. Sets
        ``target_changed`` (see the class) from the moment the target is touched."""
        raise NotImplementedError

    def record(self, argv_display):
        self.commands.append(argv_display)
