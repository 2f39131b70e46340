# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot format: ids, partial/complete life cycle, manifest, verification, confinement."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    MANIFEST, SnapshotError, SnapshotStore, new_id, summarize, validate_id, validate_part)


def write_part(builder, name, payloads):
    part = builder.part(name)
    for rel, data in payloads.items():
        hf = part.create(rel)
        hf.write(data)
        hf.close()
        part.add_hashed(hf)
    return part.commit({'kind': 'test'})


def test_generated_ids_sort_by_time_and_validate():
    t1 = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    t2 = t1 + datetime.timedelta(seconds=1)
    a, b = new_id(t1), new_id(t2)
    assert re.match(r'^20260102T030405Z-[a-z0-9]{6}$', a)
    assert a < b
    assert validate_id(a) == a
    assert len({new_id(t1) for dummy in range(200)}) == 200


@pytest.mark.parametrize('bad', ['', '..', '../x', 'a/b', '/abs', '.hidden', '-x', 'x..y', 'x.partial', 'latest',
                                 'a' * 129, 'sp ace', 'nul\x00', 'ünï'])
def test_bad_ids_are_refused_naming_the_value(bad):
    with pytest.raises(SnapshotError) as e:
        validate_id(bad)
    assert repr(bad) in str(e.value)


@pytest.mark.parametrize('bad', ['', 'Database', '../x', 'a/b', '.parts'])
def test_bad_part_names(bad):
    with pytest.raises(SnapshotError):
        validate_part(bad)


def test_life_cycle_partial_then_complete(tmp_path):
    store = SnapshotStore(str(tmp_path / 'root'))
    b = store.begin()
    assert b.path.endswith('.partial') and os.path.isdir(b.path)
    assert store.list() == [] and [k for _n, k in store.entries()] == ['partial']
    with pytest.raises(SnapshotError, match='is incomplete'):
        store.load(b.id)
    rec = write_part(b, 'database', {'dump.bin': b'x' * 1000})
    assert rec['files'] == [{'path': 'database/dump.bin', 'size': 1000,
                             'sha256': hashlib.sha256(b'x' * 1000).hexdigest()}]
    # a second task adds a part to the same snapshot
    b2 = store.open_partial(b.id)
    write_part(b2, 'media', {'a.txt': b'hello'})
    manifest = b2.finalize(labels={'release': 'v1'}, extra={'metadata': {'django': {'shop': ['0001_initial']}}})
    assert sorted(manifest['parts']) == ['database', 'media']
    assert manifest['bytes'] == 1005
    snap = store.load(b.id)
    assert snap.manifest == manifest
    assert snap.verify() == []
    assert store.load('latest').id == b.id
    assert not os.path.exists(os.path.join(snap.path, '.parts'))
    assert summarize(snap)['parts']['media']['files'] == 1


def test_hashes_are_the_real_sha256(tmp_path):
    store = SnapshotStore(str(tmp_path))
    b = store.begin()
    data = os.urandom(3 * 1024 * 1024 + 17)
    rec = write_part(b, 'p', {'f': data})
    assert rec['files'][0]['sha256'] == hashlib.sha256(data).hexdigest()


def test_modes_are_private(tmp_path):
    old = os.umask(0)
    try:
        store = SnapshotStore(str(tmp_path / 'root'))
        b = store.begin()
        write_part(b, 'p', {'f': b'1'})
        b.finalize()
    finally:
        os.umask(old)
    for dirpath, dirs, files in os.walk(store.root):
        assert os.stat(dirpath).st_mode & 0o777 == 0o700
        for f in files:
            assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600
        del dirs


def test_unfinished_part_blocks_finalize(tmp_path):
    store = SnapshotStore(str(tmp_path))
    b = store.begin()
    write_part(b, 'database', {'d': b'1'})
    b.part('media')  # started, never committed: its task died
    with pytest.raises(SnapshotError, match="'media', a part that never finished"):
        b.finalize()
    b.discard_part('media')
    b.finalize()


def test_finalize_needs_parts_and_required_parts(tmp_path):
    store = SnapshotStore(str(tmp_path))
    b = store.begin()
    with pytest.raises(SnapshotError, match='no finished part'):
        b.finalize()
    write_part(b, 'database', {'d': b'1'})
    with pytest.raises(SnapshotError, match='lacks the part'):
        b.finalize(require_parts=['database', 'media'])


def test_duplicate_part_and_id(tmp_path):
    store = SnapshotStore(str(tmp_path))
    b = store.begin('fixed-id')
    write_part(b, 'database', {'d': b'1'})
    with pytest.raises(SnapshotError, match='already has a part'):
        b.part('database')
    b.finalize()
    with pytest.raises(SnapshotError, match='already exists'):
        store.begin('fixed-id')


def test_verify_reports_each_kind_of_damage(tmp_path):
    store = SnapshotStore(str(tmp_path))
    b = store.begin()
    write_part(b, 'p', {'a': b'aaaa', 'b': b'bbbb', 'c': b'cccc'})
    b.finalize()
    snap = store.load(b.id)
    with open(os.path.join(snap.path, 'p', 'a'), 'wb') as f:
        f.write(b'aaab')
    with open(os.path.join(snap.path, 'p', 'b'), 'wb') as f:
        f.write(b'bb')
    os.unlink(os.path.join(snap.path, 'p', 'c'))
    problems = snap.verify()
    assert any(p.startswith('p/a: sha256') for p in problems)
    assert 'p/b: size 2, manifest says 4' in problems
    assert 'p/c: missing' in problems
    with pytest.raises(SnapshotError, match='refusing to use it'):
        snap.require_sound()
    # Without the contents (a caller verified them just before): sizes and presence, no file read.
    assert sorted(snap.verify(contents=False)) == ['p/b: size 2, manifest says 4', 'p/c: missing']
    with pytest.raises(SnapshotError, match='refusing to use it: p/b: size 2'):
        snap.require_sound(contents=False)


def test_tampered_manifest_cannot_point_outside(tmp_path):
    store = SnapshotStore(str(tmp_path / 'root'))
    b = store.begin()
    write_part(b, 'p', {'a': b'a'})
    b.finalize()
    mpath = os.path.join(store.root, b.id, MANIFEST)
    with open(mpath, encoding='utf-8') as f:
        m = json.load(f)
    m['parts']['p']['files'][0]['path'] = '../../etc/passwd'
    with open(mpath, 'w', encoding='utf-8') as f:
        json.dump(m, f)
    problems = store.load(b.id).verify()
    assert problems and 'outside the snapshot' in problems[0]
    os.symlink('/etc', os.path.join(store.root, b.id, 'p', 'link'))
    m['parts']['p']['files'][0]['path'] = 'p/link/passwd'
    with open(mpath, 'w', encoding='utf-8') as f:
        json.dump(m, f)
    assert 'leads outside the snapshot' in store.load(b.id).verify()[0]


def test_manifest_must_match_its_directory_and_format(tmp_path):
    store = SnapshotStore(str(tmp_path))
    b = store.begin('one')
    write_part(b, 'p', {'a': b'a'})
    b.finalize()
    os.rename(os.path.join(store.root, 'one'), os.path.join(store.root, 'two'))
    with pytest.raises(SnapshotError, match="names snapshot 'one'"):
        store.load('two')
    os.makedirs(os.path.join(store.root, 'three'))
    with open(os.path.join(store.root, 'three', MANIFEST), 'w', encoding='utf-8') as f:
        f.write('{"format": "something else"}')
    with pytest.raises(SnapshotError, match='not a djangoops.maintenance snapshot'):
        store.load('three')
    assert store.list() == []


def test_resolve_path_is_confined_to_the_root(tmp_path):
    store = SnapshotStore(str(tmp_path / 'root'))
    b = store.begin('s1')
    write_part(b, 'p', {'a': b'a'})
    b.finalize()
    assert store.resolve_path(os.path.join(store.root, 's1')).id == 's1'
    assert store.resolve_path('s1').id == 's1'
    for bad in ('/etc', os.path.join(store.root, 's1', '..', '..'), os.path.join(store.root, 's1', 'p')):
        with pytest.raises(SnapshotError, match='not a snapshot directory directly under'):
            store.resolve_path(bad)
    os.symlink(os.path.join(store.root, 's1'), str(tmp_path / 'outside-link'))
    assert store.resolve_path(str(tmp_path / 'outside-link')).id == 's1'  # resolves into the root: fine
    os.symlink('/etc', os.path.join(store.root, 'evil'))
    with pytest.raises(SnapshotError):
        store.resolve_path('evil')


def test_root_must_be_absolute(tmp_path):
    for bad in ('', 'relative', None):
        with pytest.raises(SnapshotError, match='absolute path'):
            SnapshotStore(bad)


def test_latest_is_by_completion_time(tmp_path):
    store = SnapshotStore(str(tmp_path))
    first = store.begin('zzz-old')
    second = store.begin('aaa-new')
    write_part(first, 'p', {'a': b'a'})
    write_part(second, 'p', {'a': b'a'})
    first.finalize()
    second.finalize()
    assert [s.id for s in store.list()] == ['zzz-old', 'aaa-new']
    assert store.load('latest').id == 'aaa-new'


@pytest.mark.parametrize('kind, files, syncfs_exists, want_syncfs, want_fsyncs', [
    ('media', 3, True, 0, 3 + 2),          # a few files: each file and directory, one by one
    ('media', 300, True, 1, 0),            # a media tree: one syncfs(2)
    ('media', 300, False, 1, 300 + 2),     # no syncfs(2) on this system: every file and directory
    ('database', 300, True, 0, 300 + 2),   # a database part, however many files: never syncfs(2)
])
def test_a_database_or_small_part_is_fsynced_file_by_file_and_never_syncs_the_whole_file_system(
        tmp_path, monkeypatch, kind, files, syncfs_exists, want_syncfs, want_fsyncs):
    """syncfs(2) would also write back whatever else is dirty on the file system: on a database host, the
    server's own files. (Files a tool wrote into the part, as pg_dump writes a directory dump.)"""
    from ansible_collections.djangoops.maintenance.plugins.module_utils import _snapshot as S
    part = SnapshotStore(str(tmp_path / 'root')).begin().part('p')
    os.mkdir(part.path_of('sub'))
    for n in range(files):
        rel = os.path.join('sub' if n % 2 else '', 'f%d' % n)
        with open(part.path_of(rel), 'wb') as f:
            f.write(b'x')
        part.add_existing(rel)
    calls = {'syncfs': 0, 'fsync': 0}

    def syncfs(path):
        calls['syncfs'] += 1
        return syncfs_exists

    def fsync(fd):
        calls['fsync'] += 1

    monkeypatch.setattr(S, '_syncfs', syncfs)
    monkeypatch.setattr(S.os, 'fsync', fsync)
    part.commit({'kind': kind})
    # the part's files and its two directories; then the metadata file and its directory
    assert (calls['syncfs'], calls['fsync']) == (want_syncfs, want_fsyncs + 2)
