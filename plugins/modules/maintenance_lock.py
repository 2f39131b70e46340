#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: maintenance_lock
short_description: Keep two maintenance windows (or a window and a backup) off the same app or database
version_added: 0.1.0
description:
  - Takes or releases a named lock on the host. The lock is a file created atomically with its whole content
    (owner, purpose, host, when taken, when it expires), so it outlives the task that took it and a refused
    caller learns who holds it.
  - Taking a lock the same O(owner) already holds changes nothing. A lock past its expiry may be taken over; the
    result says whose lock was broken.
options:
  name:
    description:
      - Name of the lock, for example the app or the database it protects (C(shop), C(shop-db)).
      - Letters, digits, C(.), C(_) and C(-).
    type: str
    required: true
  state:
    description:
      - V(present) takes the lock; V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Who takes or releases the lock - a run id unique to one playbook run (the window role uses one per run).
    type: str
    required: true
  purpose:
    description: What the lock is for (shown to whoever is refused).
    type: str
    default: maintenance
  lock_dir:
    description: Directory of the lock files; created (0700) when missing.
    type: path
    default: /var/lib/djangoops/locks
  ttl:
    description:
      - Seconds after which the lock counts as abandoned and may be taken over by another owner.
    type: int
    default: 14400
  wait:
    description:
      - Seconds to keep trying while another owner holds the lock, before failing.
    type: int
    default: 0
  force:
    description:
      - With O(state=absent), release the lock even when another owner holds it.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: Shows the lock holder before and after.
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Take the app's maintenance lock for this run
  djangoops.maintenance.maintenance_lock:
    name: shop
    owner: "{{ window_run_id }}"
    purpose: maintenance window {{ release_version }}
    ttl: 7200

- name: Release it
  djangoops.maintenance.maintenance_lock:
    name: shop
    owner: "{{ window_run_id }}"
    state: absent
'''

RETURN = r'''
lock_path:
  description: Path of the lock file.
  returned: always
  type: str
holder:
  description: The lock's record after the task (null when released).
  returned: always
  type: dict
  sample: {owner: 9b1c..., purpose: maintenance window 2.4.0, host: app1, acquired_at: '2026-11-24T04:00:00Z',
           expires_at: '2026-11-24T06:00:00Z', pid: 4242}
broken:
  description: The expired lock that was taken over, if any.
  returned: when an expired lock was taken over
  type: dict
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils import _lock
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import ModuleFailure, run_manager


class LockManager(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def run(self):
        p = self.p
        try:
            path = _lock.lock_path(p['lock_dir'], p['name'])
            before = _lock.read(path)
            if p['state'] == 'absent':
                result = self.release(path, before)
            else:
                result = self.acquire(path, before)
        except _lock.LockError as e:
            raise ModuleFailure(str(e), holder=e.holder)
        result['diff'] = dict(before=before or {}, after=result['holder'] or {})
        return result

    def release(self, path, before):
        p = self.p
        if self.module.check_mode:
            if before is not None and before.get('owner') != p['owner'] and not p['force']:
                raise _lock.LockError('lock %s is held by %s, not by %s' % (path, _lock.describe(before), p['owner']),
                                      holder=before)
            return dict(changed=before is not None, lock_path=path, holder=None)
        changed, _prev = _lock.release(path, p['owner'], force=p['force'])
        return dict(changed=changed, lock_path=path, holder=None)

    def acquire(self, path, before):
        p = self.p
        if self.module.check_mode:
            if before is None or before.get('owner') == p['owner'] or _lock.is_expired(before):
                return dict(changed=before is None or before.get('owner') != p['owner'], lock_path=path, holder=before)
            raise _lock.LockError('lock %s is held by %s' % (path, _lock.describe(before)), holder=before)
        # Several first takers at once may all find no directory: creating it is not the race to win.
        os.makedirs(p['lock_dir'], 0o700, exist_ok=True)
        deadline = time.monotonic() + p['wait']
        while True:
            try:
                changed, holder, broken = _lock.acquire(path, p['owner'], p['purpose'], p['ttl'])
                break
            except _lock.LockError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))
        result = dict(changed=changed, lock_path=path, holder=holder)
        if broken is not None:
            result['broken'] = broken
            self.module.warn('took over the expired lock %s' % _lock.describe(broken))
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            owner=dict(type='str', required=True),
            purpose=dict(type='str', default='maintenance'),
            lock_dir=dict(type='path', default='/var/lib/djangoops/locks'),
            ttl=dict(type='int', default=14400),
            wait=dict(type='int', default=0),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    run_manager(module, LockManager)


if __name__ == '__main__':
    main()
