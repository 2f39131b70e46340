# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""maintenance_lock: one holder at a time, across processes, with expiry and clear refusals."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time

from support.modules import COLLECTIONS_PATH, ensure_collection_link, run_module


def lock(tmp_path, **kw):
    args = dict(name='shop', owner='run-1', lock_dir=str(tmp_path / 'locks'))
    args.update(kw)
    return run_module('maintenance_lock', args)


def test_take_is_idempotent_and_refuses_others(tmp_path):
    r = lock(tmp_path, purpose='window 2.0')
    assert not r.failed and r['changed'] is True and r['holder']['owner'] == 'run-1'
    assert os.stat(r['lock_path']).st_mode & 0o777 == 0o600
    assert lock(tmp_path)['changed'] is False
    other = lock(tmp_path, owner='run-2', purpose='nightly backup')
    assert other.failed
    assert 'held by run-1 (window 2.0)' in other['msg'] and other['holder']['owner'] == 'run-1'
    refused = lock(tmp_path, owner='run-2', state='absent')
    assert refused.failed and 'not by run-2' in refused['msg']
    assert lock(tmp_path, state='absent')['changed'] is True
    assert not os.path.exists(r['lock_path'])
    assert lock(tmp_path, state='absent')['changed'] is False
    assert lock(tmp_path, owner='run-2')['changed'] is True


def test_expired_lock_is_taken_over_and_reported(tmp_path):
    lock(tmp_path, ttl=1)
    time.sleep(1.2)
    r = lock(tmp_path, owner='run-2')
    assert not r.failed and r['changed'] is True
    assert r['broken']['owner'] == 'run-1' and 'took over the expired lock run-1' in repr(r.get('warnings'))


def test_wait_for_the_holder(tmp_path):
    lock(tmp_path, ttl=2)
    started = time.monotonic()
    r = lock(tmp_path, owner='run-2', wait=10)
    assert not r.failed and r['holder']['owner'] == 'run-2'
    assert 1 < time.monotonic() - started < 9


def test_force_release_and_damaged_file(tmp_path):
    lock(tmp_path)
    assert lock(tmp_path, owner='admin', state='absent', force=True)['changed'] is True
    os.makedirs(str(tmp_path / 'locks'), exist_ok=True)
    with open(str(tmp_path / 'locks' / 'shop.lock'), 'w', encoding='utf-8') as f:
        f.write('garbage')
    r = lock(tmp_path)
    assert r.failed and 'unreadable lock file' in r['msg']


def test_check_mode_takes_nothing(tmp_path):
    r = run_module('maintenance_lock', dict(name='shop', owner='run-1', lock_dir=str(tmp_path / 'locks')),
                   check=True, diff=True)
    assert not r.failed and r['changed'] is True
    assert not os.path.exists(str(tmp_path / 'locks' / 'shop.lock'))


def test_bad_name(tmp_path):
    r = lock(tmp_path, name='../etc/passwd')
    assert r.failed and "invalid lock name '../etc/passwd'" in r['msg']


def test_only_one_of_many_concurrent_takers_wins(tmp_path):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: lock(tmp_path, owner='run-%d' % i), range(8)))
    winners = [r for r in results if not r.failed]
    assert len(winners) == 1
    with open(winners[0]['lock_path'], encoding='utf-8') as f:
        assert json.load(f)['owner'] == winners[0]['holder']['owner']
    refusals = [r['msg'] for r in results if r.failed]
    assert all('held by' in m or 'a moment ago' in m for m in refusals), refusals


TAKE_EXPIRED = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.djangoops.maintenance.plugins.module_utils import _lock
path, owner, start = sys.argv[2], sys.argv[3], float(sys.argv[4])
while time.time() < start:
    pass
try:
    _lock.acquire(path, owner, 'takeover', 3600)
    print('won')
except _lock.LockError:
    print('lost')
'''


def test_only_one_of_many_takers_of_an_expired_lock_wins(tmp_path):
    # Each taker judges the old lock stale, removes it and links its own. Unserialized, a taker could remove
    # the lock another had just linked and link its own: two holders (3 of 30 rounds of 12 takers here).
    ensure_collection_link()
    path = str(tmp_path / 'app.lock')
    script = str(tmp_path / 'take.py')
    with open(script, 'w', encoding='utf-8') as f:
        f.write(TAKE_EXPIRED)
    for attempt in range(25):
        with open(path, 'w', encoding='utf-8') as f:
            json.dump({'owner': 'crashed-run', 'purpose': 'x', 'host': 'h', 'pid': 1,
                       'acquired_at': '2020-01-01T00:00:00Z', 'expires_at': '2020-01-01T00:00:01Z'}, f)
        start = time.time() + 0.5
        procs = [subprocess.Popen([sys.executable, script, COLLECTIONS_PATH, path, 'run-%d' % i, str(start)],
                                  stdout=subprocess.PIPE) for i in range(12)]
        outcomes = [p.communicate()[0].decode().strip() for p in procs]
        assert outcomes.count('won') == 1, (attempt, outcomes)
        with open(path, encoding='utf-8') as f:
            holder = json.load(f)['owner']
        assert outcomes[int(holder.split('-')[1])] == 'won', (attempt, holder, outcomes)
