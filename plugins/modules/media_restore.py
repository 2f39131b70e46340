#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: media_restore
short_description: Make a media directory exactly equal to a djangoops.maintenance snapshot
version_added: 0.1.0
description:
  - Restores the media part written by M(djangoops.maintenance.media_snapshot) with C(rsync --delete) - files
    the snapshot lacks are removed, changed files are replaced, and names, contents, symlinks, hard links inside
    the tree, empty directories, permissions, owners and groups (when run as root) and mtimes end up as
    recorded.
  - Before touching the target, checks the snapshot against what it recorded - the counts and listing digest of
    every tree, and with a snapshot taken with C(checksums=true), the sha256 of every file. A damaged snapshot is
    refused and the target left as it was.
  - After the copy, the target's listing (names, types, sizes, modes, owners, mtimes, symlink targets) is
    compared with the snapshot's; a difference fails the task. See O(verify_target).
  - Never follows a path out of the target - a symlink found in the target where the snapshot has a directory or a
    file is replaced, not followed, and files are written to a temporary name and renamed into place.
    O(dest) itself may be a symlink to the real media directory; it is resolved once and reported.
  - In check mode, a C(rsync --dry-run) reports what would change; with C(--diff) the paths are listed. An
    encrypted tree is not unpacked in check mode (no plaintext on disk, no room needed); its decrypted stream is
    read as a tar archive and compared with O(dest) as the restore's rsync would (type, size and mtime, or the
    content with O(compare=checksum); mode; owner and group when run as root; link targets; hard links; what
    O(dest) holds that the snapshot does not).
extends_documentation_fragment:
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.snapshot.read
options:
  part:
    description:
      - Name of the media part to restore; needed only when the snapshot holds several.
    type: str
  tree:
    description:
      - Which source directory of the part to restore, by tree name or by its recorded source path.
      - Omit to restore every tree of the part (or the only one, with O(dest)).
    type: str
  dest:
    description:
      - Directory to restore into. Defaults to the source path each tree was snapshotted from.
      - Needs O(tree) when the part holds several trees.
      - Created when missing (its parent must exist), with the mode, owner and mtime of the snapshot's copy.
      - Must not contain O(snapshot_root) nor lie inside it.
    type: path
  verify:
    description:
      - Check the snapshot against its recorded counts, listing digest and checksums before restoring.
      - Reads every file of the part when the snapshot has checksums.
    type: bool
    default: true
  verify_checksums:
    description:
      - With O(verify), also read every file and compare its sha256 (a snapshot taken with C(checksums=true); the
        archives of an encrypted part).
      - V(false) checks the counts, listings and sizes only, and reads no file. For a caller that has just verified
        the same snapshot in full, as the P(djangoops.maintenance.restore#role) role does with
        M(djangoops.maintenance.snapshot_info) and O(djangoops.maintenance.snapshot_info#module:verify=true) first,
        so that large media are not read twice; a file altered between that check and the restore then goes
        unnoticed by this module.
    type: bool
    default: true
  compare:
    description:
      - How rsync decides that a target file is already right. V(quick) - same size and mtime (rsync's default).
        V(checksum) - same content, reading both sides; finds a file changed in place with its mtime kept.
    type: str
    choices: [quick, checksum]
    default: quick
  verify_target:
    description:
      - After the restore, compare the target's listing with the snapshot's and fail on a difference.
      - Owners can only be restored by root; run the task with C(become) when the media belongs to several users.
    type: bool
    default: true
  decrypt_identity:
    description:
      - Path, on the host, of the age identity (or SSH private key without passphrase) that decrypts a part taken
        with C(encrypt_recipients). Each archive is extracted into a private staging directory beside its O(dest),
        then rsync makes O(dest) equal to it, and the staging directory is removed.
      - A missing or wrong key fails before anything is extracted or changed.
    type: path
  decrypt_identity_content:
    description:
      - The identity itself (for example from Ansible Vault); written to a private 0600 file removed when the
        task ends, never logged.
    type: str
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Verifies the snapshot and runs C(rsync --dry-run --itemize-changes); nothing is written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: Lists the paths created, changed (and what changed) and deleted, at most 1000 per tree.
notes:
  - Stop the application (or at least uploads) during a restore; files it writes meanwhile are removed or make
    O(verify_target) fail.
  - A restore that fails midway leaves the target partly restored; the snapshot is untouched, so run the task
    again.
  - A tree recorded as missing (snapshot taken with C(allow_missing=true)) is skipped with a warning; its target is
    left alone rather than deleted.
requirements:
  - C(rsync) on the host the task runs on.
seealso:
  - module: djangoops.maintenance.media_snapshot
  - module: djangoops.maintenance.snapshot_info
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Put MEDIA_ROOT back as it was before the deploy
  djangoops.maintenance.media_restore:
    snapshot_root: /var/backups/django
    snapshot_id: "{{ media_snap.snapshot_id }}"
  become: true

- name: What would a restore of the latest snapshot change?
  djangoops.maintenance.media_restore:
    snapshot_root: /var/backups/django
  check_mode: true
  diff: true
  register: would

- name: Restore one tree somewhere else to inspect it
  djangoops.maintenance.media_restore:
    snapshot_root: /var/backups/django
    snapshot_id: 20261124T040512Z-k3j9q2
    tree: /srv/shop/private-uploads
    dest: /srv/restore-check/private-uploads
'''

RETURN = r'''
snapshot_id:
  description: Id of the snapshot restored.
  returned: always
  type: str
part:
  description: Name of the part restored.
  returned: always
  type: str
verified:
  description: Whether the snapshot was checked against its recorded counts, listing and checksums.
  returned: always
  type: bool
checksums_verified:
  description: Whether every file's sha256 was checked (the snapshot has SHA256SUMS, O(verify=true) and
    O(verify_checksums=true)).
  returned: always
  type: bool
trees:
  description: One entry per tree restored (or, in check mode, that would be).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Tree name in the snapshot.
      type: str
    dest:
      description: The directory restored into (resolved).
      type: str
    created:
      description: Paths created.
      type: int
    updated:
      description: Paths whose content or attributes were changed.
      type: int
    deleted:
      description: Paths removed because the snapshot lacks them.
      type: int
    changed:
      description: Whether anything changed in this tree.
      type: bool
    skipped:
      description: Why the tree was skipped, if it was.
      type: str
    target_verified:
      description: Whether the target's listing was compared with the snapshot's and matched.
      type: bool
seconds:
  description: Wall time of the restore.
  returned: success and not check mode
  type: float
commands:
  description: Commands run, shell-quoted for reading.
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils import _media, _media_archive, _media_preview
from ansible_collections.djangoops.maintenance.plugins.module_utils._age import (
    check_identity, identity_file, part_encryption)
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    Manager, ModuleFailure, load_source_snapshot, pick_part, run_manager, snapshot_source_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import display, private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._rsync import find_rsync
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotStore

DIFF_PATHS = 1000


class MediaRestoreManager(Manager):
    def run(self):
        p = self.p
        store = SnapshotStore(p['snapshot_root'])
        snap = load_source_snapshot(store, p)
        part_name, part_meta = pick_part(snap, _media.KIND, p['part'])
        jobs = self.plan(snap, store, part_name, part_meta)
        has_sums = bool(part_meta.get('checksums'))
        result = dict(changed=False, snapshot_id=snap.id, part=part_name, verified=False,
                      checksums_verified=False, trees=[], commands=[])
        self.partial_result = result
        if p['verify']:
            snap.require_sound([part_name], contents=p['verify_checksums'])  # before the target is touched
            result.update(verified=True, checksums_verified=has_sums and p['verify_checksums'])
        with private_dir() as secrets:
            identity = None
            if part_encryption(part_meta):
                identity = identity_file(p, secrets)
                for tree, dummy, dummy in jobs:
                    if tree.get('archive'):
                        check_identity(snap.file_path({'path': tree['archive']}), identity,
                                       'snapshot %s part %r' % (snap.id, part_name))
            return self.restore(snap, part_meta, jobs, identity, result)

    def restore(self, snap, part_meta, jobs, identity, result):
        p = self.p
        keep = DIFF_PATHS if self.module._diff else 0
        started = time.monotonic()
        diff_lines = []
        for tree, tree_dir, dest in jobs:
            entry = dict(name=tree['name'], dest=dest, created=0, updated=0, deleted=0, changed=False)
            result['trees'].append(entry)
            if tree_dir is None:
                entry['skipped'] = 'the snapshot recorded %s as missing; the target is left alone' % tree['source']
                self.module.warn('tree %s: %s' % (tree['name'], entry['skipped']))
                continue
            checksum = p['compare'] == 'checksum'
            if tree.get('archive') and self.module.check_mode:
                # Nothing is unpacked: the decrypted stream is compared with the target as it passes.
                run, command = _media_preview.preview(snap, tree, part_meta, identity, dest, checksum, keep)
                result['commands'].append(command)
            else:
                run = self.sync(snap, part_meta, identity, tree, tree_dir, dest, checksum, keep, result)
            entry.update(run.output.counts)
            entry['changed'] = run.changes > 0
            result['changed'] = result['changed'] or entry['changed']
            diff_lines.extend(_media.diff_lines(dest, run))
            if not self.module.check_mode and p['verify_target']:
                self.verify_target(entry, tree, dest)
        if not self.module.check_mode:
            result['seconds'] = round(time.monotonic() - started, 3)
        if self.module._diff:
            result['diff'] = dict(before_header='target', after_header='snapshot %s' % snap.id,
                                  prepared='\n'.join(diff_lines) + ('\n' if diff_lines else ''))
        return result

    def sync(self, snap, part_meta, identity, tree, tree_dir, dest, checksum, keep, result):
        """rsync of the tree (an archived tree first extracted into a staging directory) into ``dest``."""
        rsync = find_rsync()
        staging = None
        if tree.get('archive'):
            staging = tree_dir = _media_archive.extract(snap, tree, part_meta, identity, dest,
                                                        result['commands'].append)
        try:
            run = _media.restore(rsync, tree_dir, dest, checksum=checksum, dry_run=self.module.check_mode,
                                 keep_paths=keep)
        finally:
            _media_archive.discard(staging)
        result['commands'].append(display(run.argv))
        return run

    def plan(self, snap, store, part_name, part_meta):
        """(tree record, tree directory in the snapshot or None when missing, resolved dest) per tree."""
        p = self.p
        trees = part_meta.get('trees') or part_meta.get('archives') or []
        if p['tree']:
            chosen = [t for t in trees if p['tree'] in (t['name'], t.get('source'))]
            if not chosen:
                raise ModuleFailure('snapshot %s part %r has no tree %r (it has: %s)' % (
                    snap.id, part_name, p['tree'], ', '.join('%s (%s)' % (t['name'], t.get('source')) for t in trees)))
            trees = chosen[:1]
        if not trees:
            raise ModuleFailure('snapshot %s part %r holds no media tree' % (snap.id, part_name))
        if p['dest'] and len(trees) > 1:
            raise ModuleFailure('snapshot %s part %r holds several trees (%s); choose one with tree to restore it '
                                'into dest' % (snap.id, part_name, ', '.join(t['name'] for t in trees)))
        jobs = []
        for tree in trees:
            dest = _media.check_dest(p['dest'] or tree.get('source'), store.root)
            if tree.get('missing'):
                tree_dir = None
            elif tree.get('archive'):
                tree_dir = snap.file_path({'path': tree['archive']})  # extracted when its turn comes
            else:
                tree_dir = snap.file_path({'path': tree['dir']})
            jobs.append((tree, tree_dir, dest))
        return jobs

    def verify_target(self, entry, tree, dest):
        if tree.get('census') is None:
            entry['target_verified'] = None  # the source changed while it was archived: nothing exact to compare
            return
        problems = _media.target_differences(dest, tree.get('census') or {})
        entry['target_verified'] = not problems
        if problems:
            raise ModuleFailure('%s differs from snapshot tree %s after the restore: %s (was the application '
                                'writing to it, or does restoring owners need become: true?)'
                                % (dest, tree['name'], '; '.join(problems)), **self.partial_result)


def main():
    argument_spec = snapshot_source_argument_spec()
    argument_spec.update(
        tree=dict(type='str'),
        dest=dict(type='path'),
        verify=dict(type='bool', default=True),
        verify_checksums=dict(type='bool', default=True),
        compare=dict(type='str', default='quick', choices=['quick', 'checksum']),
        verify_target=dict(type='bool', default=True),
        decrypt_identity=dict(type='path'),
        decrypt_identity_content=dict(type='str', no_log=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('snapshot_id', 'snapshot_path'),
                                               ('decrypt_identity', 'decrypt_identity_content')])
    run_manager(module, MediaRestoreManager)


if __name__ == '__main__':
    main()
