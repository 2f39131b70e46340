#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: snapshot_remote_info
short_description: List and verify the snapshots on an SSH backup host or an S3-compatible store
version_added: 0.1.0
description:
  - Lists the complete snapshots on the O(remote) store, oldest first, and what is there but incomplete (an
    interrupted copy, a deletion cut short) - the remote counterpart of M(djangoops.maintenance.snapshot_info).
  - With O(verify=true), checks every file of every listed snapshot against the sha256 in its manifest. SSH - the
    backup host hashes its files itself (C(sha256sum)), media trees against their C(SHA256SUMS) when the snapshot
    has one. S3 - every object is downloaded (streaming, nothing kept) and hashed, and compared with the object
    index and the manifest. Encrypted snapshots are verified without any key.
  - Flags future-dated snapshots - whose manifest dates them more than 5 minutes after the clock of the host
    running this task, because a clock ran ahead when they were taken. V(latest) never resolves to one, and each
    one is warned about. See RV(future_dated).
extends_documentation_fragment:
  - djangoops.maintenance.remote
options:
  snapshot_id:
    description:
      - Show only this snapshot (V(latest) for the most recent one that is not future-dated). Fails when it is not
        there, and for V(latest) when every snapshot is future-dated.
    type: str
  verify:
    description:
      - Check every file's sha256 on the remote store.
    type: bool
    default: false
  full_manifest:
    description:
      - Return each snapshot's whole manifest rather than a summary.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
seealso:
  - module: djangoops.maintenance.snapshot_copy
  - module: djangoops.maintenance.snapshot_remote_prune
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Weekly integrity check of the off-host copies
  djangoops.maintenance.snapshot_remote_info:
    verify: true
    remote:
      type: s3
      endpoint_url: https://s3.example.net
      bucket: shop-backups
      prefix: web1
      access_key: "{{ vault_s3_access_key }}"
      secret_key: "{{ vault_s3_secret_key }}"
  register: offhost
  failed_when: offhost.damaged | length > 0
'''

RETURN = r'''
remote:
  description: The remote store, without credentials.
  returned: always
  type: str
snapshots:
  description: Complete snapshots, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Snapshot id.
      type: str
    host:
      description: Host the snapshot was taken on.
      type: str
    created_at:
      description: When the snapshot was begun (UTC).
      type: str
    completed_at:
      description: When it was completed (UTC).
      type: str
    labels:
      description: The snapshot's labels.
      type: dict
    bytes:
      description: Total bytes of the snapshot's files.
      type: int
    parts:
      description: Per part - kind, engine, format, compression, bytes, number of files and whether it is encrypted.
      type: dict
    status:
      description: V(complete), or with O(verify=true) V(verified) or V(damaged).
      type: str
    future_dated:
      description: Whether the snapshot is future-dated (see RV(future_dated)).
      type: bool
    problems:
      description: With O(verify=true), what is wrong with it.
      type: list
      elements: str
    manifest:
      description: With O(full_manifest=true), the whole manifest.
      type: dict
latest:
  description: Id of the newest complete snapshot that is not future-dated, or null.
  returned: always
  type: str
future_dated:
  description:
    - Ids of the future-dated snapshots, oldest first - dated more than 5 minutes after this host's clock, so taken
      while a clock ran ahead. RV(latest) skips them and M(djangoops.maintenance.snapshot_remote_prune) keeps them
      without counting them.
  returned: always
  type: list
  elements: str
incomplete:
  description: Names on the store that are not complete snapshots, with why and (epoch) when they last changed.
  returned: always
  type: list
  elements: dict
damaged:
  description: Ids of the snapshots that failed verification.
  returned: always
  type: list
  elements: str
commands:
  description: Commands run and S3 requests made (never a credential).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import run_manager
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import (
    complete, open_remote, remote_argument_spec, resolve_remote_id, summary)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    future_date, split_future, utcnow, warn_future)


class SnapshotRemoteInfoManager(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.commands = []

    def run(self):
        with private_dir() as secrets:
            remote = open_remote(self.p['remote'], secrets, self.commands.append)
            entries = remote.entries()
            now = utcnow()
            done = complete(entries)
            trusted, future = split_future(done, now)
            if self.p['snapshot_id'] != 'latest':  # resolving latest warns about the future-dated ones it skips
                warn_future(future, now, 'latest skips it')
            listed = [resolve_remote_id(entries, self.p['snapshot_id'], now=now)] if self.p['snapshot_id'] else done
            snapshots, damaged = [], []
            for entry in listed:
                item = summary(entry)
                item['future_dated'] = future_date(entry.manifest, now) is not None
                if self.p['verify']:
                    problems = remote.verify(entry)
                    item['status'] = 'damaged' if problems else 'verified'
                    item['problems'] = problems
                    if problems:
                        damaged.append(entry.name)
                if self.p['full_manifest']:
                    item['manifest'] = entry.manifest
                snapshots.append(item)
        incomplete = []
        for e in entries:
            if e.kind == 'complete' and e.manifest is not None:
                continue
            reason = e.problem or ('an interrupted copy or deletion' if e.kind == 'partial'
                                   else 'not a snapshot of this collection')
            incomplete.append(dict(name=e.name, kind=e.kind, reason=reason, mtime=e.mtime))
        return dict(changed=False, remote=remote.describe(), snapshots=snapshots,
                    latest=trusted[-1].name if trusted else None, future_dated=[i for i, dummy in future],
                    incomplete=incomplete, damaged=damaged,
                    commands=self.commands)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            snapshot_id=dict(type='str'),
            verify=dict(type='bool', default=False),
            full_manifest=dict(type='bool', default=False),
            remote=remote_argument_spec(),
        ),
        supports_check_mode=True,
    )
    run_manager(module, SnapshotRemoteInfoManager)


if __name__ == '__main__':
    main()
