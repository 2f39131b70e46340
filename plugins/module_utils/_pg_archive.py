# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the table of contents of a PostgreSQL custom-format archive, and the
data offsets that pg_dump cannot write when its output is a pipe.

pg_dump writes the table of contents first and the table data after it; writing to a file, it
finally seeks back and fills in where each table's data starts. Writing to a pipe (as every
compressed snapshot does: ``pg_dump -Fc -Z0 | zstd``) it cannot, and ``pg_restore --jobs`` then has
to find every table by reading through the data blocks before it, and does not know which tables
are large, so it cannot start the largest ones first. ``add_data_offsets`` gives the decompressed
copy of such an archive (a private file made for the parallel restore) the offsets pg_dump would
have written, or leaves the file exactly as it was when it cannot be sure of them.

How a block start is found without walking the millions of length-prefixed chunks of a dump: a
data block ends with a zero length (an integer: sign byte and four bytes, all zero) and the next
one starts with the block type ``1`` and its dump id (sign byte ``0``, then four bytes). Table
data is text (``COPY`` text format or ``INSERT`` statements), which never holds a NUL byte, and a
chunk length is never zero, so ``00 00 00 00 00 01 00`` occurs after the table of contents only
where one block ends and the next begins. Archives with anything else in their data (large
objects, compression inside pg_dump) are left alone, and the blocks found must be exactly the
archive's data entries in the order pg_dump writes them, or nothing is changed.

The layout (``pg_backup_archiver.c``: WriteHead, WriteToc; ``pg_backup_custom.c``): integers are
a sign byte and ``intSize`` little-endian bytes, strings an integer length (-1: NULL) and the bytes,
offsets a flag byte and ``offSize`` little-endian bytes.
"""

from __future__ import annotations

import io
import os
import re
import threading

MAGIC = b'PGDMP'
FORMAT_CUSTOM = 1
OFFSET_NOT_SET, OFFSET_SET, OFFSET_NO_DATA = 1, 2, 3
# Archive versions whose layout this reader knows (PostgreSQL 9.0 to 17).
OLDEST, NEWEST = (1, 12), (1, 16)

BLOCK_START = b'\x00\x00\x00\x00\x00\x01\x00'  # end of a block, type DATA, sign of the dump id
_END_BYTES = 5  # the zero length that ends a block; the next block starts after it
_ID_BYTES = 4
_SCAN_CHUNK = 1024 * 1024


class UnknownLayout(Exception):
    """Not an archive this reader can vouch for: a reason to leave it as it is, never a failure."""


class Incomplete(UnknownLayout):
    """The bytes given end inside the table of contents: more of the archive is needed."""


class TocEntry(object):
    __slots__ = ('dump_id', 'had_dumper', 'tag', 'desc', 'namespace', 'copy_stmt', 'copy_at', 'copy_end',
                 'offset_flag', 'offset', 'offset_at')

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


class Toc(object):
    def __init__(self, version, int_size, off_size, compressed, entries, end):
        self.version = version
        self.int_size = int_size
        self.off_size = off_size
        self.compressed = compressed
        self.entries = entries
        self.end = end  # where the table of contents ends: the first data block starts here

    @property
    def data_entries(self):
        return [e for e in self.entries if e.had_dumper]


class _Reader(object):
    def __init__(self, f):
        self.f = f
        self.pos = 0
        self.int_size = 4

    def take(self, n):
        data = self.f.read(n)
        if len(data) != n:
            raise Incomplete('the archive ends inside its table of contents (at byte %d)' % self.pos)
        self.pos += n
        return data

    def byte(self):
        return self.take(1)[0]

    def int(self):
        sign = self.byte()
        value = int.from_bytes(self.take(self.int_size), 'little')
        return -value if sign else value

    def raw(self):
        n = self.int()
        if n < 0:
            return None
        return self.take(n)

    def str(self):
        data = self.raw()
        return None if data is None else data.decode('utf-8', 'replace')


def read_toc(f):
    """The header and table of contents of a custom-format archive open at its start."""
    r = _Reader(f)
    if r.take(5) != MAGIC:
        raise UnknownLayout('not a PostgreSQL custom-format archive')
    version = (r.byte(), r.byte())
    r.byte()  # revision
    if not OLDEST <= version <= NEWEST:
        raise UnknownLayout('archive version %d.%d is not one this reader knows' % version)
    r.int_size = r.byte()
    off_size = r.byte()
    fmt = r.byte()
    if fmt != FORMAT_CUSTOM:
        raise UnknownLayout('archive format %d is not the custom format' % fmt)
    if version >= (1, 15):
        compressed = r.byte() != 0  # compression algorithm, 0 = none
    else:
        compressed = r.int() != 0  # zlib level, 0 = none
    for dummy in range(7):  # creation time
        r.int()
    r.str()  # database name
    r.str()  # server version
    r.str()  # pg_dump version
    entries = []
    for dummy in range(r.int()):
        dump_id = r.int()
        had_dumper = r.int() != 0
        r.str()  # table oid
        r.str()  # oid
        tag = r.raw()
        desc = r.str()
        r.int()  # section
        r.str()  # defn
        r.str()  # dropStmt
        copy_at = r.pos
        copy_stmt = r.raw()
        copy_end = r.pos
        namespace = r.raw()
        r.str()  # tablespace
        if version >= (1, 14):
            r.str()  # tableam
        if version >= (1, 16):
            r.int()  # relkind
        r.str()  # owner
        r.str()  # "false": WITH OIDS
        while r.str() is not None:  # dependencies
            pass
        offset_at = r.pos
        flag = r.byte()
        offset = int.from_bytes(r.take(off_size), 'little')
        entries.append(TocEntry(dump_id=dump_id, had_dumper=had_dumper, tag=tag, desc=desc, namespace=namespace,
                                copy_stmt=copy_stmt, copy_at=copy_at, copy_end=copy_end, offset_flag=flag,
                                offset=offset, offset_at=offset_at))
    return Toc(version, r.int_size, off_size, compressed, entries, r.pos)


def scan_block_starts(fd, start=0, chunk=_SCAN_CHUNK, writer_done=None):
    """``[(position, dump id), ...]`` of every ``BLOCK_START`` found reading ``fd`` from ``start`` to
    its end (position: of the block type byte). One pass, ``chunk`` bytes of memory. With
    ``writer_done`` (a ``threading.Event``), the file is still being written: the scan follows it
    and ends at its end once the event is set."""
    keep = len(BLOCK_START) + _ID_BYTES - 1  # a match cut by a read is found in the next one
    buf = bytearray(chunk + keep)
    view = memoryview(buf)
    found = []
    base, have = start, 0  # file offset of buf[0], bytes held in buf
    finished = writer_done is None
    while True:
        n = os.preadv(fd, [view[have:]], base + have)
        if not n:
            if finished:
                break
            finished = writer_done.wait(0.005)  # once set, read once more: the last bytes may be new
            continue
        have += n
        i = buf.find(BLOCK_START, 0, have)
        while i >= 0 and i + len(BLOCK_START) + _ID_BYTES <= have:
            at = i + len(BLOCK_START)
            found.append((base + i + _END_BYTES, int.from_bytes(buf[at:at + _ID_BYTES], 'little')))
            i = buf.find(BLOCK_START, i + 1, have)
        tail = min(keep, have)
        buf[:tail] = buf[have - tail:have]
        base += have - tail
        have = tail
    return found


def plan_offsets(toc, first_block, later_blocks):
    """``{dump id: offset}`` for every data entry, or a reason (a string) why the archive must be left
    as it is. ``first_block``: the 6 bytes at ``toc.end`` (type, sign and dump id of the first block);
    ``later_blocks``: ``scan_block_starts`` from ``toc.end``."""
    if toc.compressed:
        return 'the data is compressed inside the archive'
    if (toc.int_size, toc.off_size) != (4, 8):
        return 'integer sizes %d/%d' % (toc.int_size, toc.off_size)
    data = toc.data_entries
    if not data:
        return 'no table data'
    other = sorted(set(e.desc for e in data if e.desc != 'TABLE DATA'))
    if other:
        return 'the archive holds %s' % ', '.join(other)
    if any(e.offset_flag != OFFSET_NOT_SET for e in data):
        return 'the offsets are already there'
    if first_block[:2] != BLOCK_START[_END_BYTES:]:
        return 'no data block where the table of contents ends'
    blocks = [(toc.end, int.from_bytes(first_block[2:], 'little'))]
    blocks += [b for b in later_blocks if b[0] > toc.end]
    if [b[1] for b in blocks] != [e.dump_id for e in data]:
        return 'the data blocks found are not the archive\'s data entries in order'
    return dict((dump_id, pos) for pos, dump_id in blocks)


def add_data_offsets(path, block_starts=None):
    """Write into the custom-format archive at ``path`` where each table's data starts. Returns
    ``(number of offsets written, None)``, or ``(0, reason)`` with the file unchanged.
    ``block_starts``: what ``scan_block_starts`` found in the whole file while it was written
    (``BlockScan``); without it the file is scanned now."""
    fd = os.open(path, os.O_RDWR)
    try:
        with os.fdopen(os.dup(fd), 'rb') as f:
            toc = read_toc(f)
        first = os.pread(fd, 1 + 1 + _ID_BYTES, toc.end)  # type, sign and dump id of the first block
        if len(first) < 1 + 1 + _ID_BYTES:
            return 0, 'no data after the table of contents'
        if block_starts is None:
            block_starts = scan_block_starts(fd, toc.end)
        offsets = plan_offsets(toc, first, block_starts)
        if isinstance(offsets, str):
            return 0, offsets
        for e in toc.data_entries:
            os.pwrite(fd, bytes([OFFSET_SET]) + offsets[e.dump_id].to_bytes(toc.off_size, 'little'), e.offset_at)
        return len(offsets), None
    except UnknownLayout as e:
        return 0, str(e)
    finally:
        os.close(fd)


class BlockScan(threading.Thread):
    """``scan_block_starts`` over a file another process is writing, from its first byte, in a thread:
    the scan then costs no time of its own. ``stop()`` once the writer is done (or failed); then
    ``block_starts`` holds the result, or None if the scan failed (``add_data_offsets`` scans again)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.writer_done = threading.Event()
        self.block_starts = None

    def run(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                self.block_starts = scan_block_starts(fd, writer_done=self.writer_done)
            finally:
                os.close(fd)
        except OSError:
            self.block_starts = None

    def stop(self):
        self.writer_done.set()
        self.join()
        return self.block_starts


# -- loading table data frozen ----------------------------------------------------------------------
# pg_dump's COPY statement for a table's data: "COPY <schema>.<table> (<columns>) FROM stdin;\n", the
# names quoted by fmtId (bare only when made of lower-case letters, digits and underscores).
_NAME = rb'("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)'
_COPY_HEAD = re.compile(rb'COPY (' + _NAME + rb'\.' + _NAME + rb') ')
_COPY_TAIL = b' FROM stdin;\n'


def _unquote(part):
    return part[1:-1].replace(b'""', b'"') if part.startswith(b'"') else part


def frozen_copy_statement(entry, created):
    """The statements that load ``entry``'s data frozen (``TRUNCATE ONLY`` then ``COPY ... WITH
    (FREEZE)``, which PostgreSQL runs as one implicit transaction), or None where that cannot be done
    safely: not a table's data; a table the archive does not create itself (``created``: the (schema,
    name) of its TABLE entries), such as an extension's configuration table, which CREATE EXTENSION may
    already have filled, or a foreign table, whose TRUNCATE would empty the remote one; or a COPY into
    another table than the entry's own (pg_dump --load-via-partition-root loads a partition's rows
    through its root)."""
    stmt = entry.copy_stmt
    if entry.desc != 'TABLE DATA' or not stmt or not stmt.endswith(_COPY_TAIL):
        return None
    if (entry.namespace, entry.tag) not in created:
        return None
    m = _COPY_HEAD.match(stmt)
    if not m or (_unquote(m.group(2)), _unquote(m.group(3))) != (entry.namespace, entry.tag):
        return None
    return b'TRUNCATE ONLY %s;\n%s WITH (FREEZE);\n' % (m.group(1), stmt[:-len(';\n')])


def _encode_str(data, int_size):
    return b'\x00' + len(data).to_bytes(int_size, 'little') + data


def freeze_copies(head):
    """``head`` (the first bytes of a custom-format archive, at least its table of contents) with every
    table's COPY statement replaced by ``frozen_copy_statement``: ``(new head, number of tables,
    None)``, or ``(head, 0, reason)`` when it is left as it is. Raises Incomplete when ``head`` ends
    inside the table of contents, UnknownLayout when it is no archive this reader knows.

    A table loaded with COPY FREEZE right after TRUNCATE in the same transaction is written with its
    rows already frozen and marked visible; loaded without, the first pass that reads it afterwards
    (the index builds, the foreign key checks, ANALYZE) sets a hint bit on every row and writes every
    page again. Only where the restore itself has just created the tables (a new database, or the one
    transaction of an in-place restore): TRUNCATE empties the table."""
    toc = read_toc(io.BytesIO(head))
    if any(e.offset_flag == OFFSET_SET for e in toc.data_entries):
        return head, 0, 'the archive records data offsets, which the longer statements would move'
    created = set((e.namespace, e.tag) for e in toc.entries if e.desc == 'TABLE')
    out, last, count = bytearray(), 0, 0
    for e in toc.entries:
        new = frozen_copy_statement(e, created)
        if new is None:
            continue
        out += head[last:e.copy_at]
        out += _encode_str(new, toc.int_size)
        last = e.copy_end
        count += 1
    if not count:
        return head, 0, 'no table data loaded with COPY'
    out += head[last:]
    return bytes(out), count, None
