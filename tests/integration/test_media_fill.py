# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The linking and copying media_snapshot does itself before rsync (_media_fill), on real trees with
real rsync: it links only what plain ``rsync --link-dest`` would link, rsync then never changes a
linked inode (so a previous snapshot cannot change), a first copy equals and is reported as rsync's
own, and nothing outside the trees is ever reached."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _media, _media_fill
from ansible_collections.djangoops.maintenance.plugins.module_utils._media_fill import MAX_DEPTH, copy_new, link_unchanged
from ansible_collections.djangoops.maintenance.plugins.module_utils._rsync import find_rsync, run_rsync, snapshot_argv
from support.media_tree import NAMES, describe, inode, make_rich_tree, write
from support.modules import run_module


def snap(src, root):
    r = run_module('media_snapshot', dict(src=[src], snapshot_root=root))
    assert not r.failed, r
    return os.path.join(root, r['snapshot_id'], 'media', 'trees', 'media'), r


def shared_inodes(a, b):
    """Relative paths of the regular files of ``b`` that are the same inode as in ``a``."""
    out = set()
    for dirpath, dummy, files in os.walk(b):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, b)
            other = os.path.join(a, rel)
            if not os.path.islink(full) and os.path.lexists(other) and inode(other) == inode(full):
                out.add(rel)
    return out


@pytest.fixture
def first(tmp_path):
    src = make_rich_tree(str(tmp_path / 'media'))
    prev, dummy = snap(src, str(tmp_path / 'snapshots'))
    return src, prev


def test_links_exactly_the_files_plain_link_dest_links(first, tmp_path):
    src, prev = first

    def p(rel):
        return os.path.join(src, rel)

    st = os.stat(p(NAMES['spaces']))
    write(p(NAMES['spaces']), b'y' * st.st_size, mtime=st.st_mtime + 5)      # same size, new content and mtime
    os.chmod(p(NAMES['script']), 0o700)                                       # mode only
    os.utime(p(NAMES['unicode']), ns=(0, os.stat(p(NAMES['unicode'])).st_mtime_ns + 1))  # mtime, by 1 ns
    os.chown(p(NAMES['backslash']), 4321, 4321)                               # owner only
    write(p('photos/new.jpg'), b'new')                                        # new
    os.remove(p(NAMES['newline']))                                            # deleted
    before = describe(prev)

    dest = str(tmp_path / 'pre')
    files, size = link_unchanged(src, prev, dest)
    ours = shared_inodes(prev, dest)
    plain = str(tmp_path / 'plain')
    run_rsync(snapshot_argv(find_rsync(), src, plain, link_dest=prev))
    theirs = shared_inodes(prev, plain)

    changed = {NAMES['spaces'], NAMES['script'], NAMES['unicode'], NAMES['backslash']}
    hard_linked_pair = {NAMES['plain'], 'photos/hardlinked-cat.jpg'}  # left to rsync -H
    assert not ours & (changed | hard_linked_pair)
    assert ours == theirs - hard_linked_pair - {NAMES['unicode']}  # rsync compares mtimes to the second
    assert files == len(ours) > 30 and size == sum(os.path.getsize(os.path.join(dest, r)) for r in ours)
    assert describe(prev) == before


def test_the_snapshot_equals_the_source_and_the_previous_one_is_untouched(first, tmp_path):
    src, prev = first
    before = describe(prev)
    os.chmod(os.path.join(src, NAMES['script']), 0o700)
    write(os.path.join(src, 'photos/new.jpg'), b'new')
    new, r = snap(src, str(tmp_path / 'snapshots'))
    t = r['trees'][0]
    assert t['prelinked_files'] > 30
    plain = run_rsync(snapshot_argv(find_rsync(), src, str(tmp_path / 'plain'), link_dest=prev))
    # as plain --link-dest reports them: the chmod, the new file, the mtime of its directory
    assert t['changed_paths'] == plain.changes == 3
    assert describe(new) == describe(src)
    assert describe(prev) == before


def test_a_mode_changed_after_linking_never_reaches_the_previous_snapshot(first, tmp_path):
    """The race the --ignore-existing is for: the application chmods a file between the module's
    check and rsync's listing. Without that flag rsync would chmod the linked inode, which is the
    previous snapshot's file too (checked: the second half of this test)."""
    src, prev = first
    victim = NAMES['spaces']  # 0644, one link
    before = describe(prev)

    def argv_for(dest, **kw):
        return snapshot_argv(find_rsync(), src, dest, link_dest=prev, **kw)

    dest = str(tmp_path / 'pre')
    link_unchanged(src, prev, dest)
    assert inode(os.path.join(dest, victim)) == inode(os.path.join(prev, victim))
    os.chmod(os.path.join(src, victim), 0o600)
    run_rsync(argv_for(dest, prefilled=True))
    assert describe(prev) == before
    assert inode(os.path.join(dest, victim)) == inode(os.path.join(prev, victim))
    assert os.stat(os.path.join(dest, victim)).st_mode & 0o777 == 0o644, 'the file as it was when linked'

    # the same without --ignore-existing: rsync fixes the mode on the shared inode
    os.chmod(os.path.join(src, victim), 0o644)
    shutil.rmtree(dest)
    link_unchanged(src, prev, dest)
    os.chmod(os.path.join(src, victim), 0o600)
    run_rsync(argv_for(dest))
    assert os.stat(os.path.join(prev, victim)).st_mode & 0o777 == 0o600


def test_a_file_deleted_after_linking_is_not_in_the_snapshot(first, tmp_path):
    src, prev = first
    dest = str(tmp_path / 'pre')
    link_unchanged(src, prev, dest)
    assert os.path.exists(os.path.join(dest, NAMES['private']))
    os.remove(os.path.join(src, NAMES['private']))
    run_rsync(snapshot_argv(find_rsync(), src, dest, link_dest=prev, prefilled=True))
    assert describe(dest) == describe(src)
    assert os.path.exists(os.path.join(prev, NAMES['private']))


def test_nothing_outside_the_trees_is_followed(tmp_path):
    """A previous tree whose directory became a symlink (to a place holding an identical file) and a
    source with a symlinked directory: neither is entered, nothing outside gets a new link."""
    outside = str(tmp_path / 'outside')
    write(os.path.join(outside, 'a.bin'), b'A' * 100, mtime=1600000000)
    src = str(tmp_path / 'src')
    write(os.path.join(src, 'sub', 'a.bin'), b'A' * 100, mtime=1600000000)
    os.symlink(outside, os.path.join(src, 'linked-dir'))
    prev = str(tmp_path / 'prev')
    os.makedirs(prev)
    os.symlink(outside, os.path.join(prev, 'sub'))
    os.makedirs(os.path.join(prev, 'linked-dir'))
    write(os.path.join(prev, 'linked-dir', 'a.bin'), b'A' * 100, mtime=1600000000)
    dest = str(tmp_path / 'dest')
    assert link_unchanged(src, prev, dest) == (0, 0)
    assert os.stat(os.path.join(outside, 'a.bin')).st_nlink == 1
    assert not os.path.lexists(os.path.join(dest, 'sub'))
    assert not os.path.lexists(os.path.join(dest, 'linked-dir'))
    run_rsync(snapshot_argv(find_rsync(), src, dest, link_dest=prev, prefilled=True))
    assert describe(dest) == describe(src)
    assert os.path.islink(os.path.join(dest, 'linked-dir'))


def test_a_tree_deeper_than_the_walk_is_linked_by_rsync(tmp_path):
    src = str(tmp_path / 'src')
    deep = os.path.join(*(['d'] * (MAX_DEPTH + 3)))
    write(os.path.join(src, deep, 'bottom.bin'), b'x' * 10, mtime=1600000000)
    write(os.path.join(src, 'top.bin'), b'y' * 10, mtime=1600000000)
    prev = str(tmp_path / 'prev')
    run_rsync(snapshot_argv(find_rsync(), src, prev))
    dest = str(tmp_path / 'dest')
    assert link_unchanged(src, prev, dest) == (1, 10)
    run_rsync(snapshot_argv(find_rsync(), src, dest, link_dest=prev, prefilled=True))
    assert describe(dest) == describe(src)
    assert inode(os.path.join(dest, deep, 'bottom.bin')) == inode(os.path.join(prev, deep, 'bottom.bin'))


@pytest.fixture
def public_dir():
    path = tempfile.mkdtemp(prefix='media-link-')
    os.chmod(path, 0o755)  # pytest's tmp_path is private to root
    yield path
    shutil.rmtree(path)


def test_as_another_user_read_only_directories_still_take_changed_files(public_dir):
    """Not root: owners are not compared (the copy belongs to the user) and rsync, not the module,
    must still write a changed file into a directory the module already gave its 0555 mode."""
    base = os.path.join(public_dir, 'u')
    src, prev, dest = (os.path.join(base, d) for d in ('src', 'prev', 'dest'))
    write(os.path.join(src, 'ro', 'same.txt'), b'same', mtime=1600000000)
    write(os.path.join(src, 'ro', 'changed.txt'), b'old', mtime=1600000000)
    os.chmod(os.path.join(src, 'ro'), 0o555)
    shutil.copy(_media_fill.__file__, os.path.join(public_dir, 'media_fill.py'))  # standard library only
    subprocess.run(['chown', '-R', 'nobody:nogroup', public_dir], check=True)

    def as_nobody(argv):
        out = subprocess.run(['runuser', '-u', 'nobody', '--'] + argv, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, check=False, universal_newlines=True)
        assert out.returncode == 0, out.stdout
        return out.stdout

    rsync = find_rsync()
    as_nobody(snapshot_argv(rsync, src, prev))
    first = os.path.join(base, 'first')
    copied = as_nobody(['/usr/bin/python3', '-c', 'import sys; sys.path.insert(0, sys.argv[1]); import media_fill; '
                        'print(media_fill.copy_new(*sys.argv[2:]).files)', public_dir, src, first])
    assert copied.strip() == '2'
    as_nobody(snapshot_argv(rsync, src, first, prefilled=True))
    assert describe(first) == describe(prev), 'as rsync itself copies for this user'
    os.chmod(os.path.join(src, 'ro'), 0o755)
    write(os.path.join(src, 'ro', 'changed.txt'), b'new', mtime=1600000001)
    os.chown(os.path.join(src, 'ro', 'changed.txt'), 65534, 65534)
    os.chmod(os.path.join(src, 'ro'), 0o555)
    linked = as_nobody(['/usr/bin/python3', '-c', 'import sys; sys.path.insert(0, sys.argv[1]); import media_fill; '
                        'print(media_fill.link_unchanged(*sys.argv[2:]))', public_dir, src, prev, dest])
    assert linked.strip() == '(1, 4)'
    as_nobody(snapshot_argv(rsync, src, dest, link_dest=prev, prefilled=True))
    assert describe(dest) == describe(src)
    with open(os.path.join(dest, 'ro', 'changed.txt'), 'rb') as f:
        assert f.read() == b'new'
    assert inode(os.path.join(dest, 'ro', 'same.txt')) == inode(os.path.join(prev, 'ro', 'same.txt'))


def test_without_a_destination_the_copy_falls_back_to_plain_link_dest(first, tmp_path):
    src, prev = first
    dest = str(tmp_path / 'no-such-parent' / 'dest')
    with pytest.raises(FileNotFoundError):
        link_unchanged(src, prev, dest)
    assert _media.prelink(src, prev, dest) is None
    assert not os.path.lexists(os.path.dirname(dest))


def test_a_first_copy_equals_and_is_reported_as_rsyncs_own(tmp_path, snapshot_root):
    src = make_rich_tree(str(tmp_path / 'media'))
    r = run_module('media_snapshot', dict(src=[src], snapshot_root=snapshot_root), diff=True)
    assert not r.failed, r
    t = r['trees'][0]
    plain = run_rsync(snapshot_argv(find_rsync(), src, str(tmp_path / 'plain')), keep_paths=1000)
    single = sum(1 for dirpath, dummy, files in os.walk(src) for f in files
                 if not os.path.islink(os.path.join(dirpath, f)) and os.lstat(os.path.join(dirpath, f)).st_nlink == 1)
    assert t['precopied_files'] == single > 30
    assert t['changed_paths'] == plain.changes
    assert t['transferred_bytes'] == plain.transferred_bytes
    assert t['transferred_files'] == plain.output.stats['number_of_regular_files_transferred']
    assert describe(os.path.join(snapshot_root, r['snapshot_id'], 'media', 'trees', 'media')) == describe(src)
    # the same --diff lines as rsync's own first copy gives (in the module's order: its copies first)
    expected = '\n'.join(_media.diff_lines('media', plain))
    assert sorted(r['diff']['prepared'].split('\n')) == sorted((expected + '\n').split('\n'))


def test_a_file_changed_while_copied_is_left_to_rsync(tmp_path, monkeypatch):
    src = str(tmp_path / 'src')
    for i in range(3):
        write(os.path.join(src, 'f%d.bin' % i), b'%d' % i * 1000, mtime=1600000000)
    real = _media_fill._copy_data
    calls = []

    def copy_then_touch(src_fd, dest_fd, size):
        done = real(src_fd, dest_fd, size)
        calls.append(size)
        if len(calls) == 2:  # the application rewrites the second file meanwhile
            os.utime(src_fd, ns=(0, 1700000000 * 10 ** 9))
        return done

    monkeypatch.setattr(_media_fill, '_copy_data', copy_then_touch)
    dest = str(tmp_path / 'dest')
    copies = copy_new(src, dest)
    assert copies.files == 2 and len(calls) == 3
    assert sorted(os.listdir(dest)) == ['f0.bin', 'f2.bin'], 'the changed file was removed again'
    run = run_rsync(snapshot_argv(find_rsync(), src, dest, prefilled=True))
    assert run.output.stats['number_of_regular_files_transferred'] == 1
    assert describe(dest) == describe(src)
