# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/backup.yml (online snapshots with retention, under the app's lock) and
playbooks/restore.yml (guarded restore of a named or the latest snapshot) on rig hosts, and the
window's 'reverse' rollback strategy."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.fleet_app import FleetApp, build_releases, read_report, write_inventory


@pytest.fixture(scope='module')
def releases(tmp_path_factory, django_venvs):  # pylint: disable=redefined-outer-name,unused-argument
    return build_releases(str(tmp_path_factory.mktemp('releases') / 'releases'))


HOLD_LOCK = """---
- name: Hold or free the app's lock as another owner
  hosts: h1
  gather_facts: false
  tasks:
    - name: The lock
      djangoops.maintenance.maintenance_lock:
        name: "{{ djangoops_lock_name | default('django') }}"
        owner: "{{ owner }}"
        lock_dir: "{{ djangoops_lock_dir | default('/var/lib/djangoops/locks') }}"
        state: "{{ lock_state }}"
"""


def complete_snapshots(host):
    root = os.path.join(host.srv, 'backups')
    return sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, 'manifest.json'))) \
        if os.path.isdir(root) else []


def test_backup_then_guarded_restore(make_rig, releases, tmp_path):
    rig = make_rig(2)
    app = FleetApp(rig, releases)
    for h in rig.hosts:
        app.install(h)
    gv = app.group_vars({'djangoops_retention': {'keep_last': 2, 'keep_daily': 0, 'keep_weekly': 0,
                                                 'keep_monthly': 0, 'keep_labels': {'pinned': 'true'}},
                         'djangoops_release_link': '/srv/shop/current',
                         'djangoops_exclude_table_data': ['django_session'],
                         'djangoops_maintenance_flag': '/srv/shop/maintenance.on',
                         'djangoops_app_stop_command': '{{ window_app_stop_command }}',
                         'djangoops_app_start_command': '{{ window_app_start_command }}'})
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1', 'h2'], gv)
    h1 = rig['h1']

    for n in range(3):
        r = rig.playbook('djangoops.maintenance.backup', extra_vars={'djangoops_hosts': 'django'}, inventory=inv)
        assert r.rc == 0, r.output[-5000:]
    for h in rig.hosts:
        snaps = complete_snapshots(h)
        assert len(snaps) == 2, snaps  # keep_last 2
        with open(os.path.join(h.srv, 'backups', snaps[-1], 'manifest.json'), encoding='utf-8') as f:
            m = json.load(f)
        assert sorted(m['parts']) == ['database', 'media'] and m['labels']['reason'] == 'scheduled-backup'
        assert m['metadata']['django']['applied_migrations']['shop'][-1] == '0006_product_slug'
        assert m['metadata']['release']['target'] == '/srv/shop/releases/1.0'
        # djangoops_exclude_table_data reaches db_snapshot through the snapshot role
        assert m['parts']['database']['excluded_table_data'] == ['django_session']
        assert m['parts']['database']['tables']['django_session']['data_excluded'] is True
        assert app.health(h, bypass=False)[0] == 200, 'an online backup takes no downtime'
        assert not os.listdir(os.path.join(h.srv, 'locks'))
    wanted = complete_snapshots(h1)[-1]
    state_at_backup = app.state(h1)

    # A restore holds the app's lock: the retention policy waits for another run rather than delete the
    # snapshot the restore may be reading.
    holder = str(tmp_path / 'hold.yml')
    with open(holder, 'w', encoding='utf-8') as f:
        f.write(HOLD_LOCK)
    held = rig.playbook(holder, inventory=inv, extra_vars={'owner': 'restore-elsewhere', 'lock_state': 'present'})
    assert held.rc == 0, held.output[-3000:]
    strict = {'djangoops_hosts': 'h1', 'djangoops_retention': {'keep_last': 1, 'keep_daily': 0, 'keep_weekly': 0,
                                                               'keep_monthly': 0, 'keep_labels': {}}}
    r = rig.playbook('djangoops.maintenance.backup', inventory=inv, extra_vars=strict, extra_args=['--tags', 'prune'])
    assert r.rc != 0 and 'is held by restore-elsewhere' in r.output, r.output[-5000:]
    assert len(complete_snapshots(h1)) == 2, 'nothing pruned under a held lock'
    freed = rig.playbook(holder, inventory=inv, extra_vars={'owner': 'restore-elsewhere', 'lock_state': 'absent'})
    assert freed.rc == 0, freed.output[-3000:]

    # Damage h1: data, media, and a switched release.
    con = sqlite3.connect(app.local(h1, 'shared', 'db.sqlite3'))
    con.execute('DELETE FROM shop_orderline')
    con.commit()
    con.close()
    images = app.local(h1, 'shared', 'media', 'products')
    os.unlink(os.path.join(images, sorted(os.listdir(images))[0]))
    os.unlink(app.local(h1, 'current'))
    os.symlink('/srv/shop/releases/2.0', app.local(h1, 'current'))

    refused = rig.playbook('djangoops.maintenance.restore', inventory=inv,
                           extra_vars={'djangoops_hosts': 'h1', 'djangoops_snapshot_id': wanted})
    assert refused.rc != 0 and 'djangoops_restore_confirm=RESTORE' in refused.output
    assert app.state(h1) != state_at_backup, 'refused: nothing was touched'

    # Another run of the same restore holds the app's lock (the owner name that every run of it had before
    # each run got its own): this run is refused, not told it already holds the lock.
    held = rig.playbook(holder, inventory=inv, extra_vars={'owner': 'restore-%s' % wanted, 'lock_state': 'present'})
    assert held.rc == 0, held.output[-3000:]
    r = rig.playbook('djangoops.maintenance.restore', inventory=inv,
                     extra_vars={'djangoops_hosts': 'h1', 'djangoops_snapshot_id': wanted,
                                 'djangoops_restore_confirm': 'RESTORE'})
    assert r.rc != 0 and 'is held by restore-%s' % wanted in r.output, r.output[-5000:]
    assert app.state(h1) != state_at_backup, 'refused: nothing was touched'
    freed = rig.playbook(holder, inventory=inv, extra_vars={'owner': 'restore-%s' % wanted, 'lock_state': 'absent'})
    assert freed.rc == 0, freed.output[-3000:]

    r = rig.playbook('djangoops.maintenance.restore', inventory=inv,
                     extra_vars={'djangoops_hosts': 'h1', 'djangoops_snapshot_id': wanted,
                                 'djangoops_restore_confirm': 'RESTORE'})
    assert r.rc == 0, r.output[-5000:]
    assert app.state(h1) == state_at_backup
    assert app.health(h1, bypass=False)[0] == 200 and not app.in_maintenance(h1)

    # A damaged snapshot is refused before anything is touched.
    dump = os.path.join(h1.srv, 'backups', wanted, 'database')
    victim = os.path.join(dump, os.listdir(dump)[0])
    with open(victim, 'r+b') as f:
        f.seek(10)
        f.write(b'\x00\x01\x02')
    os.unlink(app.local(h1, 'current'))
    os.symlink('/srv/shop/releases/2.0', app.local(h1, 'current'))
    r = rig.playbook('djangoops.maintenance.restore', inventory=inv,
                     extra_vars={'djangoops_hosts': 'h1', 'djangoops_snapshot_id': wanted,
                                 'djangoops_restore_confirm': 'RESTORE'})
    assert r.rc != 0 and 'is damaged, nothing was restored' in r.output
    assert app.live_release(h1) == '/srv/shop/releases/2.0'


def test_reverse_strategy_migrates_back_when_it_is_safe(make_rig, releases, tmp_path):
    rig = make_rig(1)
    app = FleetApp(rig, releases)
    h1 = rig['h1']
    app.install(h1)
    gv = app.group_vars({'window_rollback_strategy': 'reverse'})
    broken = gv['window_verify_http_checks'] + [{
        'name': 'only the old release passes', 'url': 'http://{{ ansible_host }}:8000/health/',
        'headers': {'X-Djangoops-Bypass': 'fleet-bypass-token'}, 'contains': '"applied_migrations": 24'}]
    gv['window_verify_http_checks'] = broken
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1'], gv)
    report_dir = str(tmp_path / 'reports')
    os.makedirs(report_dir)
    # 0007 (AddField + a RunPython with a no-op reverse) can be migrated back without loss.
    r = rig.playbook('djangoops.maintenance.deploy', inventory=inv, env={'DJANGOOPS_REPORT_DIR': report_dir},
                     extra_vars={'djangoops_hosts': 'django', 'window_release_version': '2.0'})
    assert r.rc != 0
    rec = read_report(report_dir)['hosts']['h1']
    assert rec['status'] == 'reversed', json.dumps({k: rec[k] for k in ('status', 'error', 'phases', 'restored') if k in rec}, indent=1)
    assert rec['restored']['reversed_migrations'] is True and rec['restored']['database'] is False
    assert app.live_release(h1) == '/srv/shop/releases/1.0'
    status, body = app.health(h1, bypass=False)
    assert status == 200 and body['applied_migrations'] == 24
    assert any('migrated back: shop' in p.get('detail', '') for p in rec['phases'])
    print('phases', [(p['name'], p['start'], p['end']) for p in rec['phases']])
