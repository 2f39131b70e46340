# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The retention rules, shared by snapshot_prune (local) and snapshot_remote_prune (off-host).
    DOCUMENTATION = r'''
options:
  keep_last:
    description: Keep the N most recent snapshots.
    type: int
  keep_within:
    description:
      - Keep every snapshot taken within this duration before now - a number and a unit (C(s), C(m), C(h), C(d),
        C(w)), for example V(36h), V(7d), V(2w), V(1w3d).
    type: str
  keep_hourly:
    description: Keep the newest snapshot of each of the N most recent hours that have one.
    type: int
  keep_daily:
    description: Keep the newest snapshot of each of the N most recent days (UTC) that have one.
    type: int
  keep_weekly:
    description: Keep the newest snapshot of each of the N most recent ISO weeks that have one.
    type: int
  keep_monthly:
    description: Keep the newest snapshot of each of the N most recent months that have one.
    type: int
  keep_yearly:
    description: Keep the newest snapshot of each of the N most recent years that have one.
    type: int
  keep_labels:
    description:
      - Pins - snapshots whose labels match are always kept.
      - A list of label names keeps snapshots that have any of those labels, whatever the value (V([pinned])).
      - 'A dict keeps snapshots whose label has the given value, or one of a list of values; V(null) or V(*) means
        any value (V({pinned: "true", release: [v1.0, v2.0]})).'
      - "Values compare case-insensitively, so a label set with YAML C(pinned: true) (stored as V(True)) matches
        V(true)."
    type: raw
    default: {pinned: 'true'}
  keep_ids:
    description: Ids of snapshots to keep whatever the rules say.
    type: list
    elements: str
    default: []
  partial_max_age:
    description:
      - Age (since an incomplete snapshot or copy was begun or last changed) after which it is considered
        abandoned and removed when O(remove_partials=true). Set it above the longest time a snapshot (or a push)
        takes to write. Same syntax as O(keep_within).
    type: str
    default: 1d
'''
