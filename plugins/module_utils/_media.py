# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: media parts of a snapshot, taken and restored with rsync.

A media part is ``<snapshot>/<part>/trees/<name>/`` per source directory (the copy, with the
source's own modes, owners and mtimes), plus ``<part>/SHA256SUMS`` when checksums are on. Files
unchanged since the newest complete snapshot of the same source are hard links into it
(``rsync --link-dest``), so a snapshot after a small change costs only the changed bytes.
"""

from __future__ import annotations

import os
import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._media_fill import CopyError, copy_new, link_unchanged
from ansible_collections.djangoops.maintenance.plugins.module_utils._rsync import (
    restore_argv, run_rsync, snapshot_argv)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotError
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import (
    SUMS_NAME, TREES_DIR, census, record_tree)

KIND = 'media'
_NAME_UNSAFE = re.compile(r'[^A-Za-z0-9._-]+')
# Estimated filesystem overhead of one directory or new file (a block), for the check-mode estimate.
BLOCK = 4096
_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*(%|[kmgt]?)(?:i?b)?\s*$', re.IGNORECASE)
_UNITS = {'': 1, 'k': 2 ** 10, 'm': 2 ** 20, 'g': 2 ** 30, 't': 2 ** 40}


class OutOfSpace(SnapshotError):
    """Free space fell below the reserve."""


def parse_reserve(text, fs_bytes):
    """``space_reserve`` in bytes: a percentage of the file system (``5%``) or a size (``500M``, ``2G``,
    ``1048576``)."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise SnapshotError('invalid space_reserve %r: use a percentage of the file system (5%%) or a size '
                            '(500M, 2G, bytes)' % (text,))
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit == '%':
        if number > 100:
            raise SnapshotError('invalid space_reserve %r: more than 100%%' % (text,))
        return int(fs_bytes * number / 100)
    return int(number * _UNITS[unit])


def fs_figures(path):
    """(free bytes for an unprivileged writer, size) of the file system holding ``path`` or its nearest parent."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class SpaceGuard(object):
    """Stops a copy when free space under the snapshot root falls below the reserve: the media often
    shares its file system with the snapshots, and a full disk would break the application's uploads.
    Checked each time rsync reports a file (a statvfs costs microseconds)."""

    def __init__(self, root, reserve):
        self.root = root
        self.reserve = reserve
        self.lowest = None

    def check(self):
        if not self.reserve:
            return
        free = fs_figures(self.root)[0]
        self.lowest = free if self.lowest is None else min(self.lowest, free)
        if free < self.reserve:
            raise OutOfSpace('free space under %s fell to %d bytes, below space_reserve (%d bytes); the media '
                             'snapshot was stopped and its incomplete copy removed. Free space, prune old '
                             'snapshots, or lower space_reserve' % (self.root, free, self.reserve))


def _inside(path, parent):
    return path == parent or path.startswith(parent.rstrip('/') + '/')


def refuse_overlap(path, snapshot_root, what):
    """A media tree and the snapshot root must not contain each other: copying a tree that holds the
    snapshots copies them into themselves, and restoring over one with --delete would erase them."""
    real_root = os.path.realpath(snapshot_root)
    if _inside(path, real_root) or _inside(real_root, path):
        raise SnapshotError('%s %s overlaps snapshot_root %s; the snapshot root must be outside the media '
                            'directories and not contain them' % (what, path, snapshot_root))


def tree_name(path, taken):
    base = _NAME_UNSAFE.sub('_', os.path.basename(path.rstrip('/'))).strip('._-') or 'root'
    name, n = base[:60], 2
    while name in taken:
        name = '%s-%d' % (base[:56], n)
        n += 1
    taken.add(name)
    return name


def plan_sources(sources, allow_missing, snapshot_root):
    """One plan per source directory: its tree name, the path as given, and where it resolves to.
    The given path itself may be a symlink (Ansistrano's shared media); nothing below it is followed."""
    if not sources:
        raise SnapshotError('src is empty: name at least one directory to snapshot')
    plans, taken, seen = [], set(), {}
    for src in sources:
        if not src or not os.path.isabs(src):
            raise SnapshotError('src must be absolute paths, got %r' % (src,))
        src = os.path.normpath(src)
        resolved = os.path.realpath(src)
        missing = not os.path.lexists(src) or (os.path.islink(src) and not os.path.exists(src))
        if missing and not allow_missing:
            raise SnapshotError('source directory %s does not exist (set allow_missing: true to record it as '
                                'missing instead)' % src)
        if not missing and not os.path.isdir(resolved):
            raise SnapshotError('source %s is not a directory' % src)
        if not missing:
            if resolved in seen:
                raise SnapshotError('sources %s and %s are the same directory %s' % (seen[resolved], src, resolved))
            seen[resolved] = src
            refuse_overlap(resolved, snapshot_root, 'source')
        plans.append(dict(name=tree_name(src, taken), source=src, resolved=resolved, missing=missing))
    return plans


def _same_trees(snapshots, plan):
    """``(snapshot, part name, part, tree)`` of every recorded tree of ``plan``'s source (same source path, or same
    resolved directory) that was not missing, newest snapshot first (``snapshots``: complete ones, oldest first)."""
    for snap in reversed(snapshots):
        for part_name, part in sorted(snap.parts_of_kind(KIND).items()):
            for tree in part.get('trees') or []:
                if tree.get('missing'):
                    continue
                if tree.get('source') != plan['source'] and tree.get('resolved') != plan['resolved']:
                    continue
                yield snap, part_name, part, tree


def last_recorded_files(snapshots, plan):
    """``(snapshot id, files)`` of the same tree in the newest snapshot that counted its files; None when none did."""
    for snap, dummy, dummy, tree in _same_trees(snapshots, plan):
        files = (tree.get('census') or {}).get('files')
        if files is not None:
            return snap.id, files
    return None


def refuse_emptied(plans, snapshots):
    """Refuse a source directory that is empty now but held files in the last snapshot of it: most likely a
    volume that is not mounted (NFS, EFS), and a snapshot of it would restore as an empty tree, deleting
    every file of the live one."""
    for plan in plans:
        if plan['missing']:
            continue
        with os.scandir(plan['resolved']) as entries:
            if next(entries, None) is not None:
                continue
        last = last_recorded_files(snapshots, plan)
        if last and last[1] > 0:
            source, snapshot_id, files = plan['source'], last[0], last[1]
            raise SnapshotError('source directory %s is empty, but snapshot %s recorded %d files in it (is a volume '
                                'not mounted?); restoring an empty tree would delete every file of the live one. '
                                'Set allow_empty: true if it was emptied on purpose' % (source, snapshot_id, files))


def find_previous(snapshots, plan):
    """The same tree in the newest of ``snapshots`` (complete ones, oldest first) that has it (same source
    path, or same resolved directory): the --link-dest candidate. None when there is none."""
    for snap, part_name, part, tree in _same_trees(snapshots, plan):
        try:
            tree_dir = snap.file_path({'path': tree['dir']})
        except (SnapshotError, KeyError):
            continue
        if not os.path.isdir(tree_dir) or os.path.islink(tree_dir):
            continue
        sums = os.path.join(snap.path, part_name, SUMS_NAME) if part.get('checksums') else None
        return dict(snapshot_id=snap.id, part=part_name, tree=tree['name'], dir=tree_dir, sums=sums)
    return None


def dry_run(rsync, plans, previous, scratch, keep_paths=0):
    """What a snapshot would copy, per tree (rsync --dry-run into a directory that does not exist)."""
    out = {}
    for plan in plans:
        if plan['missing']:
            continue
        prev = previous.get(plan['name'])
        argv = snapshot_argv(rsync, plan['resolved'], os.path.join(scratch, plan['name']),
                             link_dest=prev['dir'] if prev else None, dry_run=True)
        out[plan['name']] = run_rsync(argv, keep_paths=keep_paths, allow_vanished=True)
    return out


def prelink(src, prev_dir, dest):
    """Hard-link the unchanged files into ``dest`` before rsync (see _media_fill): the number linked, or
    None when that could not even start (rsync then does all of it, as plain ``--link-dest``)."""
    try:
        return link_unchanged(src, prev_dir, dest)[0]
    except OSError:
        return None  # ``dest`` was not created


def precopy(src, dest, check=None, keep_paths=0):
    """Copy the tree's plain files into ``dest`` before rsync (see _media_fill): the copier, or None when
    that could not even start (rsync then copies everything)."""
    try:
        return copy_new(src, dest, check=check, keep_paths=keep_paths)
    except CopyError as e:
        raise SnapshotError(str(e))
    except OSError:
        return None  # ``dest`` was not created


def estimate_bytes(runs):
    """Disk a snapshot would add: the bytes copied plus a block per directory and per new entry."""
    return sum(r.transferred_bytes + BLOCK * (r.output.stats.get('number_of_dirs', 0) + r.output.counts['created'])
               for r in runs.values())


def take(part, plans, previous, rsync, checksums, keep_paths=0, guard=None):
    """Copy every present source into ``part`` and record it. Returns (tree records, rsync runs)."""
    watch = guard.check if guard is not None else None
    part.mkdir(TREES_DIR)
    runs, filled = {}, {}
    ordered = sorted(plans, key=lambda p: os.fsencode(p['name']))  # SHA256SUMS lines in walk order
    for plan in ordered:
        if plan['missing']:
            continue
        prev = previous.get(plan['name'])
        dest = part.path_of(os.path.join(TREES_DIR, plan['name']))
        copies = None
        if prev:
            filled[plan['name']] = prelink(plan['resolved'], prev['dir'], dest)
        else:
            copies = precopy(plan['resolved'], dest, check=watch, keep_paths=keep_paths)
            filled[plan['name']] = copies.files if copies is not None else None
        argv = snapshot_argv(rsync, plan['resolved'], dest, link_dest=prev['dir'] if prev else None,
                             prefilled=filled[plan['name']] is not None)
        run = runs[plan['name']] = run_rsync(argv, keep_paths=keep_paths, allow_vanished=True, watch=watch)
        if copies is not None:
            run.output.add_copies(copies.created, copies.paths, copies.files, copies.bytes)
        if guard is not None:
            guard.check()  # the last file may have been copied after the last report
    sums = part.create(SUMS_NAME) if checksums else None
    records = []
    try:
        for plan in ordered:
            records.append(_record(part, plan, previous.get(plan['name']), runs.get(plan['name']), sums,
                                   filled.get(plan['name'])))
    except BaseException:
        if sums is not None:
            sums.discard()
        raise
    if sums is not None:
        sums.close()
        part.add_hashed(sums)
    order = dict((p['name'], i) for i, p in enumerate(plans))
    records.sort(key=lambda r: order[r['name']])
    return records, runs


def _record(part, plan, prev, run, sums, filled=None):
    rel_dir = os.path.relpath(part.path_of(os.path.join(TREES_DIR, plan['name'])), part.builder.path)
    rec = dict(name=plan['name'], source=plan['source'], resolved=plan['resolved'], dir=rel_dir,
               missing=plan['missing'])
    if plan['missing']:
        return rec
    tree_dir = part.path_of(os.path.join(TREES_DIR, plan['name']))
    previous = None
    if prev and prev['sums']:
        previous = (prev['dir'], prev['sums'], os.fsencode('%s/%s/' % (TREES_DIR, prev['tree'])))
    prefix = os.fsencode('%s/%s/' % (TREES_DIR, plan['name']))
    tree_census, hashed, reused = record_tree(tree_dir, sums, prefix, previous)
    rec.update(
        census=tree_census,
        transferred_bytes=run.transferred_bytes,
        transferred_files=run.output.stats.get('number_of_regular_files_transferred', 0),
        changed_paths=run.changes,
        link_dest=dict((k, prev[k]) for k in ('snapshot_id', 'part', 'tree')) if prev else None,
    )
    if filled is not None:  # files the module linked (a previous tree) or copied (none) before rsync
        rec['prelinked_files' if prev else 'precopied_files'] = filled
    if sums is not None:
        rec.update(hashed_files=hashed, reused_digests=reused)
    return rec


def summary(records, sums_bytes, checksums):
    present = [r for r in records if not r['missing']]
    apparent = sum(r['census']['bytes'] for r in present)
    linked = sorted(set(r['link_dest']['snapshot_id'] for r in present if r.get('link_dest')))
    return dict(
        files=sum(r['census']['files'] for r in present),
        bytes=apparent + sums_bytes,
        apparent_bytes=apparent,
        transferred_bytes=sum(r['transferred_bytes'] for r in present),
        changed_paths=sum(r['changed_paths'] for r in present),
        trees=[r['name'] for r in records],
        missing=[r['source'] for r in records if r['missing']],
        linked_from=linked,
        checksums=checksums,
    )


def diff_lines(prefix, run):
    """Readable lines for --diff: ``+`` created, ``-`` deleted, ``~`` changed (and what changed)."""
    lines = []
    for item in run.output.paths:
        mark = {'created': '+', 'deleted': '-', 'updated': '~'}[item['change']]
        detail = ' (%s)' % ', '.join(item['details']) if item['details'] else ''
        path = prefix.rstrip('/') + '/' + ('' if item['path'] == '.' else item['path'])
        lines.append('%s %s%s' % (mark, path, detail))
    if run.changes > len(run.output.paths):
        lines.append('... and %d more under %s' % (run.changes - len(run.output.paths), prefix))
    return lines


# --- restore ---

def check_dest(dest, snapshot_root):
    """The directory a tree is restored into, resolved once: it may be a symlink to the real media
    directory (resolved here and reported); nothing below it is ever followed."""
    if not dest or not os.path.isabs(dest):
        raise SnapshotError('dest must be an absolute path, got %r' % (dest,))
    dest = os.path.normpath(dest)
    if os.path.lexists(dest):
        real = os.path.realpath(dest)
        if not os.path.isdir(real):
            raise SnapshotError('dest %s exists and is not a directory' % dest)
        probe = real
    else:
        parent = os.path.realpath(os.path.dirname(dest))
        if not os.path.isdir(parent):
            raise SnapshotError('dest %s cannot be created: its parent directory %s does not exist'
                                % (dest, os.path.dirname(dest)))
        real = os.path.join(parent, os.path.basename(dest))
        probe = parent
    refuse_overlap(real, snapshot_root, 'dest')
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SnapshotError('dest %s is not writable by this user (%s)' % (dest, probe))
    return real


def restore(rsync, tree_dir, dest, checksum=False, dry_run=False, keep_paths=0):
    return run_rsync(restore_argv(rsync, tree_dir, dest, checksum=checksum, dry_run=dry_run), keep_paths=keep_paths)


def target_differences(dest, recorded):
    """What differs between a restored directory and the census the snapshot recorded ([] if equal)."""
    found = census(dest)
    out = ['%s: %d, snapshot has %d' % (k, found[k], recorded[k]) for k in sorted(recorded)
           if k != 'listing_sha256' and k in found and found[k] != recorded[k]]
    if recorded.get('listing_sha256') and found['listing_sha256'] != recorded['listing_sha256']:
        out.append('names, types, sizes, modes, owners, mtimes or link targets differ')
    return out
