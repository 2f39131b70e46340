# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The media modules through ansible-playbook (AnsiballZ packaging of every module_utils they need),
with --check and --diff as an operator runs them."""

from __future__ import annotations

import os
import textwrap

from support.media_tree import describe, make_rich_tree
from support.modules import run_playbook

PLAYBOOK = textwrap.dedent('''
    - name: Media snapshot, damage, restore, prune
      hosts: localhost
      connection: local
      gather_facts: false
      vars:
        root: "{{ snapshot_root }}"
      tasks:
        - name: Snapshot
          djangoops.maintenance.media_snapshot:
            src: "{{ media }}"
            snapshot_root: "{{ root }}"
            checksums: true
            labels:
              pinned: true
          register: snap

        - name: Second snapshot, nothing changed
          djangoops.maintenance.media_snapshot:
            src: "{{ media }}"
            snapshot_root: "{{ root }}"
          register: snap2

        - name: A bad deploy deletes a file
          ansible.builtin.file:
            path: "{{ media }}/docs/annual report  final .pdf"
            state: absent

        - name: What would a restore change?
          djangoops.maintenance.media_restore:
            snapshot_root: "{{ root }}"
            snapshot_id: "{{ snap.snapshot_id }}"
          check_mode: true
          diff: true
          register: would

        - name: Restore
          djangoops.maintenance.media_restore:
            snapshot_root: "{{ root }}"
            snapshot_id: "{{ snap.snapshot_id }}"
          register: restored

        - name: Sizes after hard links
          djangoops.maintenance.snapshot_info:
            snapshot_root: "{{ root }}"
            verify: true
          register: info

        - name: Keep only the last one (the pinned first one stays too)
          djangoops.maintenance.snapshot_prune:
            snapshot_root: "{{ root }}"
            keep_last: 1
          register: pruned

        - name: Check what happened
          ansible.builtin.assert:
            that:
              - snap is changed and snap2 is changed
              - snap2.trees[0].link_dest.snapshot_id == snap.snapshot_id
              - snap2.transferred_bytes == 0
              - would is changed and would.trees[0].created == 1
              - restored is changed and restored.trees[0].target_verified
              - info.damaged == []
              - info.snapshots[1].parts.media.exclusive_disk_bytes < info.snapshots[1].parts.media.disk_bytes
              - pruned is not changed
              - pruned.kept | map(attribute='id') | list == [snap2.snapshot_id, snap.snapshot_id]
''')


def test_playbook_with_check_and_diff(tmp_path):
    media = make_rich_tree(str(tmp_path / 'media'))
    original = describe(media)
    book = tmp_path / 'play.yml'
    book.write_text(PLAYBOOK)
    p = run_playbook(str(book), extra_vars=dict(media=media, snapshot_root=str(tmp_path / 'snaps')),
                     args=['--diff'])
    assert p.returncode == 0, p.stdout[-6000:]
    # the diff of the check-mode restore names the file that would come back
    assert '+ %s/docs/annual report  final .pdf' % media in p.stdout
    assert describe(media) == original
    assert os.path.isdir(tmp_path / 'snaps')
