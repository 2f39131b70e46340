# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/backup.yml with encryption and an off-host store (a rig host as SSH backup host), then
playbooks/restore.yml on another host that never had the snapshot: it pulls it from the store, decrypts
and restores it, and the app's data, media and release equal the original's at backup time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.fleet_app import FleetApp, build_releases, write_inventory


@pytest.fixture(scope='module')
def releases(tmp_path_factory, django_venvs):  # pylint: disable=redefined-outer-name,unused-argument
    return build_releases(str(tmp_path_factory.mktemp('releases') / 'releases'))


def test_encrypted_backup_off_host_then_restore_on_a_host_that_never_had_it(make_rig, releases, tmp_path):
    rig = make_rig(3)
    app = FleetApp(rig, releases)
    h1, h2, backup = rig.hosts
    for h in (h1, h2):
        app.install(h)
    key = str(tmp_path / 'identity.txt')
    subprocess.run(['age-keygen', '-o', key], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(key, encoding='ascii') as f:
        identity = f.read()
    recipient = [x.split(': ')[1] for x in identity.splitlines() if x.startswith('# public key:')][0]
    remote = {'type': 'ssh', 'host': backup.address, 'user': 'root', 'ssh_key': rig.private_key,
              'path': '/srv/offhost/{{ offhost_origin | default(inventory_hostname) }}',
              'host_key_checking': 'no', 'known_hosts': '/dev/null', 'io_timeout': 10}
    gv = app.group_vars({'djangoops_retention': {'keep_last': 2, 'keep_daily': 0, 'keep_weekly': 0,
                                                 'keep_monthly': 0},
                         'djangoops_offhost_retention': {'keep_last': 1, 'keep_daily': 0, 'keep_weekly': 0,
                                                         'keep_monthly': 0},
                         'djangoops_encrypt_recipients': [recipient],
                         'djangoops_offhost_remote': remote,
                         'djangoops_release_link': '/srv/shop/current',
                         'djangoops_maintenance_flag': '/srv/shop/maintenance.on',
                         'djangoops_app_stop_command': '{{ window_app_stop_command }}',
                         'djangoops_app_start_command': '{{ window_app_start_command }}'})
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1', 'h2'], gv)

    # h1's data differs from h2's, so a restore on h2 has something to prove.
    con = sqlite3.connect(app.local(h1, 'shared', 'db.sqlite3'))
    con.execute('DELETE FROM shop_orderline WHERE id % 2 = 0')
    con.commit()
    con.close()
    for dummy in range(2):
        r = rig.playbook('djangoops.maintenance.backup', extra_vars={'djangoops_hosts': 'h1'}, inventory=inv)
        assert r.rc == 0, r.output[-5000:]
    stored = os.path.join(backup.srv, 'offhost', 'h1')
    remote_ids = sorted(os.listdir(stored))
    assert len(remote_ids) == 1, remote_ids  # djangoops_offhost_retention keep_last 1
    wanted = remote_ids[0]
    with open(os.path.join(stored, wanted, 'manifest.json'), encoding='utf-8') as f:
        manifest = json.load(f)
    assert manifest['parts']['database']['encryption']['recipients'] == [recipient]
    assert manifest['parts']['media']['format'] == 'archive'
    state_at_backup = app.state(h1)
    assert app.state(h2) != state_at_backup
    assert not os.path.isdir(os.path.join(h2.srv, 'backups')) or wanted not in os.listdir(
        os.path.join(h2.srv, 'backups'))

    r = rig.playbook('djangoops.maintenance.restore', inventory=inv,
                     extra_vars={'djangoops_hosts': 'h2', 'djangoops_snapshot_id': wanted, 'offhost_origin': 'h1',
                                 'djangoops_restore_from_remote': True, 'djangoops_restore_confirm': 'RESTORE',
                                 'djangoops_decrypt_identity_content': identity})
    assert r.rc == 0, r.output[-6000:]
    assert identity.strip().splitlines()[-1] not in r.output
    after = app.state(h2)
    assert after == state_at_backup
    assert app.health(h2, bypass=False)[0] == 200 and not app.in_maintenance(h2)
