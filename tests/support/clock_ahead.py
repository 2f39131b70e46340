# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshots as a host whose clock ran ahead writes them (a VM with a bad RTC, corrected later by NTP), and
the warnings a module gives about them."""

from __future__ import annotations

import datetime
import json
import os

from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    isoformat, parse_time, write_json_atomic)

AHEAD = datetime.timedelta(days=30)


def clock_ahead(root, snapshot_id, ahead=AHEAD):
    """Re-date a real, complete snapshot as a host whose clock ran ``ahead`` writes it: the id's timestamp is that
    clock when the snapshot was begun (the same instant as the manifest's created_at), and completed_at is that
    clock when it finished. Returns the new id and the latest date the snapshot now carries (its completed_at)."""
    path = os.path.join(root, snapshot_id)
    with open(os.path.join(path, 'manifest.json'), encoding='utf-8') as f:
        m = json.load(f)
    began = datetime.datetime.strptime(snapshot_id[:16], '%Y%m%dT%H%M%SZ').replace(tzinfo=datetime.timezone.utc)
    assert abs(parse_time(m['created_at']) - began) < datetime.timedelta(seconds=2), 'an id is its created_at'
    created = parse_time(m['created_at']) + ahead
    completed = parse_time(m['completed_at']) + ahead
    new_id = created.strftime('%Y%m%dT%H%M%SZ') + snapshot_id[snapshot_id.index('-'):]
    m.update(id=new_id, created_at=isoformat(created), completed_at=isoformat(completed))
    write_json_atomic(os.path.join(path, 'manifest.json'), m)
    os.rename(path, os.path.join(root, new_id))
    return new_id, m['completed_at']


def warned(result, *words):
    """The result's warnings that hold every one of ``words`` (ansible-core 2.19 returns them as objects)."""
    texts = [w['event']['msg'] if isinstance(w, dict) else w for w in result.get('warnings', [])]
    return [w for w in texts if all(word in w for word in words)]
