#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: snapshot_info
short_description: List djangoops.maintenance snapshots and verify their checksums
version_added: 0.1.0
description:
  - Lists the complete snapshots under O(snapshot_root), oldest first, with their manifests, and the
    incomplete ones (C(*.partial) directories, directories without a manifest).
  - With O(verify=true), re-reads every file of every listed snapshot and compares size and sha256 with the
    manifest; damaged snapshots are reported, not hidden. Media trees are checked against their recorded counts
    and listing digest, and every file against C(SHA256SUMS) when the snapshot has one.
  - Media parts show their apparent size and, with O(disk_usage=true), the disk they occupy after hard links and
    the part of it no other snapshot shares (what deleting the snapshot would free).
  - Flags future-dated snapshots - whose manifest dates them more than 5 minutes after this host's clock, because a
    clock ran ahead when they were taken (a VM with a bad RTC, corrected later by NTP). V(latest) never resolves to
    one (else a restore of V(latest) would take it rather than the genuinely newest snapshot), and each one is
    warned about. See RV(future_dated).
extends_documentation_fragment:
  - djangoops.maintenance.snapshot
options:
  snapshot_id:
    description:
      - Show only this snapshot (V(latest) for the most recent one that is not future-dated). Fails when it does
        not exist, and for V(latest) when every snapshot is future-dated.
    type: str
  verify:
    description:
      - Re-check every file's size and sha256.
    type: bool
    default: false
  full_manifest:
    description:
      - Return each snapshot's whole manifest rather than a summary.
    type: bool
    default: false
  disk_usage:
    description:
      - Measure the disk used by each media part (a C(stat) of every file of its trees, no reads).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: What snapshots do we have?
  djangoops.maintenance.snapshot_info:
    snapshot_root: /var/backups/django
  register: snaps

- name: Nightly integrity check of every snapshot
  djangoops.maintenance.snapshot_info:
    snapshot_root: /var/backups/django
    verify: true
  register: check
  failed_when: check.damaged | length > 0
'''

RETURN = r'''
snapshots:
  description: Complete snapshots, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Snapshot id.
      type: str
    path:
      description: Snapshot directory.
      type: str
    completed_at:
      description: When the manifest was written (UTC, ISO 8601).
      type: str
    labels:
      description: Labels of the snapshot.
      type: dict
    bytes:
      description: Bytes of all files listed in the manifest.
      type: int
    parts:
      description:
        - Per part - kind, engine or source, bytes, file count.
        - Media parts also - C(apparent_bytes) (every file counted), C(transferred_bytes) (copied rather than
          hard-linked when taken), C(changed_paths), C(linked_from), and with O(disk_usage=true) C(disk_bytes)
          (blocks used, each hard-linked file once) and C(exclusive_disk_bytes) (blocks no other snapshot shares).
      type: dict
    status:
      description: V(complete), or after verification V(verified) or V(damaged).
      type: str
    future_dated:
      description: Whether the snapshot is future-dated (see RV(future_dated)).
      type: bool
    problems:
      description: What verification found wrong.
      type: list
      elements: str
    manifest:
      description: The whole manifest, with O(full_manifest=true).
      type: dict
latest:
  description:
    - Id of the most recently completed snapshot that is not future-dated, or null when there is none.
  returned: always
  type: str
future_dated:
  description:
    - Ids of the future-dated snapshots, oldest first - dated more than 5 minutes after this host's clock, so taken
      while a clock ran ahead. RV(latest) skips them and retention keeps them without counting them; once you know
      what one holds, restore it by its id or delete it.
  returned: always
  type: list
  elements: str
incomplete:
  description: Entries under the root that are not complete snapshots (C(*.partial), no manifest, unreadable).
  returned: always
  type: list
  elements: dict
damaged:
  description:
    - Ids of snapshots that failed verification, including those whose C(manifest.json) can no longer be read
      (they are listed in RV(incomplete) too, with the reason).
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import run_manager
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    SnapshotError, SnapshotStore, future_date, read_manifest, split_future, summarize, utcnow, warn_future)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import disk_usage


class SnapshotInfoManager(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def run(self):
        store = SnapshotStore(self.p['snapshot_root'])
        now = utcnow()
        complete = store.list()
        trusted, future = split_future(complete, now)
        if self.p['snapshot_id'] == 'latest':
            snaps = [store.latest(now)]  # it warns about the future-dated snapshots it skips
        else:
            warn_future(future, now, 'latest skips it')
            snaps = [store.load(self.p['snapshot_id'])] if self.p['snapshot_id'] else complete
        listed, damaged = [], []
        for snap in snaps:
            entry = summarize(snap)
            entry['future_dated'] = future_date(snap.manifest, now) is not None
            if self.p['disk_usage']:
                self.add_disk_usage(snap, entry)
            if self.p['verify']:
                problems = snap.verify()
                entry['status'] = 'damaged' if problems else 'verified'
                entry['problems'] = problems
                if problems:
                    damaged.append(snap.id)
            if self.p['full_manifest']:
                entry['manifest'] = snap.manifest
            listed.append(entry)
        incomplete = []
        for name, kind in store.entries():
            full = os.path.join(store.root, name)
            if kind == 'complete':
                try:
                    read_manifest(full)
                    continue
                except SnapshotError as e:
                    incomplete.append(dict(name=name, path=full, reason=str(e)))
                    if self.p['verify']:
                        damaged.append(name)  # finished once, its manifest is unreadable now: it fails verification
                    continue
            reason = 'still being written, or interrupted' if kind == 'partial' else 'no manifest.json'
            incomplete.append(dict(name=name, path=full, reason=reason, mtime=int(os.stat(full).st_mtime)))
        latest = trusted[-1].id if trusted else None
        return dict(changed=False, snapshots=listed, latest=latest, future_dated=[i for i, dummy in future],
                    incomplete=incomplete, damaged=damaged)

    @staticmethod
    def add_disk_usage(snap, entry):
        for name, part in snap.manifest.get('parts', {}).items():
            dirs = []
            for tree in part.get('trees') or []:
                if tree.get('missing'):
                    continue
                try:
                    dirs.append(snap.file_path({'path': tree['dir']}))
                except (SnapshotError, KeyError):
                    continue
            if dirs:
                entry['parts'][name].update(disk_usage(dirs))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            snapshot_root=dict(type='path', required=True),
            snapshot_id=dict(type='str'),
            verify=dict(type='bool', default=False),
            full_manifest=dict(type='bool', default=False),
            disk_usage=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    run_manager(module, SnapshotInfoManager)


if __name__ == '__main__':
    main()
