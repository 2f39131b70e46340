#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: media_snapshot
short_description: Snapshot Django's MEDIA_ROOT (or any directories) with rsync, hard-linking unchanged files
version_added: 0.1.0
description:
  - Copies one or more directories into a part of a snapshot under O(snapshot_root) with C(rsync), as the
    tree is - nested directories, empty directories, symlinks (kept as symlinks, never followed), hard links
    inside the tree, permissions, owners and groups (by number; owners only when run as root), mtimes, and any
    file name (unicode, spaces, newlines).
  - Every file unchanged (same size and mtime) since the newest complete snapshot of the same source is a hard
    link into that snapshot, so a snapshot after a small change costs only the changed bytes and the time to
    stat the tree. See O(incremental).
  - The module does the bulk work itself before rsync runs over the tree - it hard-links the unchanged files
    (mode and owner must match too) or, for a first or full snapshot, copies the plain files in the kernel
    (C(copy_file_range)) - and rsync, with C(--ignore-existing --delete), copies or links everything else
    (changed files, symlinks, hard-linked groups) and never touches what the module made. Left to itself,
    rsync opens the whole link-dest path for every file and moves every byte through a socket pair, both
    measurably slower.
  - Records per source directory the file, directory and symlink counts, total bytes, bytes transferred,
    the number of changed paths, and a digest of the listing (names, types, sizes, modes, owners, mtimes,
    symlink targets) that M(djangoops.maintenance.media_restore) and
    M(djangoops.maintenance.snapshot_info) with C(verify=true) check. With O(checksums=true), also a
    C(SHA256SUMS) file of every file's sha256.
  - Keeps the disk from filling - the task refuses to start when the free space under O(snapshot_root) is below
    O(space_reserve), and stops the copy (removing it) as soon as free space falls below it. In check mode, a
    C(rsync --dry-run) reports what would be copied and whether it fits.
  - The snapshot is written as C(<id>.partial) and renamed after C(manifest.json) is written last, like
    database snapshots; a failed copy is removed and never looks complete.
  - The snapshot directory is 0700, so nothing inside it is reachable by other users; the files of the copy
    keep their original modes, owners and mtimes, so that a restore is exact.
extends_documentation_fragment:
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.snapshot.write
options:
  src:
    description:
      - Absolute paths of the directories to snapshot, typically Django's C(MEDIA_ROOT).
      - Each is stored as C(<part>/trees/<name>), where C(<name>) is the directory's base name (made unique by
        a C(-2), C(-3) suffix when two sources share one). The mapping to the source path is recorded, and
        M(djangoops.maintenance.media_restore) restores each tree to its source by default.
      - A path that is itself a symlink (for example Ansistrano's C(current/media) pointing at
        C(shared/media)) is resolved once; nothing below it is followed.
      - A source must not contain O(snapshot_root) nor lie inside it.
    type: list
    elements: path
    required: true
    aliases: [media_root]
  allow_missing:
    description:
      - Record a source directory that does not exist as missing instead of failing the task.
    type: bool
    default: false
  allow_empty:
    description:
      - Take a snapshot of a source directory that is empty although the last snapshot of it recorded files.
      - By default that is refused before anything is written - most likely a network volume that is not mounted,
        and a restore of such a snapshot would delete every file of the live tree.
    type: bool
    default: false
  checksums:
    description:
      - Also write C(<part>/SHA256SUMS), the sha256 of every file in GNU C(sha256sum) format, listed in the
        manifest with its own sha256. M(djangoops.maintenance.media_restore) and
        M(djangoops.maintenance.snapshot_info) with C(verify=true) then check every file's content.
      - Costs one extra read of every file copied by this snapshot (rsync reads the source, the sha256 is taken
        from the fresh copy, usually still in the page cache). Files hard-linked to a previous snapshot that
        recorded checksums keep the digest recorded there and are not read again.
    type: bool
    default: false
  incremental:
    description:
      - Hard-link files unchanged since the newest complete snapshot of the same source, instead of copying
        them.
      - Unchanged means same size, mtime, mode and owner (rsync's quick check). A file whose content was
        changed while keeping its size and mtime is not copied again; set V(false) for a full, independent copy.
      - Hard-linked files are one file on disk shared by several snapshots; damage to it shows in all of them
        (and O(checksums=true) lets verification detect it).
    type: bool
    default: true
  part:
    description:
      - Name of the part the media is stored as inside the snapshot.
    type: str
    default: media
  space_reserve:
    description:
      - Free space to leave on the file system of O(snapshot_root) - a percentage of its size (V(5%)) or a size
        (V(500M), V(2G), a number of bytes). V(0) turns the guard off.
      - The media often shares its file system with the snapshots; the reserve keeps the application's uploads
        working while a snapshot is written. Free space is checked before the copy and as rsync reports each
        file; a copy that crosses the reserve is stopped and removed.
    type: str
    default: 5%
  encrypt_recipients:
    description:
      - Encrypt the media at rest with age for these recipients (age public keys C(age1...) or SSH public keys).
      - Each source directory is then stored as one stream archive, C(tar | zstd | age -r ...) into
        C(<part>/archives/<name>.tar.zst.age), so no plaintext copy is written under O(snapshot_root). The
        hard-link economy of O(incremental) does not apply - every encrypted snapshot holds all of its media - and
        O(checksums) is not needed (the archive's sha256 is in the manifest, and age authenticates its content).
      - M(djangoops.maintenance.media_restore) needs the identity (C(decrypt_identity)). See docs/encryption.md.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Runs C(rsync --dry-run) and reports what would be copied and whether it fits above O(space_reserve).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: Lists the paths that differ from the previous snapshot of the same source (at most 1000 per tree).
notes:
  - A snapshot of a directory the application keeps writing to is not atomic (unlike a database snapshot) -
    files written during the copy may or may not be in it. Files deleted during the copy are reported in a
    warning, not an error. Snapshot in a maintenance window for an exact point in time.
  - Device files, FIFOs and sockets are not copied. ACLs and extended attributes are not preserved.
  - To check a snapshot by hand - C(cd <snapshot_root>/<id>/<part> && sha256sum -c --quiet SHA256SUMS).
requirements:
  - C(rsync) on the host the task runs on.
seealso:
  - module: djangoops.maintenance.media_restore
  - module: djangoops.maintenance.snapshot_prune
  - module: djangoops.maintenance.snapshot_info
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Snapshot MEDIA_ROOT before the deploy
  djangoops.maintenance.media_snapshot:
    src: /srv/shop/media
    snapshot_root: /var/backups/django
  register: media_snap

- name: Database and media under one snapshot id
  block:
    - name: Database part
      djangoops.maintenance.db_snapshot:
        engine: postgresql
        database: shop
        snapshot_root: /var/backups/django
        snapshot_id: "{{ window_id }}"
        finalize: false

    - name: Media part, with checksums, and finalize
      djangoops.maintenance.media_snapshot:
        src:
          - /srv/shop/media
          - /srv/shop/private-uploads
        checksums: true
        snapshot_root: /var/backups/django
        snapshot_id: "{{ window_id }}"
        labels:
          release: "{{ release_version }}"

- name: What would the next snapshot copy?
  djangoops.maintenance.media_snapshot:
    src: /srv/shop/media
    snapshot_root: /var/backups/django
  check_mode: true
  diff: true
'''

RETURN = r'''
snapshot_id:
  description: Id of the snapshot written to (in check mode, V((generated)) unless O(snapshot_id) was given).
  returned: always
  type: str
  sample: 20261124T040512Z-k3j9q2
snapshot_path:
  description: Directory of the snapshot (C(<id>.partial) while not finalized).
  returned: always
  type: str
  sample: /var/backups/django/20261124T040512Z-k3j9q2
part:
  description: Name of the part written.
  returned: always
  type: str
  sample: media
encrypted:
  description: Whether the part was written as encrypted archives (O(encrypt_recipients) given).
  returned: when O(encrypt_recipients) is given
  type: bool
finalized:
  description: Whether the snapshot is complete.
  returned: always
  type: bool
trees:
  description: One entry per source directory.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the tree inside the part.
      type: str
    source:
      description: The source path as given.
      type: str
    resolved:
      description: The directory the source resolved to.
      type: str
    missing:
      description: Whether the source did not exist (only with O(allow_missing=true)).
      type: bool
    census:
      description: Counts of the copy - C(files), C(bytes), C(dirs), C(symlinks), C(other) and
        C(listing_sha256). Not in check mode.
      type: dict
    transferred_bytes:
      description: Bytes copied rather than hard-linked (in check mode, that would be).
      type: int
    changed_paths:
      description: Paths new or changed since the snapshot linked against (all paths for a first snapshot).
      type: int
    link_dest:
      description: The snapshot, part and tree unchanged files were hard-linked from, or null.
      type: dict
    prelinked_files:
      description: Unchanged files the module hard-linked before rsync ran (rsync links the rest, such as files
        with several hard links in the source). Only when there was a previous tree; not in check mode.
      type: int
    precopied_files:
      description: Files the module copied before rsync ran, for a tree without a previous copy (rsync copies the
        rest, such as files with several hard links in the source). They count in RV(trees[].transferred_bytes)
        and RV(trees[].changed_paths) as rsync's own copies would. Not in check mode.
      type: int
files:
  description: Files listed in the manifest for this part (C(SHA256SUMS) with O(checksums=true)).
  returned: success and not check mode
  type: list
  elements: dict
bytes:
  description: Apparent size of the copied trees (every file counted, hard-linked or not).
  returned: success and not check mode
  type: int
transferred_bytes:
  description: Bytes copied (the rest was hard-linked).
  returned: always
  type: int
changed_paths:
  description: Number of paths new or changed since the previous snapshot.
  returned: always
  type: int
seconds:
  description: Wall time of the copy and its recording.
  returned: success and not check mode
  type: float
preflight:
  description: The free-space figures.
  returned: always
  type: dict
  contains:
    free_bytes:
      description: Free bytes under the snapshot root before the copy.
      type: int
    reserve_bytes:
      description: O(space_reserve) in bytes.
      type: int
    estimated_bytes:
      description: Disk the snapshot would add (check mode only, from the dry run).
      type: int
    lowest_free_bytes:
      description: The least free space seen during the copy (not in check mode).
      type: int
rsync_version:
  description: Version of rsync used.
  returned: always
  type: str
commands:
  description: Commands run, shell-quoted for reading.
  returned: always
  type: list
  elements: str
manifest:
  description: The snapshot's manifest, when this task finalized it.
  returned: when finalized
  type: dict
'''

import os
import secrets
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils import _media
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    Manager, ModuleFailure, run_manager, snapshot_target, snapshot_target_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils import _media_archive
from ansible_collections.djangoops.maintenance.plugins.module_utils._age import encryption_options
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import resolve_compression
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import display
from ansible_collections.djangoops.maintenance.plugins.module_utils._rsync import find_rsync, version
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import split_future

DIFF_PATHS = 1000


class MediaSnapshotManager(Manager):
    def run(self):
        p = self.p
        store, snapshot_id, part_name, labels = snapshot_target(p)
        plans = _media.plan_sources(p['src'], p['allow_missing'], store.root)
        complete = None
        if not p['allow_empty']:
            complete = store.list()
            # The newest snapshot by a believable date (a future-dated one would hide a newer one's count).
            _media.refuse_emptied(plans, split_future(complete)[0] or complete)
        encryption = encryption_options(p['encrypt_recipients'])
        if encryption:
            return self.archive(store, plans, snapshot_id, part_name, labels, encryption)
        rsync = find_rsync()
        previous = {}
        if p['incremental']:
            complete = store.list() if complete is None else complete
            for plan in plans:
                if not plan['missing']:
                    previous[plan['name']] = _media.find_previous(complete, plan)
        keep = DIFF_PATHS if self.module._diff else 0
        free, size = _media.fs_figures(store.root)
        reserve = _media.parse_reserve(p['space_reserve'], size)
        preflight = dict(free_bytes=free, reserve_bytes=reserve)
        result = dict(changed=True, part=part_name, finalized=False, preflight=preflight, rsync_version=version(rsync),
                      commands=[], transferred_bytes=0, changed_paths=0)
        self.partial_result = result
        if reserve and free < reserve:
            raise ModuleFailure('free space under %s is %d bytes, below space_reserve (%d bytes); free space, prune '
                                'old snapshots, or lower space_reserve' % (store.root, free, reserve))
        if self.module.check_mode:
            return self.check(store, plans, previous, rsync, snapshot_id, keep, result)
        return self.write(store, plans, previous, rsync, snapshot_id, part_name, labels, result, reserve)

    def check(self, store, plans, previous, rsync, snapshot_id, keep, result):
        # A directory that never exists: the dry run compares against nothing but the link-dest tree.
        scratch = os.path.join(store.root, '.dry-run-%s' % secrets.token_hex(8))
        planned = _media.dry_run(rsync, plans, previous, scratch, keep_paths=keep)
        estimate = _media.estimate_bytes(planned)
        pre = result['preflight']
        pre['estimated_bytes'] = estimate
        result.update(snapshot_id=snapshot_id or '(generated)',
                      snapshot_path=store.path_of(snapshot_id) if snapshot_id else store.root,
                      commands=[display(r.argv) for r in planned.values()],
                      transferred_bytes=sum(r.transferred_bytes for r in planned.values()),
                      changed_paths=sum(r.changes for r in planned.values()),
                      trees=self.tree_results(plans, previous, planned))
        if pre['reserve_bytes'] and pre['free_bytes'] - estimate < pre['reserve_bytes']:
            msg = ('the snapshot would not fit: about %d bytes to copy, %d bytes free under %s, and space_reserve '
                   'keeps %d bytes free' % (estimate, pre['free_bytes'], store.root, pre['reserve_bytes']))
            raise ModuleFailure(msg, **result)
        self.add_diff(result, plans, planned)
        return result

    def archive(self, store, plans, snapshot_id, part_name, labels, encryption):
        """Encrypted media: one stream archive per tree (see _media_archive)."""
        opts = dict(compression=resolve_compression('auto'), compression_level=None, encryption=encryption)
        result = dict(changed=True, part=part_name, finalized=False, encrypted=True, commands=[], transferred_bytes=0,
                      changed_paths=0, preflight={})
        self.partial_result = result
        if self.module.check_mode:
            result.update(snapshot_id=snapshot_id or '(generated)',
                          snapshot_path=store.path_of(snapshot_id) if snapshot_id else store.root,
                          trees=[dict(pl) for pl in plans])
            return result
        started = time.monotonic()

        def fill(part):
            records = _media_archive.take(part, plans, opts, result['commands'].append)
            meta = _media_archive.part_meta(records, part, opts)
            meta.update(kind=_media.KIND, source=[pl['source'] for pl in plans], checksums=False,
                        commands=list(result['commands']))
            return records, part.commit(meta)

        builder, (records, record), manifest = store.write_part(
            snapshot_id, part_name, fill, finalize=self.p['finalize'], labels=labels,
            begun=lambda b: result.update(snapshot_id=b.id, snapshot_path=b.path))
        for rec in records:
            if rec.get('changed_while_archiving'):
                self.module.warn('%s changed while it was archived; its census is not recorded, so media_restore '
                                 'cannot compare the target with it' % rec['source'])
        result.update(snapshot_path=builder.path, finalized=manifest is not None, files=record['files'],
                      bytes=record['summary']['apparent_bytes'], transferred_bytes=record['bytes'], trees=records,
                      seconds=round(time.monotonic() - started, 3))
        if manifest is not None:
            result['manifest'] = manifest
        return result

    @staticmethod
    def tree_results(plans, previous, runs):
        out = []
        for plan in plans:
            entry = dict(plan)
            run = runs.get(plan['name'])
            prev = previous.get(plan['name'])
            entry['link_dest'] = dict((k, prev[k]) for k in ('snapshot_id', 'part', 'tree')) if prev else None
            entry['transferred_bytes'] = run.transferred_bytes if run else 0
            entry['changed_paths'] = run.changes if run else 0
            out.append(entry)
        return out

    def add_diff(self, result, plans, runs):
        if not self.module._diff:
            return
        lines = []
        for plan in plans:
            run = runs.get(plan['name'])
            if run is None:
                lines.append('! %s is missing' % plan['source'])
                continue
            lines.extend(_media.diff_lines(plan['name'], run))
        result['diff'] = dict(before_header='previous snapshot', after_header='this snapshot',
                              prepared='\n'.join(lines) + ('\n' if lines else ''))

    def write(self, store, plans, previous, rsync, snapshot_id, part_name, labels, result, reserve):
        started = time.monotonic()
        guard = _media.SpaceGuard(store.root, reserve)

        def fill(part):
            records, runs = _media.take(part, plans, previous, rsync, self.p['checksums'],
                                        keep_paths=DIFF_PATHS if self.module._diff else 0, guard=guard)
            sums_bytes = sum(f['size'] for f in part.files)
            meta = dict(kind=_media.KIND, source=[pl['source'] for pl in plans], trees=records,
                        checksums=self.p['checksums'], rsync_version=result['rsync_version'],
                        commands=[display(r.argv) for r in runs.values()],
                        summary=_media.summary(records, sums_bytes, self.p['checksums']))
            meta['bytes'] = meta['summary']['bytes']  # the trees, not only the files listed in the manifest
            return records, runs, part.commit(meta)

        builder, (records, runs, record), manifest = store.write_part(
            snapshot_id, part_name, fill, finalize=self.p['finalize'], labels=labels,
            begun=lambda b: result.update(snapshot_id=b.id, snapshot_path=b.path))
        for run in runs.values():
            for line in run.vanished[:20]:
                self.module.warn('file vanished during the media snapshot: %s' % line)
        summary = record['summary']
        result.update(snapshot_path=builder.path, finalized=manifest is not None, files=record['files'],
                      bytes=summary['apparent_bytes'], transferred_bytes=summary['transferred_bytes'],
                      changed_paths=summary['changed_paths'], trees=records,
                      seconds=round(time.monotonic() - started, 3), commands=record['commands'])
        result['preflight']['lowest_free_bytes'] = guard.lowest
        self.add_diff(result, plans, runs)
        if manifest is not None:
            result['manifest'] = manifest
        return result


def main():
    argument_spec = snapshot_target_argument_spec()
    argument_spec['part']['default'] = 'media'
    argument_spec.update(
        src=dict(type='list', elements='path', required=True, aliases=['media_root']),
        allow_missing=dict(type='bool', default=False),
        allow_empty=dict(type='bool', default=False),
        checksums=dict(type='bool', default=False),
        incremental=dict(type='bool', default=True),
        space_reserve=dict(type='str', default='5%'),
        encrypt_recipients=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_manager(module, MediaSnapshotManager)


if __name__ == '__main__':
    main()
