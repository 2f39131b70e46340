# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: removing snapshots so that no state in between looks complete.

A complete snapshot is first renamed to ``<id>.partial`` (one atomic step; from then on it is an
incomplete snapshot to every reader), then its files are removed. A crash midway leaves a partial
that the next prune removes, never a complete-looking snapshot with files missing.
"""

from __future__ import annotations

import datetime
import os

from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    BEGUN_FILE, PARTIAL_SUFFIX, PARTS_DIR, SnapshotError, fsync_dir, parse_time, remove_tree)


def delete_snapshot(store, snapshot_id):
    path = store.path_of(snapshot_id)
    doomed = store.partial_path(snapshot_id)
    if os.path.lexists(doomed):
        raise SnapshotError('cannot delete snapshot %s: %s exists' % (snapshot_id, doomed))
    os.rename(path, doomed)
    fsync_dir(store.root)
    remove_tree(doomed)


def partial_activity(path):
    """The last sign of life of a partial snapshot: when it was begun, or when its top directory or its
    part records last changed (media copies keep their sources' old mtimes, so files tell nothing)."""
    times = []
    try:
        with open(os.path.join(path, PARTS_DIR, BEGUN_FILE), encoding='utf-8') as f:
            times.append(parse_time(f.read().strip()).timestamp())
    except (OSError, ValueError):
        pass
    for p in (path, os.path.join(path, PARTS_DIR)):
        try:
            times.append(os.lstat(p).st_mtime)
        except OSError:
            pass
    return datetime.datetime.fromtimestamp(max(times), datetime.timezone.utc)


def pull_lock_path(root, snapshot_id):
    """The lock file a pull of ``snapshot_id`` into ``root`` holds (flock) from its start to its rename."""
    return os.path.join(root, '.%s.pull-lock' % snapshot_id)


def flock_held(path, locks='/proc/locks'):
    """True when some process holds a flock on ``path``, read from the kernel's lock table without taking the lock
    (taking it, even shared and for a moment, could make a pull starting then fail as if another one ran). False
    when the file does not exist or the table cannot be read."""
    try:
        st = os.stat(path, follow_symlinks=False)
        with open(locks, encoding='ascii', errors='replace') as f:
            table = f.read()
    except OSError:
        return False
    dev_ino = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == 'FLOCK' and '->' not in fields and fields[5] == dev_ino:
            return True
    return False


def pull_in_flight(root, partial_name):
    """True when ``partial_name`` (``<id>.partial``) is the copy of a pull still running: it holds the pull lock
    until it has checked every file and renamed the copy, however long that check takes."""
    if not partial_name.endswith(PARTIAL_SUFFIX):
        return False
    return flock_held(pull_lock_path(root, partial_name[:-len(PARTIAL_SUFFIX)]))
