# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A snapshot taken while the host's clock ran ahead (a VM with a bad RTC, corrected later by NTP) carries
dates in the future. It must never become what ``latest`` resolves to (a restore would pick an old
snapshot), and retention must neither rank it newest nor delete it: real SQLite snapshots taken by
db_snapshot, one of them re-dated the way a clock-ahead host writes it."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from support.clock_ahead import clock_ahead, warned
from support.modules import run_module
from support.sqlite_data import make_shop


@pytest.fixture
def shop(tmp_path):
    path = str(tmp_path / 'app' / 'db.sqlite3')
    os.makedirs(os.path.dirname(path))
    make_shop(path)
    with sqlite3.connect(path) as db:
        db.execute('CREATE TABLE stamp (v TEXT)')
    return path


def stamp(db, value=None):
    """Set (or read) the one row that tells the snapshots apart."""
    with sqlite3.connect(db) as conn:
        if value is not None:
            conn.execute('DELETE FROM stamp')
            conn.execute('INSERT INTO stamp VALUES (?)', (value,))
        return conn.execute('SELECT v FROM stamp').fetchone()[0]


def take(db, root, value):
    stamp(db, value)
    r = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=root))
    assert not r.failed, r
    return r['snapshot_id']


def test_latest_skips_a_future_dated_snapshot_and_fails_when_only_such_exist(shop, tmp_path):
    root = str(tmp_path / 'snaps')
    old = take(shop, root, 'old')
    ahead, ahead_date = clock_ahead(root, take(shop, root, 'taken while the clock ran ahead'))
    newest = take(shop, root, 'newest')
    stamp(shop, 'changed since')

    info = run_module('snapshot_info', dict(snapshot_root=root))
    assert not info.failed, info
    assert info['latest'] == newest, 'latest is the newest snapshot with a believable date'
    assert info['future_dated'] == [ahead]
    flags = dict((s['id'], s['future_dated']) for s in info['snapshots'])
    assert flags == {old: False, ahead: True, newest: False}
    assert warned(info, ahead, ahead_date), info.get('warnings')

    one = run_module('snapshot_info', dict(snapshot_root=root, snapshot_id='latest'))
    assert [s['id'] for s in one['snapshots']] == [newest]
    assert len(warned(one, ahead, ahead_date)) == 1, one.get('warnings')

    r = run_module('db_restore', dict(engine='sqlite', database=shop, snapshot_root=root))
    assert not r.failed, r
    assert stamp(shop) == 'newest', 'the restore of latest took the newest snapshot, not the future-dated one'
    assert warned(r, ahead, ahead_date), r.get('warnings')

    # Only the future-dated snapshot: latest refuses, naming it, instead of picking it silently.
    alone = str(tmp_path / 'alone')
    os.makedirs(alone, mode=0o700)
    shutil.copytree(os.path.join(root, ahead), os.path.join(alone, ahead))
    stamp(shop, 'changed since')
    for name, args in (('snapshot_info', dict(snapshot_root=alone, snapshot_id='latest')),
                       ('db_restore', dict(engine='sqlite', database=shop, snapshot_root=alone))):
        r = run_module(name, args)
        assert r.failed, (name, r)
        assert 'future-dated' in r['msg'] and ahead in r['msg'] and ahead_date in r['msg'], r['msg']
    assert stamp(shop) == 'changed since', 'nothing was restored'
    listing = run_module('snapshot_info', dict(snapshot_root=alone))
    assert not listing.failed and listing['latest'] is None and listing['future_dated'] == [ahead], listing


@pytest.mark.parametrize('policy, kept', [
    (dict(keep_last=2), ('ahead', 'newest', 'middle')),
    (dict(keep_daily=1), ('ahead', 'newest')),
])
def test_prune_keeps_a_future_dated_snapshot_without_counting_it(shop, tmp_path, policy, kept):
    root = str(tmp_path / 'snaps')
    ids = {}
    ids['oldest'] = take(shop, root, 'oldest')
    ids['ahead'], ahead_date = clock_ahead(root, take(shop, root, 'ahead'))
    ids['middle'] = take(shop, root, 'middle')
    ids['newest'] = take(shop, root, 'newest')

    dry = run_module('snapshot_prune', dict(snapshot_root=root, **policy), check=True)
    assert not dry.failed, dry
    assert set(k['id'] for k in dry['kept']) == set(ids[k] for k in kept)
    assert [f['id'] for f in dry['future_dated']] == [ids['ahead']]
    assert dry['future_dated'][0]['created_at'] <= ahead_date
    reasons = dict((k['id'], k['reasons']) for k in dry['kept'])
    assert 'newest complete snapshot' in reasons[ids['newest']]
    assert not [r for r in reasons[ids['ahead']] if r.startswith(('keep_last', 'keep_daily'))], \
        'a future-dated snapshot fills no keep_last place and no daily bucket'
    assert warned(dry, ids['ahead'], ahead_date), dry.get('warnings')

    real = run_module('snapshot_prune', dict(snapshot_root=root, **policy))
    assert not real.failed, real
    assert sorted(os.listdir(root)) == sorted(ids[k] for k in kept)
    assert real['future_dated'] == dry['future_dated']


def test_the_empty_source_guard_compares_with_the_newest_believable_snapshot(tmp_path):
    """media_snapshot refuses a source directory that is empty now but held files in the last snapshot of it (an
    unmounted volume). A future-dated snapshot of it, taken empty on purpose, must not stand in for that last one."""
    media, root = str(tmp_path / 'media'), str(tmp_path / 'snaps')
    os.makedirs(os.path.join(media, 'uploads'))
    for name in ('a.jpg', 'b.jpg', 'c.jpg'):
        with open(os.path.join(media, 'uploads', name), 'wb') as f:
            f.write(name.encode() * 100)
    full = run_module('media_snapshot', dict(src=[media], snapshot_root=root))
    assert not full.failed, full
    shutil.rmtree(os.path.join(media, 'uploads'))
    emptied = run_module('media_snapshot', dict(src=[media], snapshot_root=root, allow_empty=True))
    assert not emptied.failed, emptied
    clock_ahead(root, emptied['snapshot_id'])

    r = run_module('media_snapshot', dict(src=[media], snapshot_root=root))
    assert r.failed, 'compared with the future-dated empty snapshot instead of the newest believable one'
    assert full['snapshot_id'] in r['msg'] and 'is empty' in r['msg'], r['msg']
