#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: snapshot_prune
short_description: Apply a retention policy to a snapshot root (keep last N, GFS, newer than, pinned)
version_added: 0.1.0
description:
  - Deletes the complete snapshots under O(snapshot_root) that no retention rule keeps, and removes incomplete
    C(*.partial) leftovers (a crash, a killed task) older than O(partial_max_age).
  - Rules - O(keep_last), O(keep_within), and the grandfather-father-son rules O(keep_hourly), O(keep_daily),
    O(keep_weekly), O(keep_monthly), O(keep_yearly). Each rule looks at every snapshot on its own; a snapshot is
    kept when any rule keeps it. A calendar rule keeps the newest snapshot of each of the N most recent periods
    (UTC; ISO weeks) that have a snapshot.
  - Never deletes the newest complete snapshot (what V(latest) resolves to), snapshots pinned by O(keep_labels)
    or named in O(keep_ids). Directories that are not snapshots, and snapshots whose manifest cannot be read,
    are never touched.
  - Never deletes a future-dated snapshot either - one whose manifest dates it more than 5 minutes after this
    host's clock, because a clock ran ahead when it was taken (a VM with a bad RTC, corrected later by NTP).
    Ranked by its date it would stay the newest until real time caught up with it, take the first O(keep_last)
    place and the newest period of every calendar rule, and push the genuinely newest snapshots out. So it is
    kept, counts for no rule (the others are ranked as if it were not there), is listed in RV(future_dated) and
    warned about. Delete it yourself once you know what it holds (see docs/troubleshooting.md).
  - Returns every kept and deleted snapshot id with the reasons; in check mode, deletes nothing and reports what
    it would delete.
  - A snapshot is deleted by renaming it to C(<id>.partial) first, so a deletion interrupted midway never
    leaves a complete-looking snapshot with files missing. Snapshots share unchanged media files through hard
    links, so deleting one frees only what no other snapshot links to (reported as RV(freed_bytes)).
extends_documentation_fragment:
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.retention
options:
  remove_partials:
    description:
      - Remove C(*.partial) directories older than O(partial_max_age).
      - The copy of a pull of M(djangoops.maintenance.snapshot_copy) that is still running - copying, or checking
        every file before it renames the copy - is kept whatever its age (the pull holds
        C(<snapshot_root>/.<id>.pull-lock), read from the kernel's lock table without taking it).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Lists what would be deleted and what would be freed; deletes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: The snapshot ids before and after pruning.
notes:
  - At least one of O(keep_last), O(keep_within) and the calendar rules is required; pins alone would delete
    everything else.
seealso:
  - module: djangoops.maintenance.snapshot_info
  - module: djangoops.maintenance.media_snapshot
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Keep a week of everything, then 14 dailies, 8 weeklies and 12 monthlies
  djangoops.maintenance.snapshot_prune:
    snapshot_root: /var/backups/django
    keep_within: 7d
    keep_daily: 14
    keep_weekly: 8
    keep_monthly: 12

- name: Keep the last 5 and anything labelled with a release or pinned
  djangoops.maintenance.snapshot_prune:
    snapshot_root: /var/backups/django
    keep_last: 5
    keep_labels: [pinned, release]

- name: What would go?
  djangoops.maintenance.snapshot_prune:
    snapshot_root: /var/backups/django
    keep_last: 3
  check_mode: true
  diff: true
  register: would
'''

RETURN = r'''
kept:
  description: Snapshots kept, newest first, with every reason that keeps them.
  returned: always
  type: list
  elements: dict
  sample: [{id: 20261124T040512Z-k3j9q2, created_at: '2026-11-24T04:05:12.000000Z',
            reasons: ['keep_daily: newest of 2026-11-24 (1 of 14)', 'newest complete snapshot']}]
deleted:
  description: Snapshots deleted (in check mode, that would be), newest first, with why no rule keeps them.
  returned: always
  type: list
  elements: dict
  sample: [{id: 20261001T040512Z-a1b2c3, created_at: '2026-10-01T04:05:12.000000Z',
            reasons: ['older than 7d', 'daily 2026-10-01 is beyond the 14 most recent']}]
future_dated:
  description:
    - Future-dated snapshots (dated more than 5 minutes after this host's clock), newest first. They are kept and
      listed in RV(kept) too, but counted by no rule; each one is also warned about.
  returned: always
  type: list
  elements: dict
  sample: [{id: 20270106T040512Z-x8f2m1, created_at: '2027-01-06T04:05:12.000000Z',
            reasons: ['future-dated: dated 2027-01-06T04:05:42.000000Z, more than 5m after now; kept, and counted by
                       no rule']}]
partials_removed:
  description: Incomplete snapshots removed (in check mode, that would be), with their age in seconds.
  returned: always
  type: list
  elements: dict
partials_kept:
  description: Incomplete snapshots left alone because they are younger than O(partial_max_age).
  returned: always
  type: list
  elements: str
ignored:
  description: Entries under the root that are neither snapshots nor partials, or whose manifest cannot be read.
  returned: always
  type: list
  elements: str
freed_bytes:
  description: Disk space freed (in check mode, that would be) - blocks not shared with any kept snapshot.
  returned: always
  type: int
'''

import datetime
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    Manager, retention_argument_spec, retention_policy, run_manager)
from ansible_collections.djangoops.maintenance.plugins.module_utils._retention import (
    plan, stale_partials)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    SnapshotError, SnapshotStore, manifest_dates, parse_time, read_manifest, split_future, warn_future)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_remove import (
    delete_snapshot, partial_activity, pull_in_flight, remove_tree)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import disk_usage


class SnapshotPruneManager(Manager):
    def run(self):
        policy, max_age = retention_policy(self.p)
        store = SnapshotStore(self.p['snapshot_root'])
        now = datetime.datetime.now(datetime.timezone.utc)
        snaps, partials, ignored = self.survey(store)
        trusted = split_future(store.list(), now)[0]
        newest = trusted[-1].id if trusted else None
        decisions = plan(snaps, policy, now, newest_id=newest)
        warn_future([(d['id'], d['dated']) for d in decisions if d['future_dated']], now,
                    'the prune keeps it and counts it for no retention rule')
        doomed = [d for d in decisions if not d['keep']]
        stale = stale_partials(partials, max_age, now) if self.p['remove_partials'] else []
        stale_names = set(s['name'] for s in stale)
        usage = disk_usage([store.path_of(d['id']) for d in doomed]
                           + [os.path.join(store.root, s['name']) for s in stale])

        result = dict(
            changed=bool(doomed or stale),
            kept=[self.entry(d) for d in decisions if d['keep']],
            deleted=[self.entry(d) for d in doomed],
            future_dated=[self.entry(d) for d in decisions if d['future_dated']],
            partials_removed=stale,
            partials_kept=[p['name'] for p in partials if p['name'] not in stale_names],
            ignored=ignored,
            freed_bytes=usage['exclusive_disk_bytes'],
        )
        if self.module._diff:
            before = sorted(d['id'] for d in decisions) + sorted(p['name'] for p in partials)
            after = sorted(d['id'] for d in decisions if d['keep']) + sorted(result['partials_kept'])
            result['diff'] = dict(before='\n'.join(before) + '\n', after='\n'.join(after) + '\n',
                                  before_header=store.root, after_header=store.root + ' (pruned)')
        if self.module.check_mode:
            return result
        self.partial_result = dict(result, deleted=[], partials_removed=[])
        # Oldest first: if something fails midway, what is left is the newer part of the history.
        for d in reversed(doomed):
            delete_snapshot(store, d['id'])
            self.partial_result['deleted'].append(self.entry(d))
        for s in stale:
            remove_tree(os.path.join(store.root, s['name']))
            self.partial_result['partials_removed'].append(s)
        return result

    @staticmethod
    def entry(decision):
        return dict(id=decision['id'], created_at=decision['time'].strftime('%Y-%m-%dT%H:%M:%S.%fZ'),
                    reasons=decision['reasons'])

    @staticmethod
    def survey(store):
        """Complete snapshots with a readable time, partials with their last activity, and the rest."""
        snaps, partials, ignored = [], [], []
        for name, kind in store.entries():
            full = os.path.join(store.root, name)
            if kind == 'partial':
                # a pull checking its copy (minutes for a large one) touches nothing but holds its lock: it is now
                busy = pull_in_flight(store.root, name)
                when = datetime.datetime.now(datetime.timezone.utc) if busy else partial_activity(full)
                partials.append(dict(name=name, time=when))
                continue
            if kind != 'complete':
                ignored.append(name)
                continue
            try:
                manifest = read_manifest(full)
                when = parse_time(manifest.get('created_at') or manifest['completed_at'])
            except (SnapshotError, KeyError, ValueError, TypeError):
                ignored.append(name)
                continue
            snaps.append(dict(id=name, time=when, dated=max(manifest_dates(manifest) + [when]),
                              labels=manifest.get('labels') or {}))
        return snaps, partials, ignored


def main():
    argument_spec = dict(
        snapshot_root=dict(type='path', required=True),
        remove_partials=dict(type='bool', default=True),
    )
    argument_spec.update(retention_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_manager(module, SnapshotPruneManager)


if __name__ == '__main__':
    main()
