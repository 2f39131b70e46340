# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The custom-format archive reader and the data offsets, on archives built byte by byte here (the
layout of pg_backup_archiver.c). That real pg_dump archives get exactly the offsets pg_dump itself
writes is tested against a real server in tests/integration/test_db_postgresql.py."""

from __future__ import annotations

import io
import os
import tempfile
import time

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _pg_archive as A


def i(v):
    return bytes([1 if v < 0 else 0]) + abs(v).to_bytes(4, 'little')


def s(v):
    if v is None:
        return i(-1)
    b = v.encode()
    return i(len(b)) + b


def archive(entries, blocks, version=(1, 14), compression=0, magic=b'PGDMP', fmt=1, names=None):
    """``entries``: (dump id, desc, has data); ``blocks``: (dump id, [rows]) in file order; ``names``:
    {dump id: (schema, tag, COPY statement)} where not ('public', 't<id>', 'COPY t FROM stdin;')."""
    out = magic + bytes([1, version[1], 0, 4, 8, fmt])
    out += bytes([compression]) if version >= (1, 15) else i(compression)
    out += b''.join(i(n) for n in (5, 4, 3, 24, 10, 126, 0)) + s('shop') + s('15.4') + s('15.4')
    out += i(len(entries))
    for dump_id, desc, data in entries:
        schema, tag, copy = (names or {}).get(dump_id, ('public', 't%d' % dump_id, 'COPY t FROM stdin;'))
        out += i(dump_id) + i(1 if data else 0) + s('1259') + s(str(16000 + dump_id)) + s(tag) + s(desc)
        out += i(3 if data else 2) + s('CREATE ...;') + s(None) + s(copy) + s(schema) + s('')
        if version >= (1, 14):
            out += s('heap')
        if version >= (1, 16):
            out += i(114)
        out += s('postgres') + s('false') + s('1') + s('2') + s(None)
        out += bytes([A.OFFSET_NOT_SET if data else A.OFFSET_NO_DATA]) + bytes(8)
    for dump_id, rows in blocks:
        out += b'\x01' + i(dump_id) + b''.join(i(len(r)) + r for r in rows) + i(0)
    return out


ENTRIES = [(10, 'TABLE', False), (11, 'TABLE', False), (20, 'TABLE DATA', True), (21, 'TABLE DATA', True),
           (22, 'TABLE DATA', True), (30, 'INDEX', False)]
BLOCKS = [(20, [b'1\tAnna\n', b'2\t\\N\n']), (21, []), (22, [b'x' * 300 + b'\n'] * 50)]


def block_positions(data, blocks):
    positions, at = [], data.index(b'\x01' + i(blocks[0][0]) + i(len(blocks[0][1][0])))
    for dump_id, rows in blocks:
        assert data[at:at + 6] == b'\x01' + i(dump_id)
        positions.append(at)
        at += 6 + sum(5 + len(r) for r in rows) + 5
    return positions


def write(tmp_path, data):
    p = tmp_path / 'a.dump'
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize('version', [(1, 12), (1, 14), (1, 15), (1, 16)])
def test_offsets_are_where_the_blocks_start(tmp_path, version):
    data = archive(ENTRIES, BLOCKS, version=version)
    path = write(tmp_path, data)
    assert A.add_data_offsets(path) == (3, None)
    after = open(path, 'rb').read()
    assert len(after) == len(data)
    with open(path, 'rb') as f:
        toc = A.read_toc(f)
    assert toc.version == version and not toc.compressed
    got = [(e.dump_id, e.offset_flag, e.offset) for e in toc.entries]
    want_pos = dict(zip((20, 21, 22), block_positions(data, BLOCKS)))
    assert got == [(10, 3, 0), (11, 3, 0), (20, 2, want_pos[20]), (21, 2, want_pos[21]), (22, 2, want_pos[22]),
                   (30, 3, 0)]
    assert toc.end == want_pos[20]
    # nothing but the offset fields changed
    changed = [n for n in range(len(data)) if data[n] != after[n]]
    fields = set()
    for e in toc.data_entries:
        fields.update(range(e.offset_at, e.offset_at + 9))
    assert changed and set(changed) <= fields
    assert A.add_data_offsets(path) == (0, 'the offsets are already there')


def test_block_starts_cut_by_any_read_are_found_once():
    data = archive(ENTRIES, BLOCKS) + b'\x00\x00\x00\x00\x00\x01'  # a pattern cut off by the end of the file
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        whole = A.scan_block_starts(f.fileno(), chunk=1 << 20)
        positions = block_positions(data, BLOCKS)
        assert [(pos, dump_id) for pos, dump_id in whole if pos >= positions[0]] == list(zip(positions, [20, 21, 22]))
        for chunk in range(1, 40):
            assert A.scan_block_starts(f.fileno(), chunk=chunk) == whole, chunk
        start = whole[-1][0]
        assert A.scan_block_starts(f.fileno(), start=start - 5) == [whole[-1]]
        assert A.scan_block_starts(f.fileno(), start=start - 4) == []


@pytest.mark.parametrize('case, reason', [
    (dict(entries=ENTRIES + [(40, 'BLOBS', True)], blocks=BLOCKS + [(40, [b'\x00' * 9])]), 'the archive holds BLOBS'),
    (dict(compression=6), 'the data is compressed inside the archive'),
    (dict(version=(1, 15), compression=1), 'the data is compressed inside the archive'),
    (dict(blocks=BLOCKS[:2]), "the data blocks found are not the archive's data entries in order"),
    (dict(blocks=[BLOCKS[1], BLOCKS[0], BLOCKS[2]]), "the data blocks found are not the archive's data entries in order"),
    (dict(version=(1, 17)), 'archive version 1.17 is not one this reader knows'),
    (dict(magic=b'PGDMX'), 'not a PostgreSQL custom-format archive'),
    (dict(fmt=3), 'archive format 3 is not the custom format'),
    (dict(blocks=[]), 'no data after the table of contents'),
])
def test_an_archive_it_cannot_be_sure_of_is_left_as_it_was(tmp_path, case, reason):
    kw = dict(case)
    data = archive(kw.pop('entries', ENTRIES), kw.pop('blocks', BLOCKS), **kw)
    path = write(tmp_path, data)
    assert A.add_data_offsets(path) == (0, reason)
    assert open(path, 'rb').read() == data


def test_a_table_of_contents_cut_short_is_reported(tmp_path):
    data = archive(ENTRIES, BLOCKS)
    path = write(tmp_path, data[:200])
    written, reason = A.add_data_offsets(path)
    assert written == 0 and reason.startswith('the archive ends inside its table of contents')
    assert open(path, 'rb').read() == data[:200]
    assert os.path.getsize(path) == 200


def test_a_scan_that_follows_the_writer_finds_what_a_scan_afterwards_finds(tmp_path):
    data = archive(ENTRIES, BLOCKS) * 3  # a longer file; blocks beyond the first archive count as found too
    path = str(tmp_path / 'growing.dump')
    open(path, 'wb').close()
    scan = A.BlockScan(path)
    scan.start()
    with open(path, 'ab', buffering=0) as f:
        for n in range(0, len(data), 97):  # pieces that cut patterns apart, written while the scan runs
            f.write(data[n:n + 97])
            if n % (97 * 8) == 0:
                time.sleep(0.002)
    found = scan.stop()
    with open(path, 'rb') as f:
        assert found == A.scan_block_starts(f.fileno())
    assert len([b for b in found if b[1] == 22]) == 3
    # and add_data_offsets uses it instead of reading the file again
    single = write(tmp_path, archive(ENTRIES, BLOCKS))
    with open(single, 'rb') as f:
        starts = A.scan_block_starts(f.fileno())
    assert A.add_data_offsets(single, starts) == (3, None)
    assert A.add_data_offsets(write(tmp_path, archive(ENTRIES, BLOCKS)), starts[:1]) == (
        0, "the data blocks found are not the archive's data entries in order")


# -- COPY FREEZE -------------------------------------------------------------------------------------
ENTRIES_F = [(10, 'TABLE', False), (11, 'TABLE', False), (12, 'TABLE', False), (20, 'TABLE DATA', True),
             (21, 'TABLE DATA', True), (22, 'TABLE DATA', True), (30, 'INDEX', False)]
NAMES = {
    10: ('public', 'customer', None),
    11: ('public', 'order', None),
    12: ('My Schema', 'a"b', None),
    20: ('public', 'customer', 'COPY public.customer (id, name) FROM stdin;\n'),
    21: ('public', 'order', 'COPY public."order" (id) FROM stdin;\n'),
    22: ('My Schema', 'a"b', 'COPY "My Schema"."a""b" (x, "Y") FROM stdin;\n'),
}
FROZEN = {
    20: 'TRUNCATE ONLY public.customer;\nCOPY public.customer (id, name) FROM stdin WITH (FREEZE);\n',
    21: 'TRUNCATE ONLY public."order";\nCOPY public."order" (id) FROM stdin WITH (FREEZE);\n',
    22: 'TRUNCATE ONLY "My Schema"."a""b";\nCOPY "My Schema"."a""b" (x, "Y") FROM stdin WITH (FREEZE);\n',
}


def toc_of(data):
    return A.read_toc(io.BytesIO(data))


@pytest.mark.parametrize('version', [(1, 12), (1, 14), (1, 16)])
def test_every_table_is_loaded_frozen_and_nothing_else_changes(tmp_path, version):
    data = archive(ENTRIES_F, BLOCKS, version=version, names=NAMES)
    new, count, reason = A.freeze_copies(data)
    assert (count, reason) == (3, None)
    before, after = toc_of(data), toc_of(new)
    assert [(e.dump_id, e.desc, e.tag, e.namespace) for e in after.entries] == \
        [(e.dump_id, e.desc, e.tag, e.namespace) for e in before.entries]
    assert dict((e.dump_id, e.copy_stmt.decode()) for e in after.data_entries) == FROZEN
    # the other entries' statements and the data blocks are the same bytes
    assert [e.copy_stmt for e in after.entries if not e.had_dumper] == \
        [e.copy_stmt for e in before.entries if not e.had_dumper]
    assert new[after.end:] == data[before.end:]
    assert new[:before.entries[3].copy_at] == data[:before.entries[3].copy_at]
    # and the data offsets are found in the rewritten archive as in any other
    path = write(tmp_path, new)
    assert A.add_data_offsets(path) == (3, None)
    with open(path, 'rb') as f:
        toc = A.read_toc(f)
    for e, pos in zip(toc.data_entries, block_positions(new, BLOCKS)):
        assert (e.offset_flag, e.offset) == (A.OFFSET_SET, pos)


@pytest.mark.parametrize('schema, tag, copy', [
    ('public', 'part_1', 'COPY public.parent (x) FROM stdin;\n'),  # --load-via-partition-root
    ('public', 'parent', 'COPY other.parent (x) FROM stdin;\n'),
    ('public', 't', 'COPY public.t (x) FROM stdin WITH (FREEZE);\n'),
    ('public', 't', 'COPY public.t (x) TO stdout;\n'),
    ('public', 't', ''),
    ('public', 't', None),
])
def test_a_copy_into_anything_but_the_entry_s_own_table_is_left_alone(schema, tag, copy):
    names = dict(NAMES)
    names[11] = (schema, tag, None)
    names[21] = (schema, tag, copy)
    data = archive(ENTRIES_F, BLOCKS, names=names)
    new, count, reason = A.freeze_copies(data)
    assert (count, reason) == (2, None)
    entry = [e for e in toc_of(new).entries if e.dump_id == 21][0]
    assert entry.copy_stmt == (copy.encode() if copy is not None else None)


def test_only_table_data_is_frozen():
    names = {10: ('public', 'customer', 'COPY public.customer (id) FROM stdin;\n')}
    data = archive(ENTRIES, BLOCKS, names=names)  # a TABLE entry with a COPY statement
    assert A.freeze_copies(data) == (data, 0, 'no table data loaded with COPY')


@pytest.mark.parametrize('desc', ['FOREIGN TABLE', 'VIEW', None])
def test_only_tables_the_archive_creates_are_truncated(desc):
    """An extension's configuration table (no TABLE entry: CREATE EXTENSION makes it, maybe with rows)
    and a foreign table (TRUNCATE would empty the remote table) are loaded as pg_dump says."""
    names = dict(NAMES)
    entries = list(ENTRIES_F)
    if desc is None:
        entries[1] = (11, 'EXTENSION', False)
    else:
        entries[1] = (11, desc, False)
    data = archive(entries, BLOCKS, names=names)
    new, count, reason = A.freeze_copies(data)
    assert (count, reason) == (2, None)
    assert [e.copy_stmt for e in toc_of(new).entries if e.dump_id == 21] == [NAMES[21][2].encode()]


def test_an_archive_with_offsets_is_left_alone(tmp_path):
    path = write(tmp_path, archive(ENTRIES_F, BLOCKS, names=NAMES))
    assert A.add_data_offsets(path)[0] == 3
    data = open(path, 'rb').read()
    reason = 'the archive records data offsets, which the longer statements would move'
    assert A.freeze_copies(data) == (data, 0, reason)


def test_a_head_cut_inside_the_table_of_contents_asks_for_more():
    data = archive(ENTRIES_F, BLOCKS, names=NAMES)
    end = toc_of(data).end
    with pytest.raises(A.Incomplete):
        A.freeze_copies(data[:end - 1])
    assert A.freeze_copies(data[:end])[1] == 3
    with pytest.raises(A.UnknownLayout) as e:
        A.freeze_copies(b'PGDMX' + data[5:])
    assert not isinstance(e.value, A.Incomplete)


@pytest.mark.parametrize('size', [1, 7, 100, 1 << 20])
def test_the_filter_passes_any_stream_whatever_its_chunks(size):
    from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_load import FreezeFilter
    good = archive(ENTRIES_F, BLOCKS, names=NAMES)
    for data, want, tables in ((good, A.freeze_copies(good)[0], 3), (b'not an archive' * 50, None, 0),
                               (good[:40], None, 0)):
        f = FreezeFilter()
        out = b''.join(bytes(f.pass_on(memoryview(data[n:n + size]))) for n in range(0, len(data), size))
        out += f.flush()
        assert out == (want if want is not None else data)
        assert f.tables == tables
        assert ('tables loaded frozen (TRUNCATE ONLY' in f.describe()) == bool(tables)
        if not tables:
            assert f.reason, f.describe()
