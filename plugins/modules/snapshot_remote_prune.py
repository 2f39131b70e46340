#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: snapshot_remote_prune
short_description: Apply a retention policy to the snapshots on an SSH backup host or an S3-compatible store
version_added: 0.1.0
description:
  - The remote counterpart of M(djangoops.maintenance.snapshot_prune) with the same rules (O(keep_last),
    O(keep_within), O(keep_hourly) ... O(keep_yearly), O(keep_labels), O(keep_ids)); a snapshot is kept when any
    rule keeps it, and the newest complete snapshot is never deleted.
  - With O(per_host=true) (the default) the rules apply to the snapshots of each source host on their own, so
    several application hosts can share one remote store without one host's snapshots crowding out another's.
  - Deletion never leaves a complete-looking snapshot with files missing - SSH renames the snapshot to
    C(<id>.partial) before removing it; S3 deletes the manifest first. Incomplete copies (interrupted pushes)
    older than O(partial_max_age) are removed (S3 - their objects and unfinished multipart uploads).
  - Snapshots whose manifest cannot be read and names that are not snapshots are never touched.
  - Future-dated snapshots - whose manifest dates them more than 5 minutes after the clock of the host running
    this task, because a clock ran ahead when they were taken - are never deleted and count for no rule, as with
    M(djangoops.maintenance.snapshot_prune). They are listed in RV(future_dated) and warned about.
extends_documentation_fragment:
  - djangoops.maintenance.remote
  - djangoops.maintenance.retention
options:
  per_host:
    description:
      - Apply the rules to each source host's snapshots separately (the host recorded in each manifest).
    type: bool
    default: true
  remove_partials:
    description: Remove incomplete copies older than O(partial_max_age).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Lists what would be deleted; deletes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: The names on the store before and after pruning.
seealso:
  - module: djangoops.maintenance.snapshot_prune
  - module: djangoops.maintenance.snapshot_copy
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Keep 14 dailies and 6 monthlies per host on the backup host
  djangoops.maintenance.snapshot_remote_prune:
    keep_daily: 14
    keep_monthly: 6
    remote:
      type: ssh
      host: backup1.internal
      path: /srv/backups/shop
      ssh_key: /root/.ssh/backup_ed25519
      known_hosts: /etc/ssh/backup_known_hosts
'''

RETURN = r'''
remote:
  description: The remote store, without credentials.
  returned: always
  type: str
kept:
  description: Snapshots kept, newest first, with every reason that keeps them.
  returned: always
  type: list
  elements: dict
deleted:
  description: Snapshots deleted (in check mode, that would be), newest first, with why no rule keeps them.
  returned: always
  type: list
  elements: dict
future_dated:
  description:
    - Future-dated snapshots (dated more than 5 minutes after this host's clock), newest first. They are kept and
      listed in RV(kept) too, but counted by no rule; each one is also warned about.
  returned: always
  type: list
  elements: dict
partials_removed:
  description: Incomplete copies removed (in check mode, that would be), with their age in seconds.
  returned: always
  type: list
  elements: dict
partials_kept:
  description: Incomplete copies younger than O(partial_max_age), left alone.
  returned: always
  type: list
  elements: str
ignored:
  description: Names that are not snapshots, or whose manifest cannot be read.
  returned: always
  type: list
  elements: str
commands:
  description: Commands run and S3 requests made (never a credential).
  returned: always
  type: list
  elements: str
'''

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    Manager, retention_argument_spec, retention_policy, run_manager)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import (
    open_remote, remote_argument_spec, snapshot_time)
from ansible_collections.djangoops.maintenance.plugins.module_utils._retention import (
    plan, stale_partials)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    future_date, manifest_dates, warn_future)


class SnapshotRemotePruneManager(Manager):
    def __init__(self, module):
        super().__init__(module)
        self.commands = []

    def run(self):
        policy, max_age = retention_policy(self.p)
        now = datetime.datetime.now(datetime.timezone.utc)
        with private_dir() as secrets:
            remote = open_remote(self.p['remote'], secrets, self.commands.append)
            entries = remote.entries()
            groups, partials, ignored, by_name = {}, [], [], {}
            for e in entries:
                by_name[e.name] = e
                if e.kind == 'partial':
                    when = datetime.datetime.fromtimestamp(e.mtime or 0, datetime.timezone.utc)
                    partials.append(dict(name=e.name, time=when))
                    continue
                try:
                    if e.kind != 'complete' or e.manifest is None:
                        raise ValueError(e.problem)
                    when = snapshot_time(e)
                    item = dict(id=e.name, time=when, dated=max(manifest_dates(e.manifest) + [when]),
                                labels=e.manifest.get('labels') or {})
                except (KeyError, ValueError, TypeError):
                    ignored.append(e.name)
                    continue
                host = e.manifest.get('host') if self.p['per_host'] else None
                groups.setdefault(host, []).append(item)
            decisions = []
            for host in sorted(groups, key=str):
                snaps = groups[host]
                believable = [s for s in snaps if future_date(by_name[s['id']].manifest, now) is None]
                newest = max(believable, key=lambda s: (by_name[s['id']].completed_at(), s['id']))['id'] \
                    if believable else None
                decisions += plan(snaps, policy, now, newest_id=newest)
            decisions.sort(key=lambda d: (d['time'], d['id']), reverse=True)
            warn_future([(d['id'], d['dated']) for d in decisions if d['future_dated']], now,
                        'the prune keeps it and counts it for no retention rule')
            doomed = [d for d in decisions if not d['keep']]
            stale = stale_partials(partials, max_age, now) if self.p['remove_partials'] else []
            stale_names = set(s['name'] for s in stale)
            result = dict(changed=bool(doomed or stale), remote=remote.describe(),
                          kept=[self.entry(d) for d in decisions if d['keep']],
                          deleted=[self.entry(d) for d in doomed],
                          future_dated=[self.entry(d) for d in decisions if d['future_dated']], partials_removed=stale,
                          partials_kept=[x['name'] for x in partials if x['name'] not in stale_names],
                          ignored=ignored, commands=self.commands)
            if self.module._diff:
                before = sorted(d['id'] for d in decisions) + sorted(x['name'] for x in partials)
                after = sorted(d['id'] for d in decisions if d['keep']) + sorted(result['partials_kept'])
                result['diff'] = dict(before='\n'.join(before) + '\n', after='\n'.join(after) + '\n',
                                      before_header=remote.describe(), after_header=remote.describe() + ' (pruned)')
            if self.module.check_mode:
                return result
            self.partial_result = dict(result, deleted=[], partials_removed=[])
            for d in reversed(doomed):
                remote.delete(by_name[d['id']])
                self.partial_result['deleted'].append(self.entry(d))
            for s in stale:
                remote.delete(by_name[s['name']])
                self.partial_result['partials_removed'].append(s)
        return result

    @staticmethod
    def entry(decision):
        return dict(id=decision['id'], created_at=decision['time'].strftime('%Y-%m-%dT%H:%M:%S.%fZ'),
                    reasons=decision['reasons'])


def main():
    argument_spec = dict(
        per_host=dict(type='bool', default=True),
        remove_partials=dict(type='bool', default=True),
        remote=remote_argument_spec(),
    )
    argument_spec.update(retention_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_manager(module, SnapshotRemotePruneManager)


if __name__ == '__main__':
    main()
