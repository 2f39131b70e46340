# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""media_restore on real trees with real rsync: exact, confined to the target, verified."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from support.media_tree import NAMES, describe, make_flat_tree, make_rich_tree, write
from support.modules import run_module


def snap(src, root, **kw):
    args = dict(src=src if isinstance(src, list) else [src], snapshot_root=root)
    args.update(kw)
    r = run_module('media_snapshot', args)
    assert not r.failed, r
    return r


def restore(root, check=False, **kw):
    args = dict(snapshot_root=root)
    args.update(kw)
    return run_module('media_restore', args, check=check, diff=True)


@pytest.fixture
def tree(tmp_path):
    return make_rich_tree(str(tmp_path / 'media'))


def mess_up(tree):
    """What a bad deploy does to MEDIA_ROOT: new, changed, deleted, re-moded, re-linked files."""
    write(os.path.join(tree, 'uploads', 'new-after-snapshot.jpg'), b'new' * 100)
    write(os.path.join(tree, NAMES['unicode']), b'changed content', mtime=1700000000)
    os.unlink(os.path.join(tree, NAMES['spaces']))
    shutil.rmtree(os.path.join(tree, 'thumbs', 'd03'))
    os.chmod(os.path.join(tree, NAMES['script']), 0o600)
    os.chmod(os.path.join(tree, NAMES['private']), 0o644)
    os.unlink(os.path.join(tree, 'docs', 'cat-link.jpg'))
    os.symlink('/etc/passwd', os.path.join(tree, 'docs', 'cat-link.jpg'))
    shutil.rmtree(os.path.join(tree, 'empty'))
    os.rmdir(os.path.join(tree, 'cache'))
    write(os.path.join(tree, 'cache'), b'a file where a directory was')
    os.unlink(os.path.join(tree, 'photos', 'hardlinked-cat.jpg'))
    write(os.path.join(tree, 'photos', 'hardlinked-cat.jpg'), b'no longer a hard link', mtime=1600000000)
    subprocess.run(['chown', '0:0', os.path.join(tree, NAMES['private'])], check=True)


def test_restore_makes_the_target_exactly_the_snapshot(tree, snapshot_root):
    original = describe(tree)
    r = snap(tree, snapshot_root, checksums=True)
    mess_up(tree)
    assert describe(tree) != original

    res = restore(snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed, res
    assert res['changed'] is True and res['verified'] is True and res['checksums_verified'] is True
    t = res['trees'][0]
    assert t['dest'] == tree and t['target_verified'] is True
    assert t['deleted'] >= 2 and t['created'] >= 5 and t['updated'] >= 3
    assert describe(tree) == original  # names, bytes, modes, owners, mtimes, symlinks, hard links
    lines = res['diff']['prepared'].splitlines()
    assert '- %s/uploads/new-after-snapshot.jpg' % tree in lines
    assert '+ %s/%s' % (tree, NAMES['spaces']) in lines
    assert any(line.startswith('~ %s/%s (' % (tree, NAMES['script'])) and 'mode' in line for line in lines)

    again = restore(snapshot_root, snapshot_id=r['snapshot_id'])
    assert not again.failed and again['changed'] is False and again['diff']['prepared'] == ''
    assert describe(tree) == original


def test_check_mode_reports_and_touches_nothing(tree, snapshot_root):
    r = snap(tree, snapshot_root)
    mess_up(tree)
    messed = describe(tree)
    res = restore(snapshot_root, check=True, snapshot_id=r['snapshot_id'])
    assert not res.failed, res
    assert res['changed'] is True and 'seconds' not in res
    assert '--dry-run' in res['commands'][0]
    assert describe(tree) == messed
    lines = res['diff']['prepared'].splitlines()
    assert '- %s/uploads/new-after-snapshot.jpg' % tree in lines
    assert '~ %s/%s (size, mtime)' % (tree, NAMES['unicode']) in lines
    restore(snapshot_root, snapshot_id=r['snapshot_id'])
    res = restore(snapshot_root, check=True, snapshot_id=r['snapshot_id'])
    assert res['changed'] is False and res['trees'][0]['created'] == 0


def test_symlinks_in_the_target_are_never_followed_out(tree, snapshot_root, tmp_path):
    original = describe(tree)
    r = snap(tree, snapshot_root)
    outside = str(tmp_path / 'outside')  # stands for /etc
    os.makedirs(outside)
    write(os.path.join(outside, 'passwd'), b'root:x:0:0\n', mode=0o644, mtime=1500000000)
    write(os.path.join(outside, 'cat.jpg'), b'not a cat', mode=0o644, mtime=1500000000)
    before_outside = describe(outside)
    # a directory of the target replaced by a symlink to outside, a file replaced by one, and a
    # directory the snapshot does not have pointing outside (--delete must remove the link, not the files)
    shutil.rmtree(os.path.join(tree, 'photos', '2024'))
    os.symlink(outside, os.path.join(tree, 'photos', '2024'))
    os.unlink(os.path.join(tree, NAMES['private']))
    os.symlink(os.path.join(outside, 'passwd'), os.path.join(tree, NAMES['private']))
    os.symlink(outside, os.path.join(tree, 'planted'))
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed, res
    assert describe(outside) == before_outside
    assert describe(tree) == original


def test_restore_into_another_directory_and_tree_selection(tmp_path, snapshot_root):
    a = make_rich_tree(str(tmp_path / 'site' / 'media'))
    b = str(tmp_path / 'site' / 'private')
    make_flat_tree(b, 10, 300)
    r = snap([a, b], snapshot_root)
    other = str(tmp_path / 'elsewhere' / 'restored')
    os.makedirs(os.path.dirname(other))
    res = restore(snapshot_root, dest=other)
    assert res.failed and 'holds several trees (media, private)' in res['msg'] and 'choose one with tree' in res['msg']
    res = restore(snapshot_root, dest=other, tree=b)
    assert not res.failed, res
    assert describe(other) == describe(b)
    res = restore(snapshot_root, dest=other, tree='media')
    assert not res.failed and describe(other) == describe(a)
    res = restore(snapshot_root, tree='nope')
    assert res.failed and "no tree 'nope'" in res['msg'] and 'media (%s)' % a in res['msg']
    res = restore(snapshot_root, dest=str(tmp_path / 'missing-parent' / 'x'), tree='media')
    assert res.failed and 'its parent directory' in res['msg'] and 'missing-parent' in res['msg']
    # default: every tree back to where it came from
    shutil.rmtree(a)
    shutil.rmtree(b)
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed, res
    assert [t['dest'] for t in res['trees']] == [a, b]
    assert describe(a) == describe(other)


def test_missing_tree_is_skipped_with_a_warning(tmp_path, snapshot_root):
    gone = str(tmp_path / 'never-existed')
    r = snap([gone], snapshot_root, allow_missing=True)
    os.makedirs(gone)
    write(os.path.join(gone, 'later.txt'), b'created after the snapshot')
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed, res
    assert res['changed'] is False and 'recorded' in res['trees'][0]['skipped']
    assert 'left alone' in str(res.get('warnings'))  # ansible-core 2.19 returns structured warnings
    assert os.path.exists(os.path.join(gone, 'later.txt'))


def test_damaged_snapshot_is_refused_and_target_untouched(tmp_path, snapshot_root):
    src = str(tmp_path / 'media')
    paths = make_flat_tree(src, 20, 2048)
    r = snap(src, snapshot_root, checksums=True)
    os.unlink(paths[0])
    messed = describe(src)
    copy = os.path.join(snapshot_root, r['snapshot_id'], 'media', 'trees', 'media', os.path.relpath(paths[5], src))
    st = os.stat(copy)
    with open(copy, 'r+b') as f:
        f.write(b'X')
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    for check in (True, False):
        res = restore(snapshot_root, check=check, snapshot_id=r['snapshot_id'])
        assert res.failed and 'failed its checksum verification' in res['msg'] and 'f00005.bin: sha256 differs' in res['msg']
        assert describe(src) == messed
    # verify_checksums=false (a caller that verified the whole snapshot just before, as the restore role does):
    # the counts and the listing are checked, no file is read - the edit in place goes unseen.
    res = restore(snapshot_root, check=True, snapshot_id=r['snapshot_id'], verify_checksums=False)
    assert not res.failed and res['verified'] is True and res['checksums_verified'] is False, res
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'], verify=False, compare='checksum')
    assert not res.failed and res['verified'] is False, 'verify: false is the operator overriding the check'
    os.unlink(os.path.join(snapshot_root, r['snapshot_id'], 'media', 'trees', 'media',
                           os.path.relpath(paths[7], src)))
    restored = describe(src)
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'], verify_checksums=False)
    assert res.failed and 'failed its checksum verification' in res['msg'] and 'f00007.bin' in res['msg'], res['msg']
    assert describe(src) == restored


def test_quick_compare_misses_an_in_place_edit_and_checksum_compare_finds_it(tmp_path, snapshot_root):
    src = str(tmp_path / 'media')
    paths = make_flat_tree(src, 5, 1000)
    original = describe(src)
    r = snap(src, snapshot_root)
    st = os.stat(paths[2])
    with open(paths[2], 'r+b') as f:
        f.write(b'edited in place, same size, same mtime')
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns))
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed and res['changed'] is False
    assert describe(src) != original
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'], compare='checksum')
    assert not res.failed and res['changed'] is True and res['trees'][0]['updated'] == 1
    assert describe(src) == original


def test_target_that_is_not_writable(tmp_path, snapshot_root):
    src = str(tmp_path / 'media')
    make_flat_tree(src, 3, 10)
    r = snap(src, snapshot_root)
    ro = tmp_path / 'ro'
    ro.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(ro)], check=True)
    try:
        for dest in (str(ro), str(ro / 'media')):
            res = restore(snapshot_root, snapshot_id=r['snapshot_id'], dest=dest)
            assert res.failed and 'not writable' in res['msg'] and dest in res['msg'], res['msg']
    finally:
        subprocess.run(['umount', str(ro)], check=True)
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'], dest=os.path.join(src, 'd0', 'f00000.bin'))
    assert res.failed and 'is not a directory' in res['msg']


def test_snapshot_without_media_part(tmp_path, snapshot_root):
    db = str(tmp_path / 'db.sqlite3')
    subprocess.run(['sqlite3', db, 'CREATE TABLE t(x);'], check=True)
    d = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=snapshot_root))
    assert not d.failed
    res = restore(snapshot_root, snapshot_id=d['snapshot_id'], dest=str(tmp_path / 'x'))
    assert res.failed and 'has no media part (it has: database)' in res['msg']
    res = restore(snapshot_root, snapshot_id=d['snapshot_id'], part='database', dest=str(tmp_path / 'x'))
    assert res.failed and 'is a database part, not a media part' in res['msg']


@pytest.mark.parametrize('bad_id', ['../etc', '..', '/etc/passwd', 'a/../../b', 'x.partial'])
def test_snapshot_ids_that_escape_are_refused(tmp_path, snapshot_root, bad_id):
    src = str(tmp_path / 'media')
    make_flat_tree(src, 2, 10)
    snap(src, snapshot_root)
    res = restore(snapshot_root, snapshot_id=bad_id, dest=str(tmp_path / 'x'))
    assert res.failed and 'invalid snapshot id' in res['msg'] and repr(bad_id) in res['msg']
    res = restore(snapshot_root, snapshot_path=str(tmp_path), dest=str(tmp_path / 'x'))
    assert res.failed and 'not a snapshot directory directly under snapshot_root' in res['msg']


def test_dest_overlapping_the_snapshot_root_is_refused(tmp_path, snapshot_root):
    src = str(tmp_path / 'media')
    make_flat_tree(src, 2, 10)
    r = snap(src, snapshot_root)
    for dest in (snapshot_root, str(tmp_path), os.path.join(snapshot_root, 'inside')):
        res = restore(snapshot_root, snapshot_id=r['snapshot_id'], dest=dest)
        assert res.failed and 'overlaps snapshot_root' in res['msg'], dest
    assert os.listdir(snapshot_root) == [r['snapshot_id']]


def test_dest_symlink_is_resolved_once(tmp_path, snapshot_root):
    shared = str(tmp_path / 'shared' / 'media')
    make_flat_tree(shared, 4, 100)
    original = describe(shared)
    release = tmp_path / 'releases' / '42'
    release.mkdir(parents=True)
    link = str(release / 'media')
    os.symlink(shared, link)  # Ansistrano: releases/42/media -> shared/media
    r = snap(link, snapshot_root)
    assert r['trees'][0]['resolved'] == shared
    os.unlink(os.path.join(shared, 'd1', 'f00001.bin'))
    res = restore(snapshot_root, snapshot_id=r['snapshot_id'])
    assert not res.failed and res['trees'][0]['dest'] == shared
    assert os.path.islink(link) and describe(shared) == original
