# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_prune on real snapshot roots: a 400-day GFS set, pins, the newest, partial leftovers,
hard-linked media shared between kept and deleted snapshots, interrupted deletion."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time

import pytest

from support.media_tree import du_bytes, make_flat_tree, write
from support.modules import run_module

from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    SnapshotStore, isoformat, write_json_atomic)

UTC = datetime.timezone.utc


def make_snapshot(store, snapshot_id, when, labels=None):
    """A real (small) snapshot whose manifest says it was taken at ``when``."""
    b = store.begin(snapshot_id)
    part = b.part('database')
    hf = part.create('dump.sql')
    hf.write(b'-- taken %s\n' % isoformat(when).encode())
    hf.close()
    part.add_hashed(hf)
    part.commit({'kind': 'database', 'engine': 'sqlite'})
    b.finalize(labels=labels or {})
    path = os.path.join(store.root, snapshot_id, 'manifest.json')
    with open(path, encoding='utf-8') as f:
        m = json.load(f)
    m['created_at'] = isoformat(when)
    m['completed_at'] = isoformat(when + datetime.timedelta(seconds=30))
    write_json_atomic(path, m)


def make_partial(root, name, age_seconds):
    path = os.path.join(root, name)
    os.makedirs(os.path.join(path, '.parts', ), mode=0o700)
    began = datetime.datetime.now(UTC) - datetime.timedelta(seconds=age_seconds)
    with open(os.path.join(path, '.parts', 'BEGUN'), 'w', encoding='utf-8') as f:
        f.write(isoformat(began) + '\n')
    os.makedirs(os.path.join(path, 'media', 'trees', 'media'))
    write(os.path.join(path, 'media', 'trees', 'media', 'half-copied.jpg'), b'x' * 1000)
    t = time.time() - age_seconds
    for p in (os.path.join(path, '.parts'), path):
        os.utime(p, (t, t))
    return path


def newest_in(snaps, start, end):
    inside = [s for s in snaps if start <= s['time'] < end]
    return max(inside, key=lambda s: s['time'])['id'] if inside else None


def expected_gfs(snaps, now, daily, weekly, monthly, yearly):
    """Period by period, going back from now (not snapshot by snapshot, as the module does)."""
    keep = set()
    day0 = datetime.datetime(now.year, now.month, now.day, tzinfo=UTC)
    for j in range(daily):
        keep.add(newest_in(snaps, day0 - datetime.timedelta(days=j), day0 - datetime.timedelta(days=j - 1)))
    monday = day0 - datetime.timedelta(days=day0.weekday())
    for j in range(weekly):
        start = monday - datetime.timedelta(weeks=j)
        keep.add(newest_in(snaps, start, start + datetime.timedelta(weeks=1)))
    y, m = now.year, now.month
    for j in range(monthly):
        start = datetime.datetime(y, m, 1, tzinfo=UTC)
        end = datetime.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        keep.add(newest_in(snaps, start, end))
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    for j in range(yearly):
        keep.add(newest_in(snaps, datetime.datetime(now.year - j, 1, 1, tzinfo=UTC),
                           datetime.datetime(now.year - j + 1, 1, 1, tzinfo=UTC)))
    keep.discard(None)
    return keep


def prune(root, check=False, **kw):
    args = dict(snapshot_root=root)
    args.update(kw)
    return run_module('snapshot_prune', args, check=check, diff=True)


def test_gfs_over_400_days_with_pins_newest_and_partials(tmp_path):
    root = str(tmp_path / 'snaps')
    store = SnapshotStore(root)
    now = datetime.datetime.now(UTC)
    snaps = []
    for k in range(400):
        when = now - datetime.timedelta(days=k, minutes=5)
        snaps.append(dict(id=when.strftime('%Y%m%dT%H%M%SZ') + '-s%03d' % k, time=when))
    policy = dict(keep_daily=7, keep_weekly=4, keep_monthly=6, keep_yearly=2)
    expected = expected_gfs(snaps, now, 7, 4, 6, 2)
    assert 14 <= len(expected) <= 19
    unkept = [s for s in snaps[150:] if s['id'] not in expected]
    pinned, not_pinned, labelled = unkept[0], unkept[1], unkept[2]
    for s in snaps:
        labels = {}
        if s is pinned:
            labels = {'pinned': 'True'}  # what `labels: {pinned: true}` in a playbook stores
        elif s is not_pinned:
            labels = {'pinned': 'false'}
        elif s is labelled:
            labels = {'release': 'v1.0'}
        make_snapshot(store, s['id'], s['time'], labels)
    stale = make_partial(root, 'crashed-20200101.partial', age_seconds=3 * 86400)
    fresh = make_partial(root, 'being-written.partial', age_seconds=60)
    os.makedirs(os.path.join(root, 'not-a-snapshot'))

    dry = prune(root, check=True, **policy)
    assert not dry.failed, dry
    assert dry['changed'] is True
    assert len(os.listdir(root)) == 403, 'check mode deletes nothing'
    kept = set(k['id'] for k in dry['kept'])
    assert kept == expected | set([pinned['id']])
    assert dry['partials_removed'] == [dict(name='crashed-20200101.partial', age_seconds=dry['partials_removed'][0]['age_seconds'])]
    assert dry['partials_kept'] == ['being-written.partial'] and dry['ignored'] == ['not-a-snapshot']
    reasons = dict((k['id'], k['reasons']) for k in dry['kept'])
    assert reasons[pinned['id']] == ['keep_labels: pinned=True']
    assert 'newest complete snapshot' in reasons[snaps[0]['id']]
    assert 'keep_daily: newest of %s (1 of 7)' % snaps[0]['time'].strftime('%Y-%m-%d') in reasons[snaps[0]['id']]
    deleted = dict((d['id'], d['reasons']) for d in dry['deleted'])
    assert not_pinned['id'] in deleted and labelled['id'] in deleted
    assert len(deleted) == 400 - len(kept)
    assert dry['diff']['before'].count('\n') == 402 and dry['diff']['after'].count('\n') == len(kept) + 1

    real = prune(root, **policy)
    assert not real.failed, real
    assert real['deleted'] == dry['deleted'] and real['kept'] == dry['kept']
    left = set(os.listdir(root))
    assert left == kept | set(['being-written.partial', 'not-a-snapshot'])
    assert not os.path.exists(stale) and os.path.exists(fresh)
    info = run_module('snapshot_info', dict(snapshot_root=root, verify=True))
    assert info['damaged'] == [] and len(info['snapshots']) == len(kept) and info['latest'] == snaps[0]['id']

    again = prune(root, **policy)
    assert again['changed'] is False and again['deleted'] == [] and again['partials_removed'] == []

    # the release label pins once the operator says so; a list of label names matches any value
    make_snapshot(store, labelled['id'], labelled['time'], {'release': 'v1.0'})
    r = prune(root, keep_labels=['release', 'pinned'], **policy)
    assert labelled['id'] in [k['id'] for k in r['kept']] and r['changed'] is False


def test_newest_is_kept_even_when_every_rule_would_drop_it(tmp_path):
    root = str(tmp_path / 'snaps')
    store = SnapshotStore(root)
    now = datetime.datetime.now(UTC)
    for k in (10, 20, 30):
        make_snapshot(store, 's%02d' % k, now - datetime.timedelta(days=k))
    r = prune(root, keep_within='1d')
    assert not r.failed, r
    assert [(k['id'], k['reasons']) for k in r['kept']] == [('s10', ['newest complete snapshot'])]
    assert [d['id'] for d in r['deleted']] == ['s20', 's30']
    assert r['deleted'][0]['reasons'] == ['older than 1d']
    assert os.listdir(root) == ['s10']


def test_shared_media_survives_and_freed_bytes_is_what_du_sees(tmp_path):
    root = str(tmp_path / 'snaps')
    src = str(tmp_path / 'media')
    paths = make_flat_tree(src, 50, 16 * 1024)
    os.chmod(os.path.join(src, 'd3'), 0o555)  # a read-only directory in the media must not stop a delete
    ids = []
    for i in range(4):
        if i:
            write(paths[i], os.urandom(16 * 1024), mtime=1700000000 + i)
        r = run_module('media_snapshot', dict(src=[src], snapshot_root=root, checksums=True))
        assert not r.failed, r
        ids.append(r['snapshot_id'])
    before = du_bytes(root)[0]
    dry = prune(root, check=True, keep_last=1)
    r = prune(root, keep_last=1)
    assert not r.failed, r
    assert [d['id'] for d in r['deleted']] == ids[2::-1]
    after = du_bytes(root)[0]
    assert r['freed_bytes'] == dry['freed_bytes'] > 0
    assert abs((before - after) - r['freed_bytes']) <= 4096, (before, after, r['freed_bytes'])
    # 3 superseded versions of 3 changed files were freed; the 47 shared files stay, with the survivor
    assert 9 * 16 * 1024 <= r['freed_bytes'] <= 9 * 16 * 1024 + 40 * 4096
    info = run_module('snapshot_info', dict(snapshot_root=root, verify=True))
    assert info['damaged'] == [] and [s['id'] for s in info['snapshots']] == [ids[3]]
    assert info['snapshots'][0]['status'] == 'verified'


def test_interrupted_delete_never_leaves_a_complete_looking_snapshot(tmp_path):
    root = str(tmp_path / 'snaps')
    store = SnapshotStore(root)
    now = datetime.datetime.now(UTC)
    make_snapshot(store, 'old', now - datetime.timedelta(days=3))
    make_snapshot(store, 'new', now - datetime.timedelta(days=1))
    stuck = os.path.join(root, 'old', 'database', 'dump.sql')
    subprocess.run(['chattr', '+i', stuck], check=True)
    try:
        r = prune(root, keep_last=1)
        assert r.failed and 'old' in str(r.get('msg')), r
        assert sorted(os.listdir(root)) == ['new', 'old.partial']
        info = run_module('snapshot_info', dict(snapshot_root=root))
        assert [s['id'] for s in info['snapshots']] == ['new']
        assert [i['name'] for i in info['incomplete']] == ['old.partial']
    finally:
        subprocess.run(['chattr', '-i', os.path.join(root, 'old.partial', 'database', 'dump.sql')], check=True)
    t = time.time() - 2 * 86400
    os.utime(os.path.join(root, 'old.partial'), (t, t))
    r = prune(root, keep_last=1)
    assert not r.failed and [p['name'] for p in r['partials_removed']] == ['old.partial']
    assert os.listdir(root) == ['new']


@pytest.mark.parametrize('args, message', [
    (dict(), 'no retention rule given'),
    (dict(keep_labels=['pinned']), 'no retention rule given'),
    (dict(keep_within='7 days'), "invalid keep_within '7 days'"),
    (dict(keep_last=2, partial_max_age='soon'), "invalid partial_max_age 'soon'"),
    (dict(keep_last=-1), 'keep_last must be a whole number'),
    (dict(keep_last=2, keep_labels=42), 'keep_labels must be a list'),
    (dict(keep_last=2, snapshot_root='relative/path'), 'snapshot_root must be an absolute path'),
])
def test_bad_policies_are_refused_before_anything_is_deleted(tmp_path, args, message):
    root = str(tmp_path / 'snaps')
    make_snapshot(SnapshotStore(root), 'a', datetime.datetime.now(UTC) - datetime.timedelta(days=5))
    make_snapshot(SnapshotStore(root), 'b', datetime.datetime.now(UTC) - datetime.timedelta(days=4))
    r = prune(args.pop('snapshot_root', root), **args)
    assert r.failed and message in r['msg'], r['msg']
    assert sorted(os.listdir(root)) == ['a', 'b']
