# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Where snapshots live, shared by every module that reads or writes them.
    DOCUMENTATION = r'''
options:
  snapshot_root:
    description:
      - Absolute path of the directory that holds the snapshots, one directory per snapshot.
      - Created with mode 0700 when missing. Snapshot files are 0600.
    type: path
    required: true
notes:
  - A snapshot is a directory C(<snapshot_root>/<id>/) whose C(manifest.json) lists every file with its size and
    sha256. It is written as C(<id>.partial) and renamed only after the manifest is written and everything is
    fsynced, so a snapshot interrupted by a crash, a full disk or a killed tool never looks complete.
'''

    # Options of modules that write a part into a snapshot.
    WRITE = r'''
options:
  snapshot_id:
    description:
      - Id of the snapshot to write into. Omit to start a new snapshot with a generated id (UTC timestamp plus a
        random suffix).
      - When a snapshot with this id is being written (C(<id>.partial) exists, another task started it with
        O(finalize=false)), this task adds its part to it.
      - Letters, digits, C(.), C(_) and C(-); anything that could leave O(snapshot_root) is refused.
    type: str
  finalize:
    description:
      - Write the manifest and mark the snapshot complete after this task.
      - Set V(false) when more parts (database, media, fixtures) follow under the same O(snapshot_id); the last task
        finalizes, or M(djangoops.maintenance.snapshot_finalize) does.
    type: bool
    default: true
  labels:
    description:
      - Labels stored in the manifest when this task finalizes the snapshot (for example C(release), C(reason), or
        C(pinned), which M(djangoops.maintenance.snapshot_prune) keeps by default).
    type: dict
    default: {}
'''

    # Options of modules that read a snapshot.
    READ = r'''
options:
  snapshot_id:
    description:
      - Id of the snapshot to use, or V(latest) for the most recently completed one.
      - Defaults to V(latest) when O(snapshot_path) is not given either.
    type: str
  snapshot_path:
    description:
      - Path of the snapshot directory; it must be a snapshot directly under O(snapshot_root).
    type: path
'''
