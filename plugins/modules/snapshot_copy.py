#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: snapshot_copy
short_description: Copy complete snapshots to or from an SSH backup host or an S3-compatible store
version_added: 0.1.0
description:
  - V(push) copies complete snapshots from O(snapshot_root) to the O(remote) store; V(pull) copies one from the
    remote store into O(snapshot_root), for example to restore a host whose own snapshots were lost with it.
  - Only complete snapshots travel, and a copy is complete only when its C(manifest.json) arrives, last. SSH - the
    snapshot is rsynced into C(<id>.partial) on the backup host (with C(--link-dest) to the newest snapshots there,
    so unchanged media files are hard links), then the manifest, then the file system is synced and the directory
    renamed to C(<id>). S3 - every file is uploaded (media trees as one tar stream per tree, large objects as
    multipart uploads), each verified against the ETag the store returns and the manifest's sha256, then an object
    index, then the manifest.
  - An interrupted copy (a cut network, a full disk, a killed task) never looks like a snapshot on the other side.
    Running the task again resumes it - rsync keeps what arrived, S3 skips objects already there with the right
    size and sha256 - and M(djangoops.maintenance.snapshot_remote_prune) removes one that is abandoned.
    A full disk on the backup host removes the incomplete copy at once.
  - A pulled copy is verified (every file's sha256, media trees against their census and C(SHA256SUMS)) before it
    is renamed to a complete snapshot. Encrypted snapshots travel as they are; no key is needed to copy them.
  - A snapshot already on the other side with a byte-identical manifest (which holds every file's sha256) is
    skipped and does not count as a change; one with the same id but another manifest fails the task.
extends_documentation_fragment:
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.remote
options:
  direction:
    description:
      - V(push) copies local snapshots to the remote store, V(pull) copies a remote snapshot here.
    type: str
    required: true
    choices: [push, pull]
  snapshot_id:
    description:
      - The snapshot to copy. V(latest) is the newest complete snapshot on the sending side.
      - With O(direction=push), V(all) pushes every complete local snapshot that the remote store lacks.
    type: str
    default: latest
  from_host:
    description:
      - With O(direction=pull) and O(snapshot_id=latest), the newest complete snapshot taken on this host (the host
        its manifest records). On a store that holds several hosts' snapshots, V(latest) without it is refused,
        because it would be whichever host backed up last.
    type: str
  verify_source:
    description:
      - Before a push, re-read every local file of the snapshot and compare it with the manifest, so a snapshot
        damaged on this host is never shipped (S3 also checks each file's sha256 while uploading it).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Lists both sides and reports what would be copied and skipped; copies nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
seealso:
  - module: djangoops.maintenance.snapshot_remote_info
  - module: djangoops.maintenance.snapshot_remote_prune
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Ship tonight's snapshot to the backup host
  djangoops.maintenance.snapshot_copy:
    snapshot_root: /var/backups/django
    direction: push
    snapshot_id: "{{ snap.snapshot_id }}"
    remote:
      type: ssh
      host: backup1.internal
      user: djangobackup
      path: /srv/backups/{{ inventory_hostname }}
      ssh_key: /root/.ssh/backup_ed25519
      known_hosts: /etc/ssh/backup_known_hosts

- name: Push everything the bucket lacks
  djangoops.maintenance.snapshot_copy:
    snapshot_root: /var/backups/django
    direction: push
    snapshot_id: all
    remote:
      type: s3
      endpoint_url: https://s3.eu-central-1.example.net
      bucket: shop-backups
      prefix: "{{ inventory_hostname }}"
      access_key: "{{ vault_s3_access_key }}"
      secret_key: "{{ vault_s3_secret_key }}"

- name: Bring the newest snapshot of web1 to a replacement host
  djangoops.maintenance.snapshot_copy:
    snapshot_root: /var/backups/django
    direction: pull
    snapshot_id: latest
    remote:
      type: ssh
      host: backup1.internal
      path: /srv/backups/web1
      ssh_key_content: "{{ vault_backup_ssh_key }}"
      host_key_checking: accept-new
'''

RETURN = r'''
direction:
  description: The direction of the copy.
  returned: always
  type: str
remote:
  description: The remote store, without credentials.
  returned: always
  type: str
  sample: ssh://root@backup1.internal:22/srv/backups/web1
copied:
  description: Ids of the snapshots copied (in check mode, that would be copied).
  returned: always
  type: list
  elements: str
already_present:
  description: Ids already present on the other side with an identical manifest (not copied again).
  returned: always
  type: list
  elements: str
snapshot_id:
  description: With O(direction=pull), the id of the snapshot pulled (V(latest) resolved).
  returned: when O(direction=pull)
  type: str
snapshot_path:
  description: With O(direction=pull), the local directory of the snapshot.
  returned: when O(direction=pull)
  type: str
bytes:
  description: Bytes of the snapshots copied, as their manifests state them.
  returned: always
  type: int
seconds:
  description: Wall time of the copy.
  returned: always
  type: float
commands:
  description: Commands run and S3 requests made (never a credential).
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import Manager, run_manager
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import (
    RemoteEntry, RemoteError, link_candidates, manifest_sha256, open_remote, pull_lock, remote_argument_spec,
    resolve_remote_id)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotStore


class SnapshotCopyManager(Manager):
    def __init__(self, module):
        super().__init__(module)
        self.commands = []

    def run(self):
        started = time.monotonic()
        store = SnapshotStore(self.p['snapshot_root'])
        with private_dir() as secrets:
            remote = open_remote(self.p['remote'], secrets, self.commands.append)
            result = dict(changed=False, direction=self.p['direction'], remote=remote.describe(), copied=[],
                          already_present=[], bytes=0, commands=self.commands)
            self.partial_result = result
            if self.p['direction'] == 'push':
                self.push(store, remote, result)
            else:
                self.pull(store, remote, result)
        result['seconds'] = round(time.monotonic() - started, 3)
        return result

    def chosen(self, store):
        wanted = self.p['snapshot_id'] or 'latest'
        if wanted == 'all':
            return store.list()
        return [store.load(wanted)]

    def push(self, store, remote, result):
        entries = remote.entries()
        there = dict((e.name, e) for e in entries)
        todo = []
        for snap in self.chosen(store):
            entry = there.get(snap.id)
            if entry is not None and entry.kind == 'complete':
                if entry.manifest_sha256 != manifest_sha256(snap):
                    raise RemoteError('%s already holds a snapshot %s with another manifest; refusing to overwrite it'
                                      % (remote.describe(), snap.id))
                if remote.kind != 's3' or remote.present(entry):
                    result['already_present'].append(snap.id)
                    continue
                raise RemoteError('snapshot %s on %s has its manifest but lacks objects it lists; delete everything under '
                                  '%s/ in the bucket and push again' % (snap.id, remote.describe(), snap.id))
            todo.append(snap)
        result['copied'] = [s.id for s in todo]
        result['bytes'] = sum(s.manifest.get('bytes', 0) for s in todo)
        result['changed'] = bool(todo)
        if self.module.check_mode:
            return
        for snap in todo:
            if self.p['verify_source']:
                snap.require_sound()
            remote.push(snap, link_candidates(snap, entries))
            entries.append(RemoteEntry(snap.id, 'complete', manifest=snap.manifest))

    def pull(self, store, remote, result):
        if self.p['snapshot_id'] == 'all':
            raise RemoteError('snapshot_id all is for direction push; pull one snapshot (an id or latest)')
        entry = resolve_remote_id(remote.entries(), self.p['snapshot_id'], host=self.p['from_host'], one_host=True)
        if entry.problem:
            raise RemoteError('snapshot %s on %s is unreadable: %s' % (entry.name, remote.describe(), entry.problem))
        result['snapshot_id'] = entry.name
        result['snapshot_path'] = store.path_of(entry.name)
        if self.module.check_mode:
            self.pull_entry(store, remote, entry, result)
            return
        store.ensure()
        with pull_lock(store.root, entry.name):  # a second pull of the id fails at once, never under this one
            self.pull_entry(store, remote, entry, result)

    def pull_entry(self, store, remote, entry, result):
        local = dict((s.id, s) for s in store.list())
        if entry.name in local:
            if manifest_sha256(local[entry.name]) != entry.manifest_sha256:
                raise RemoteError('a different snapshot %s already exists in %s; refusing to replace it'
                                  % (entry.name, store.root))
            result['already_present'].append(entry.name)
            return
        result['copied'] = [entry.name]
        result['bytes'] = entry.manifest.get('bytes', 0)
        result['changed'] = True
        if self.module.check_mode:
            return
        links = [s.path for s in reversed(store.list())][:3]
        remote.pull(entry, store, links)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            snapshot_root=dict(type='path', required=True),
            direction=dict(type='str', required=True, choices=['push', 'pull']),
            snapshot_id=dict(type='str', default='latest'),
            from_host=dict(type='str'),
            verify_source=dict(type='bool', default=True),
            remote=remote_argument_spec(),
        ),
        supports_check_mode=True,
    )
    run_manager(module, SnapshotCopyManager)


if __name__ == '__main__':
    main()
