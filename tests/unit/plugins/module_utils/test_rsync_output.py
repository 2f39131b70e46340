# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of the media code: rsync argv, rsync's itemized output, SHA256SUMS lines."""

from __future__ import annotations

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils._rsync import (
    ItemizedOutput, restore_argv, snapshot_argv)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import (
    parse_sums_line, sort_key, sums_line)

# Captured from rsync 3.2.7 and 3.5.0: a restore with deletions, a dry run with a changed file.
RESTORE_OUTPUT = (
    b'*deleting   extra\n'
    b'*deleting   old dir/\n'
    b'.d..t...... ./\n'
    b'>f+++++++++ new\n'
    b'.d..t...... a/\n'
    b'cd+++++++++ a/b/\n'
    b'>f.st...... a/b/f1\n'
    b'.f...p..... a/h1\n'
    b'hf+++++++++ a/h2\n'
    b'cL+++++++++ a/lnk\n'
    b'>f+++++++++ caf\xc3\xa9 \\#012newline\n'
    b'\n'
    b'Number of files: 1,234 (reg: 1,000, dir: 230, link: 4)\n'
    b'Number of created files: 3 (reg: 2, dir: 1)\n'
    b'Number of deleted files: 2 (reg: 1, dir: 1)\n'
    b'Number of regular files transferred: 2\n'
    b'Total file size: 1,073,741,824 bytes\n'
    b'Total transferred file size: 8,192 bytes\n'
    b'Literal data: 0 bytes\n'
    b'\n'
    b'sent 269 bytes  received 50 bytes  638.00 bytes/sec\n'
    b'total size is 1,073,741,824  speedup is 0.06 (DRY RUN)\n'
)


@pytest.mark.parametrize('chunk', [1, 7, 4096])
def test_itemized_output_is_parsed_whatever_the_chunking(chunk):
    out = ItemizedOutput(keep_paths=100)
    for i in range(0, len(RESTORE_OUTPUT), chunk):
        out.write(memoryview(RESTORE_OUTPUT[i:i + chunk]))
    out.close()
    assert out.counts == {'created': 5, 'deleted': 2, 'updated': 4}
    paths = dict((p['path'], (p['change'], p['details'])) for p in out.paths)
    assert paths['extra'] == ('deleted', [])
    assert paths['old dir/'] == ('deleted', [])
    assert paths['.'] == ('updated', ['mtime'])
    assert paths['a/b/f1'] == ('updated', ['size', 'mtime'])
    assert paths['a/h1'] == ('updated', ['mode'])
    assert paths['a/h2'] == ('created', [])
    assert paths['caf\u00e9 \nnewline'] == ('created', [])
    assert out.stats['number_of_files'] == 1234
    assert out.stats['total_file_size'] == 1073741824
    assert out.stats['total_transferred_file_size'] == 8192
    assert out.stats['number_of_regular_files_transferred'] == 2


def test_path_list_is_bounded_but_counts_are_not():
    out = ItemizedOutput(keep_paths=2)
    out.write(b''.join(b'>f+++++++++ file%d\n' % i for i in range(10000)))
    out.close()
    assert out.total == 10000 and len(out.paths) == 2


def test_lines_that_are_not_items_are_ignored():
    out = ItemizedOutput(keep_paths=10)
    out.write(b'created directory /x/y\nskipping non-regular file "fifo"\n.d          ./\n')
    out.close()
    assert out.total == 0 and out.paths == []


def test_argv_never_follows_or_writes_in_place():
    for argv in (snapshot_argv('rsync', '/srv/media', '/s/x', link_dest='/s/prev'),
                 restore_argv('rsync', '/s/x', '/srv/media', checksum=True, dry_run=True)):
        for flag in ('--inplace', '--keep-dirlinks', '-K', '--copy-links', '-L', '--copy-unsafe-links',
                     '--append'):
            assert flag not in argv
        assert argv[1:3] == ['-a', '-H'] and '--numeric-ids' in argv
    argv = restore_argv('rsync', '/s/x', '/srv/media/', checksum=True, dry_run=True)
    assert argv[-2:] == ['/s/x/', '/srv/media/']
    assert '--delete' in argv and '--checksum' in argv and '--dry-run' in argv
    argv = snapshot_argv('rsync', '/srv/media', '/s/x', link_dest='/s/prev')
    assert '--link-dest=/s/prev' in argv and '--delete' not in argv and argv[-2:] == ['/srv/media/', '/s/x/']


@pytest.mark.parametrize('name', [b'plain.jpg', b'with space.png', b'caf\xc3\xa9', b'back\\slash',
                                  b'new\nline', b'cr\rhere', b'\xff\xfe not utf-8', b'  leading'])
def test_sums_lines_round_trip(name):
    digest = 'ab' * 32
    line = sums_line(digest, b'trees/media/' + name)
    assert line.endswith(b'\n') and line.count(b'\n') == 1
    assert parse_sums_line(line) == (b'trees/media/' + name, digest)


def test_sums_escaping_matches_gnu_sha256sum():
    # `sha256sum 'a\b'` prints a leading backslash and doubles the one in the name.
    assert sums_line('0' * 64, b'a\\b') == b'\\' + b'0' * 64 + b'  a\\\\b\n'
    assert sums_line('0' * 64, b'a\nb') == b'\\' + b'0' * 64 + b'  a\\nb\n'


@pytest.mark.parametrize('bad', [b'', b'xyz  name', b'0' * 63 + b'  name', b'0' * 64 + b' name', b'g' * 64 + b'  n'])
def test_bad_sums_lines(bad):
    with pytest.raises(ValueError):
        parse_sums_line(bad)


def test_sort_key_is_path_component_order():
    paths = [b'a-c', b'a/b', b'a', b'a/b/c', b'b', b'a.d/x']
    assert sorted(paths, key=sort_key) == [b'a', b'a/b', b'a/b/c', b'a-c', b'a.d/x', b'b']
