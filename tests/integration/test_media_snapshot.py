# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""media_snapshot and snapshot_info on real trees with real rsync, du and sha256sum."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support.disk import small_tmpfs
from support.media_tree import NAMES, describe, du_bytes, inode, make_flat_tree, make_rich_tree, write
from support.modules import run_module


def snap(src, root, **kw):
    check = kw.pop('_check', False)
    args = dict(src=src if isinstance(src, list) else [src], snapshot_root=root)
    args.update(kw)
    return run_module('media_snapshot', args, check=check, diff=True)


@pytest.fixture
def tree(tmp_path):
    return make_rich_tree(str(tmp_path / 'media'))


def tree_dir(root, r, name='media', part='media'):
    return os.path.join(root, r['snapshot_id'], part, 'trees', name)


def test_snapshot_is_an_exact_copy_in_a_private_directory(tree, snapshot_root):
    r = snap(tree, snapshot_root, checksums=True)
    assert not r.failed, r
    assert r['changed'] is True and r['finalized'] is True
    copy = tree_dir(snapshot_root, r)
    assert describe(copy) == describe(tree)
    snapdir = os.path.join(snapshot_root, r['snapshot_id'])
    for d in (snapshot_root, snapdir, os.path.join(snapdir, 'media'), os.path.join(snapdir, 'media', 'trees')):
        assert os.stat(d).st_mode & 0o777 == 0o700, d
    for f in ('manifest.json', 'media/SHA256SUMS'):
        assert os.stat(os.path.join(snapdir, f)).st_mode & 0o777 == 0o600, f
    t = r['trees'][0]
    files_in_tree = sum(1 for v in describe(tree)[0].values() if v[0] == 'f')
    assert t['census']['files'] == files_in_tree
    assert t['census']['symlinks'] == 4
    assert t['census']['bytes'] == sum(v[4] for v in describe(tree)[0].values() if v[0] == 'f')
    assert t['link_dest'] is None and t['changed_paths'] > files_in_tree
    with open(os.path.join(snapdir, 'manifest.json'), encoding='utf-8') as f:
        manifest = json.load(f)
    part = manifest['parts']['media']
    # The snapshot's size counts the trees, not only the files the manifest lists one by one.
    assert part['bytes'] == manifest['bytes'] == t['census']['bytes'] + os.path.getsize(
        os.path.join(snapdir, 'media', 'SHA256SUMS'))
    assert part['kind'] == 'media' and part['source'] == [tree] and part['checksums'] is True
    assert [f['path'] for f in part['files']] == ['media/SHA256SUMS']
    assert part['summary']['files'] == files_in_tree
    assert part['trees'][0]['census'] == t['census']


def test_sha256sums_is_checkable_with_gnu_sha256sum(tree, snapshot_root):
    r = snap(tree, snapshot_root, checksums=True)
    partdir = os.path.join(snapshot_root, r['snapshot_id'], 'media')
    p = subprocess.run(['sha256sum', '-c', '--strict', 'SHA256SUMS'], cwd=partdir, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, check=False)
    assert p.returncode == 0, p.stdout
    assert p.stdout.count(b': OK') == r['trees'][0]['census']['files']
    # sha256sum -c read the escaped names back to the real files
    assert b'line\\nbreak.txt: OK' in p.stdout and b'weird/back\\slash.txt: OK' in p.stdout


def test_second_snapshot_after_1pct_change_costs_the_changed_bytes(tmp_path, snapshot_root):
    src = str(tmp_path / 'media')
    paths = make_flat_tree(src, 200, 64 * 1024)
    first = snap(src, snapshot_root, checksums=True)
    assert not first.failed, first
    changed = paths[17:19]  # 1% of the files
    for p in changed:
        write(p, os.urandom(64 * 1024), mtime=1700000000)
    second = snap(src, snapshot_root, checksums=True)
    assert not second.failed, second
    t = second['trees'][0]
    assert t['link_dest']['snapshot_id'] == first['snapshot_id']
    assert t['transferred_bytes'] == 2 * 64 * 1024 and t['transferred_files'] == 2
    assert t['changed_paths'] == 2
    assert t['prelinked_files'] == 198, 'the unchanged files were linked before rsync ran'
    assert t['hashed_files'] == 2 and t['reused_digests'] == 198, 'unchanged files are not read again'

    d1, d2 = (os.path.join(snapshot_root, r['snapshot_id']) for r in (first, second))
    full, growth = du_bytes(d1, d2)
    changed_bytes = 2 * 64 * 1024
    assert full >= 200 * 64 * 1024
    # the 2 changed files, plus 11 directories, the manifest and SHA256SUMS, in 4 KiB blocks
    assert changed_bytes <= growth <= changed_bytes + 20 * 4096, (growth, changed_bytes)
    for i, p in enumerate(paths):
        rel = os.path.relpath(p, src)
        same = inode(os.path.join(d1, 'media/trees/media', rel)) == inode(os.path.join(d2, 'media/trees/media', rel))
        assert same == (p not in changed), rel

    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root, verify=True))
    assert not info.failed and info['damaged'] == []
    parts = [s['parts']['media'] for s in info['snapshots']]
    assert [p['apparent_bytes'] for p in parts] == [200 * 64 * 1024] * 2
    assert parts[1]['files'] == 200 and parts[1]['transferred_bytes'] == changed_bytes
    assert parts[1]['linked_from'] == [first['snapshot_id']]
    # exclusive: only the two changed files (and the directories) belong to the second snapshot alone
    assert changed_bytes <= parts[1]['exclusive_disk_bytes'] <= changed_bytes + 12 * 4096
    assert parts[0]['exclusive_disk_bytes'] <= changed_bytes + 12 * 4096
    assert parts[1]['disk_bytes'] >= 200 * 64 * 1024


def test_unchanged_tree_snapshots_in_almost_no_space(tree, snapshot_root):
    first = snap(tree, snapshot_root)
    second = snap(tree, snapshot_root)
    assert not second.failed
    assert second['changed'] is True, 'a new snapshot is a change even when the media is not'
    assert second['transferred_bytes'] == 0 and second['changed_paths'] == 0
    assert second['diff']['prepared'] == ''
    d1, d2 = (os.path.join(snapshot_root, r['snapshot_id']) for r in (first, second))
    assert describe(os.path.join(d2, 'media/trees/media')) == describe(tree)
    assert du_bytes(d1, d2)[1] <= 30 * 4096


def test_incremental_false_copies_everything(tree, snapshot_root):
    first = snap(tree, snapshot_root)
    second = snap(tree, snapshot_root, incremental=False)
    assert second['trees'][0]['link_dest'] is None
    rel = NAMES['plain']
    assert inode(os.path.join(tree_dir(snapshot_root, first), rel)) != inode(os.path.join(tree_dir(snapshot_root, second), rel))


def test_check_mode_writes_nothing_and_lists_changes(tree, snapshot_root):
    first = snap(tree, snapshot_root)
    write(os.path.join(tree, 'new upload.jpg'), b'x' * 5000)
    write(os.path.join(tree, NAMES['spaces']), b'y' * 10, mtime=1700000000)
    before = sorted(os.listdir(snapshot_root))
    r = snap(tree, snapshot_root, _check=True)
    assert not r.failed, r
    assert r['changed'] is True and r['snapshot_id'] == '(generated)'
    assert sorted(os.listdir(snapshot_root)) == before
    assert r['trees'][0]['link_dest']['snapshot_id'] == first['snapshot_id']
    assert r['transferred_bytes'] == 5010
    lines = r['diff']['prepared'].splitlines()
    assert '+ media/new upload.jpg' in lines
    assert '~ media/%s (size, mtime)' % NAMES['spaces'] in lines
    r = snap(str(os.path.dirname(tree)) + '/nope', snapshot_root, _check=True)
    assert r.failed and 'nope does not exist' in r['msg']


def test_several_sources_and_a_part_of_a_larger_snapshot(tmp_path, snapshot_root):
    a = make_rich_tree(str(tmp_path / 'one' / 'media'))
    b = str(tmp_path / 'two' / 'media')
    make_flat_tree(b, 5, 100)
    gone = str(tmp_path / 'three' / 'uploads')
    r = snap([a, b, gone], snapshot_root, snapshot_id='window-1', finalize=False, allow_missing=True)
    assert not r.failed, r
    assert [(t['name'], t['source'], t['missing']) for t in r['trees']] == [
        ('media', a, False), ('media-2', b, False), ('uploads', gone, True)]
    assert r['finalized'] is False and os.path.isdir(os.path.join(snapshot_root, 'window-1.partial'))
    assert run_module('snapshot_info', dict(snapshot_root=snapshot_root))['snapshots'] == []
    # a database part joins the same snapshot, and finalizes it
    db = str(tmp_path / 'db.sqlite3')
    subprocess.run(['sqlite3', db, 'CREATE TABLE t(x); INSERT INTO t VALUES (1);'], check=True)
    d = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=snapshot_root, snapshot_id='window-1',
                                       labels={'release': 'v2'}))
    assert not d.failed and d['finalized'] is True
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root, verify=True))
    s = info['snapshots'][0]
    assert s['id'] == 'window-1' and sorted(s['parts']) == ['database', 'media'] and s['status'] == 'verified'
    assert s['parts']['media']['missing'] == [gone]
    assert s['parts']['media']['trees'] == ['media', 'media-2', 'uploads']
    assert describe(os.path.join(snapshot_root, 'window-1', 'media/trees/media')) == describe(a)
    assert describe(os.path.join(snapshot_root, 'window-1', 'media/trees/media-2')) == describe(b)


def test_verification_finds_damage_in_shared_files(tmp_path, snapshot_root):
    src = str(tmp_path / 'media')
    paths = make_flat_tree(src, 20, 4096)
    first = snap(src, snapshot_root, checksums=True)
    second = snap(src, snapshot_root, checksums=True)
    victim = os.path.join(tree_dir(snapshot_root, first), os.path.relpath(paths[3], src))
    st = os.stat(victim)
    with open(victim, 'r+b') as f:  # bit rot: same size, same mtime
        f.seek(100)
        f.write(b'\0rot')
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root, verify=True))
    # the file is one inode shared by both snapshots: both are damaged, and say which file
    assert info['damaged'] == [first['snapshot_id'], second['snapshot_id']]
    for s in info['snapshots']:
        assert any('d3/f00003.bin: sha256 differs' in p for p in s['problems']), s['problems']

    os.chmod(os.path.join(tree_dir(snapshot_root, second), 'd5'), 0o777)
    os.unlink(os.path.join(tree_dir(snapshot_root, second), 'd4', 'f00004.bin'))
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root, snapshot_id=second['snapshot_id'], verify=True))
    problems = info['snapshots'][0]['problems']
    assert any('f00004.bin: listed in SHA256SUMS but missing' in p for p in problems), problems
    assert any('files 19, recorded 20' in p for p in problems), problems
    assert any('listing' in p for p in problems), problems


def test_without_checksums_the_listing_is_still_verified(tree, snapshot_root):
    r = snap(tree, snapshot_root)
    assert r['files'] == []
    os.chmod(os.path.join(tree_dir(snapshot_root, r), NAMES['private']), 0o644)
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root, verify=True))
    assert info['damaged'] == [r['snapshot_id']]
    assert 'media/trees/media: the listing' in info['snapshots'][0]['problems'][0]


@pytest.mark.parametrize('case', ['missing', 'file', 'relative', 'inside-root', 'contains-root', 'empty', 'same-twice'])
def test_bad_sources_are_refused_and_leave_nothing(tmp_path, snapshot_root, case):
    media = make_flat_tree(str(tmp_path / 'm'), 2, 10) and str(tmp_path / 'm')
    src = {
        'missing': [str(tmp_path / 'no such dir')],
        'file': [os.path.join(media, 'd0', 'f00000.bin')],
        'relative': ['media/uploads'],
        'inside-root': [os.path.join(snapshot_root, 'x')],
        'contains-root': [str(tmp_path)],
        'empty': [],
        'same-twice': [media, media + '/'],
    }[case]
    if case == 'inside-root':
        os.makedirs(src[0])
    r = snap(src, snapshot_root)
    assert r.failed
    expected = {
        'missing': "no such dir does not exist (set allow_missing",
        'file': 'is not a directory',
        'relative': "absolute paths, got 'media/uploads'",
        'inside-root': 'overlaps snapshot_root',
        'contains-root': 'overlaps snapshot_root',
        'empty': 'src is empty',
        'same-twice': 'are the same directory',
    }[case]
    assert expected in r['msg'], r['msg']
    leftovers = [e for e in os.listdir(snapshot_root) if e != 'x'] if os.path.isdir(snapshot_root) else []
    assert leftovers == []


def test_space_reserve_and_full_disk_leave_nothing_that_looks_complete(tmp_path):
    src = str(tmp_path / 'media')
    make_flat_tree(src, 40, 256 * 1024)  # 10 MiB
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', str(small)], check=True)
    try:
        root = str(small / 'snaps')
        r = snap(src, root, _check=True)
        assert r.failed and 'would not fit' in r['msg'], r['msg']
        assert r['preflight']['estimated_bytes'] >= 10 * 2 ** 20
        assert not os.path.exists(root)
        r = snap(src, root, space_reserve='99%')
        assert r.failed and 'below space_reserve' in r['msg'] and r['preflight']['reserve_bytes'] > 7 * 2 ** 20
        assert not os.path.exists(root) or os.listdir(root) == []
        # the guard stops the copy while 3 MiB are still free
        r = snap(src, root, space_reserve='3M')
        assert r.failed and 'fell to' in r['msg'] and 'below space_reserve (3145728 bytes)' in r['msg'], r['msg']
        assert os.listdir(root) == [], 'the stopped snapshot must be removed'
        # without a reserve, the module's own copy (before rsync) runs into the full disk: the same clean failure
        r = snap(src, root, space_reserve='0')
        assert r.failed and 'into the snapshot failed: No space left on device' in r['msg'], r['msg']
        assert os.listdir(root) == []
        info = run_module('snapshot_info', dict(snapshot_root=root))
        assert info['snapshots'] == [] and info['incomplete'] == []
    finally:
        subprocess.run(['umount', str(small)], check=True)
    r = snap(src, str(tmp_path / 'roomy'), space_reserve='1G')
    assert not r.failed and r['preflight']['lowest_free_bytes'] <= r['preflight']['free_bytes']


@pytest.mark.parametrize('bad', ['lots', '5 percent', '101%', '-1G', '1.5.5M'])
def test_bad_space_reserve_names_the_value(tree, snapshot_root, bad):
    r = snap(tree, snapshot_root, space_reserve=bad)
    assert r.failed and 'invalid space_reserve %r' % bad in r['msg']


def test_failed_part_of_a_shared_snapshot_removes_only_itself(tmp_path):
    src = str(tmp_path / 'media')
    make_flat_tree(src, 40, 256 * 1024)
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(small)], check=True)
    try:
        root = str(small / 'snaps')
        db = str(tmp_path / 'db.sqlite3')
        subprocess.run(['sqlite3', db, 'CREATE TABLE t(x);'], check=True)
        d = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=root, snapshot_id='w',
                                           finalize=False))
        assert not d.failed
        r = snap(src, root, snapshot_id='w', space_reserve='0')
        assert r.failed and 'No space left' in r['msg']
        assert sorted(os.listdir(os.path.join(root, 'w.partial'))) == ['.parts', 'database']
        f = run_module('snapshot_finalize', dict(snapshot_root=root, snapshot_id='w', require_parts=['database']))
        assert not f.failed and f['parts'] == ['database']
    finally:
        subprocess.run(['umount', str(small)], check=True)


def test_an_emptied_source_is_refused_unless_allowed(tmp_path, snapshot_root):
    # The uploads live on their own volume (a tmpfs here, NFS/EFS in production); when it is not mounted, the
    # mount point is an empty directory, and a snapshot of it would restore as "delete every upload".
    media = str(tmp_path / 'media')
    with small_tmpfs(media, size='16m'):
        make_flat_tree(media, 20, 1000)
        first = snap(media, snapshot_root)
        assert not first.failed and first['trees'][0]['census']['files'] == 20, first
    assert os.listdir(media) == []  # unmounted
    for check in (True, False):
        r = snap(media, snapshot_root, _check=check)
        assert r.failed, r
        assert ('source directory %s is empty, but snapshot %s recorded 20 files in it'
                % (media, first['snapshot_id'])) in r['msg'], r['msg']
        assert 'allow_empty: true' in r['msg']
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root))
    assert [s['id'] for s in info['snapshots']] == [first['snapshot_id']] and info['incomplete'] == []
    emptied = snap(media, snapshot_root, allow_empty=True)
    assert not emptied.failed and emptied['trees'][0]['census']['files'] == 0, emptied
    # after an empty snapshot of it, an empty source is what the last snapshot recorded: no refusal
    again = snap(media, snapshot_root)
    assert not again.failed, again


def test_a_failed_snapshot_run_as_another_user_is_removed_despite_read_only_directories(world_dir):
    """The copy keeps the source's modes, so a 0555 directory in it cannot be emptied by a user other than
    root until it is opened up: the clean-up of a failed part, or of a failed snapshot, must do that."""
    src, root = os.path.join(world_dir, 'media'), os.path.join(world_dir, 'snaps')
    make_rich_tree(src)
    os.mkdir(root)
    subprocess.run(['chown', '-R', 'nobody:nogroup', src, root], check=True)
    write(os.path.join(src, 'zz-not-yours.bin'), b'x' * 4096, mode=0o600)  # root's: rsync cannot read it
    r = run_module('media_snapshot', dict(src=[src], snapshot_root=root), user='nobody')
    assert r.failed, r
    assert os.listdir(root) == [], 'the failed snapshot is removed'
    db = os.path.join(world_dir, 'db.sqlite3')
    subprocess.run(['sqlite3', db, 'CREATE TABLE t(x);'], check=True)
    os.chmod(db, 0o644)
    d = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=root, snapshot_id='w',
                                       finalize=False), user='nobody')
    assert not d.failed, d
    r = run_module('media_snapshot', dict(src=[src], snapshot_root=root, snapshot_id='w'), user='nobody')
    assert r.failed, r
    assert sorted(os.listdir(os.path.join(root, 'w.partial'))) == ['.parts', 'database'], 'only the failed part goes'
    f = run_module('snapshot_finalize', dict(snapshot_root=root, snapshot_id='w', require_parts=['database']),
                   user='nobody')
    assert not f.failed and f['parts'] == ['database'], f
