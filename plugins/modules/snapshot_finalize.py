#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: snapshot_finalize
short_description: Complete a snapshot whose parts were written by several tasks
version_added: 0.1.0
description:
  - Several tasks can write parts of one snapshot (database, media, ...) with O(snapshot_id) and
    C(finalize=false). This module completes it - it checks that every part finished, writes C(manifest.json)
    last and atomically (all parts, files, sizes, sha256, labels and O(metadata)), fsyncs, and renames
    C(<id>.partial) to C(<id>).
  - A part that started but never finished (its task failed) makes the snapshot refuse to complete.
extends_documentation_fragment:
  - djangoops.maintenance.snapshot
options:
  snapshot_id:
    description: Id of the snapshot being written.
    type: str
    required: true
  labels:
    description: Labels stored in the manifest.
    type: dict
    default: {}
  metadata:
    description:
      - Extra facts stored in the manifest under C(metadata), for example the Django migration state and the code
        release the snapshot belongs to. Must be JSON-serialisable.
    type: dict
    default: {}
  require_parts:
    description: Parts that must be present; a missing one fails the task and leaves the snapshot incomplete.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Checks that the snapshot can be completed, without writing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Complete the window snapshot
  djangoops.maintenance.snapshot_finalize:
    snapshot_root: /var/backups/django
    snapshot_id: "{{ window_snapshot_id }}"
    require_parts: [database, media]
    labels:
      release: "{{ release_version }}"
      reason: maintenance-window
    metadata:
      django_migrations: "{{ django_facts.applied_migrations }}"
'''

RETURN = r'''
snapshot_id:
  description: Id of the snapshot.
  returned: always
  type: str
snapshot_path:
  description: Directory of the completed snapshot.
  returned: always
  type: str
manifest:
  description: The manifest written.
  returned: success and not check mode
  type: dict
parts:
  description: Names of the parts in the snapshot.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import ModuleFailure, run_manager
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotStore, validate_id


class SnapshotFinalizeManager(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def run(self):
        store = SnapshotStore(self.p['snapshot_root'])
        snapshot_id = validate_id(self.p['snapshot_id'])
        if os.path.isdir(store.path_of(snapshot_id)):
            snap = store.load(snapshot_id)
            return dict(changed=False, snapshot_id=snapshot_id, snapshot_path=snap.path, manifest=snap.manifest,
                        parts=sorted(snap.manifest['parts']))
        builder = store.open_partial(snapshot_id)
        parts = sorted(builder.parts())
        missing = [p for p in self.p['require_parts'] if p not in parts]
        if missing:
            raise ModuleFailure('snapshot %s lacks the part(s) %s; it stays incomplete' % (snapshot_id, ', '.join(missing)),
                                parts=parts)
        if self.module.check_mode:
            return dict(changed=True, snapshot_id=snapshot_id, snapshot_path=store.path_of(snapshot_id), parts=parts)
        manifest = builder.finalize(labels=self.p['labels'], extra={'metadata': self.p['metadata']},
                                    require_parts=self.p['require_parts'])
        return dict(changed=True, snapshot_id=snapshot_id, snapshot_path=builder.path, manifest=manifest, parts=parts)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            snapshot_root=dict(type='path', required=True),
            snapshot_id=dict(type='str', required=True),
            labels=dict(type='dict', default={}),
            metadata=dict(type='dict', default={}),
            require_parts=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    run_manager(module, SnapshotFinalizeManager)


if __name__ == '__main__':
    main()
