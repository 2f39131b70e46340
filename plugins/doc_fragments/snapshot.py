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
