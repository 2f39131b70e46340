# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup, restore and deploy playbooks (and the roles they call) through ansible-playbook on localhost, on
the demo shop laid out as scripts/demo.sh lays it out (SQLite, media, gunicorn on 127.0.0.1): what a restore
checks before it stops anything, the release a backup records and a restore switches back to, check mode, the
retention rules, the lock a caller holds, booleans given as strings, play keywords set in the inventory, and a
shared-database host with nothing to snapshot."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import textwrap
import urllib.error
import urllib.request

import pytest
import yaml

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.demo_shop import DemoShop
from support.modules import REPO, run_playbook

pytestmark = pytest.mark.slow


def playbook(name):
    return os.path.join(REPO, 'playbooks', name + '.yml')


class Shop(object):
    """The demo shop, running, with an inventory for the three playbooks (restore stops and starts it)."""

    def __init__(self, root, python):
        self.demo = DemoShop(os.path.join(root, 'demo'), python)
        self.root = root
        self.inventory_path = os.path.join(root, 'inventory.yml')
        self.backups = os.path.join(self.demo.root, 'backups')
        self.current = os.path.join(self.demo.app, 'current')
        self.releases = os.path.join(self.demo.app, 'releases')
        self.flag = os.path.join(self.demo.app, 'maintenance.on')

    def install(self, **variables):
        self.demo.install()
        inventory = self.demo.inventory()
        v = inventory['all']['vars']
        v.update({'djangoops_lock_dir': v['window_lock_dir'],
                  'djangoops_maintenance_flag': self.flag,
                  'djangoops_app_stop_command': v['window_app_stop_command'],
                  'djangoops_app_start_command': v['window_app_start_command'],
                  'djangoops_verify_http_checks': v['window_verify_http_checks']})
        v.update(variables)
        with open(self.inventory_path, 'w', encoding='utf-8') as f:
            yaml.safe_dump(inventory, f)
        return self

    def run(self, name, args=(), **extra_vars):
        return run_playbook(playbook(name), inventory=self.inventory_path, extra_vars=extra_vars or None,
                            args=list(args), env={'DJANGOOPS_REPORT_DIR': os.path.join(self.root, 'reports')})

    def snapshots(self):
        return sorted(d for d in os.listdir(self.backups)
                      if os.path.isfile(os.path.join(self.backups, d, 'manifest.json'))) \
            if os.path.isdir(self.backups) else []

    def manifest(self, snapshot_id):
        with open(os.path.join(self.backups, snapshot_id, 'manifest.json'), encoding='utf-8') as f:
            return json.load(f)

    def live(self):
        return os.readlink(self.current)

    def switch(self, release):
        os.unlink(self.current)
        os.symlink(os.path.join(self.releases, release), self.current)

    def serving(self):
        """True when the app answers /health/ as a visitor does (no maintenance bypass)."""
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/health/' % self.demo.port, timeout=10) as r:
                return r.status == 200 and json.loads(r.read().decode()).get('ok') is True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def running(self):
        """True when the app's process (the one the pidfile names) is alive: not stopped."""
        try:
            with open(self.demo.pidfile, encoding='utf-8') as f:
                os.kill(int(f.read().strip()), 0)
            return True
        except (OSError, ValueError):
            return False

    def data(self):
        return self.demo.data()

    def stop(self):
        self.demo.stop()


@pytest.fixture
def shop(tmp_path, django_venvs):  # noqa: F811  pylint: disable=redefined-outer-name
    s = Shop(str(tmp_path), os.path.join(django_venvs['5.2'], 'bin', 'python'))
    try:
        yield s
    finally:
        s.stop()


def test_restore_refuses_before_it_stops_anything(shop):  # pylint: disable=redefined-outer-name
    """A snapshot id with a typo, and a snapshot whose recorded release was pruned since: both are refused
    before the maintenance flag goes up and the app stops - the app keeps serving, the code stays where it was."""
    shop.install(djangoops_release_link=shop.current)
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()
    assert shop.serving()

    # One character changed (never to itself: the id ends in a random letter or digit, 'x' one time in 36).
    mistyped = snapshot[:-1] + ('y' if snapshot.endswith('x') else 'x')
    typo = shop.run('restore', djangoops_snapshot_id=mistyped, djangoops_restore_confirm='RESTORE')
    assert typo.returncode != 0, typo.stdout[-4000:]
    assert not os.path.exists(shop.flag), 'the maintenance flag was left up'
    assert shop.serving(), 'the app was left stopped'
    assert 'failed before anything was restored' in typo.stdout, typo.stdout[-4000:]
    assert not os.listdir(os.path.join(shop.demo.root, 'locks'))

    # Release 1.0, which the snapshot recorded, is gone (window_keep_releases pruned it); 2.0 is live. (The app
    # still runs 1.0's code, so it cannot answer well now: it must merely not have been stopped.)
    shop.switch('2.0')
    shutil.move(os.path.join(shop.releases, '1.0'), os.path.join(shop.root, 'pruned-1.0'))
    gone = shop.run('restore', djangoops_snapshot_id=snapshot, djangoops_restore_confirm='RESTORE')
    assert gone.returncode != 0, gone.stdout[-4000:]
    assert shop.live() == os.path.join(shop.releases, '2.0'), 'current was switched to a release that is gone'
    assert not os.path.exists(shop.flag) and shop.running()
    assert 'recorded the release %s/1.0, which is no longer on demo-shop' % shop.releases in gone.stdout, \
        gone.stdout[-4000:]


def test_backup_records_the_release_and_restore_puts_it_back(shop):  # pylint: disable=redefined-outer-name
    """Only djangoops_app_root set (no djangoops_release_link): the backup records <app root>/current, the restore
    switches the code back, and a restore that fails after it restored leaves the maintenance flag up and says
    so."""
    shop.install()
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()
    assert shop.manifest(snapshot)['metadata']['release'] == {
        'link': shop.current, 'target': os.path.join(shop.releases, '1.0')}
    data_at_backup = shop.data()

    # A bad data fix under release 2.0.
    shop.switch('2.0')
    execute(shop.demo.db, 'DELETE FROM shop_orderline')

    restore = shop.run('restore', args=['-v'], djangoops_restore_confirm='RESTORE')
    assert restore.returncode == 0, restore.stdout[-4000:]
    assert shop.live() == os.path.join(shop.releases, '1.0'), 'the code was not switched back'
    assert shop.data() == data_at_backup
    assert not os.path.exists(shop.flag) and shop.serving()
    # The files were hashed once, by the check before the stop; the modules checked their sizes, read none.
    assert task_results(restore.stdout, "Verify the snapshot's checksums before touching anything") == {
        'demo-shop': 'ok'}, restore.stdout[-4000:]
    for task in ('Check the snapshot, the server and the client tools (check mode)',
                 'Restore the database and prove it exact', 'Restore the media'):
        assert verbose_result(restore.stdout, task)['checksums_verified'] is False, task

    # Restored, then the verification fails: nothing is undone, the flag stays up, the message says so. (The code
    # is on the recorded release already and the media equal the snapshot's: neither changed, so neither is named.)
    failing = shop.run('restore', djangoops_restore_confirm='RESTORE', verify_http_retries=1,
                       djangoops_verify_http_checks=[{'name': 'nothing listens', 'url': 'http://127.0.0.1:9/'}])
    assert failing.returncode != 0, failing.stdout[-4000:]
    assert 'failed after it restored database, at ' in failing.stdout, failing.stdout[-4000:]
    assert 'The app was started again and the maintenance flag stays up' in failing.stdout
    assert os.path.exists(shop.flag)


def test_restore_switches_the_link_the_snapshot_recorded(shop):  # pylint: disable=redefined-outer-name
    """A backup taken with another live link (djangoops_release_link) than <app root>/current: a restore run
    without djangoops_release_link switches that recorded link, not <app root>/current."""
    live = os.path.join(shop.demo.app, 'live')
    shop.install(djangoops_release_link=live)
    os.symlink(os.path.join(shop.releases, '1.0'), live)
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()
    assert shop.manifest(snapshot)['metadata']['release']['link'] == live
    os.unlink(live)
    os.symlink(os.path.join(shop.releases, '2.0'), live)
    with open(shop.inventory_path, encoding='utf-8') as f:
        inventory = yaml.safe_load(f)
    del inventory['all']['vars']['djangoops_release_link']  # djangoops_app_root stays set
    assert inventory['all']['vars']['djangoops_app_root']
    with open(shop.inventory_path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(inventory, f)
    restore = shop.run('restore', djangoops_restore_confirm='RESTORE', djangoops_snapshot_id=snapshot)
    assert restore.returncode == 0, restore.stdout[-4000:]
    assert os.readlink(live) == os.path.join(shop.releases, '1.0'), 'the recorded link was not switched back'
    assert shop.live() == os.path.join(shop.releases, '1.0')


def test_check_mode_reports_and_changes_nothing(shop):  # pylint: disable=redefined-outer-name
    """backup --check and restore --check run to the end: no snapshot written, nothing restored, the app serving."""
    shop.install(djangoops_release_link=shop.current)
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()

    check = shop.run('backup', args=['--check'])
    assert check.returncode == 0, check.stdout[-4000:]
    assert shop.snapshots() == [snapshot] and not [d for d in os.listdir(shop.backups) if d.endswith('.partial')]

    shop.switch('2.0')
    execute(shop.demo.db, 'DELETE FROM shop_orderline')
    damaged = shop.data()
    check = shop.run('restore', args=['--check'], djangoops_restore_confirm='RESTORE')
    assert check.returncode == 0, check.stdout[-4000:]
    assert shop.live() == os.path.join(shop.releases, '2.0') and shop.data() == damaged
    assert not os.path.exists(shop.flag) and shop.running()
    assert not os.listdir(os.path.join(shop.demo.root, 'locks'))


def execute(db, sql):
    con = sqlite3.connect(db)
    try:
        con.execute(sql)
        con.commit()
    finally:
        con.close()


def test_backup_applies_every_retention_rule_and_refuses_unknown_ones(shop):  # pylint: disable=redefined-outer-name
    shop.install()
    first = shop.run('backup')
    assert first.returncode == 0, first.stdout[-4000:]
    [pinned] = shop.snapshots()

    # keep_ids keeps the first snapshot although keep_last 1 alone would delete it.
    second = shop.run('backup', djangoops_retention={'keep_last': 1, 'keep_daily': 0, 'keep_weekly': 0,
                                                     'keep_monthly': 0, 'keep_labels': {}, 'keep_ids': [pinned]})
    assert second.returncode == 0, second.stdout[-4000:]
    assert len(shop.snapshots()) == 2 and pinned in shop.snapshots(), shop.snapshots()

    typo = shop.run('backup', djangoops_retention={'keep_lastt': 1})
    assert typo.returncode != 0, typo.stdout[-4000:]
    assert 'unknown retention rule(s) keep_lastt in djangoops_retention; nothing was backed up' in typo.stdout, \
        typo.stdout[-4000:]
    assert len(shop.snapshots()) == 2, 'a backup was taken although its retention rules were refused'


LOCK_HOLDER = textwrap.dedent('''
    - name: A data fix under the app's lock, with a snapshot first
      hosts: django
      gather_facts: false
      tasks:
        - name: Take the app's lock
          djangoops.maintenance.maintenance_lock:
            name: shop
            owner: datafix-1
            lock_dir: "{{ djangoops_lock_dir }}"
            purpose: data fix

        - name: Snapshot before the fix, as the lock's owner
          ansible.builtin.include_role:
            name: djangoops.maintenance.snapshot
          vars:
            snapshot_lock_owner: datafix-1
            snapshot_labels: {reason: before-data-fix}

        - name: Read the lock
          ansible.builtin.slurp:
            path: "{{ djangoops_lock_dir }}/shop.lock"
          register: held

        - name: The lock is still the data fix's
          ansible.builtin.assert:
            that: (held.content | b64decode | from_json).owner == 'datafix-1'

        - name: Release the app's lock
          djangoops.maintenance.maintenance_lock:
            name: shop
            owner: datafix-1
            lock_dir: "{{ djangoops_lock_dir }}"
            state: absent
    ''')

VERIFY = textwrap.dedent('''
    - name: Verify release 2.0, whose migration 0007 is not applied, without the checks that would see it
      hosts: django
      gather_facts: false
      tasks:
        - name: Verify
          ansible.builtin.include_role:
            name: djangoops.maintenance.verify
          vars:
            verify_django: "{{ djangoops_django | combine({'project_path': djangoops_app_root ~ '/releases/2.0'}) }}"
            verify_fail: false

        - name: Only the project was read
          ansible.builtin.assert:
            that:
              - verify_result.ok | bool
              - verify_result.checks | map(attribute='name') | list == ['django project readable']
            fail_msg: "{{ verify_result.checks | to_json }}"
    ''')


def test_snapshot_role_keeps_the_callers_lock(shop):  # pylint: disable=redefined-outer-name
    shop.install()
    book = os.path.join(shop.root, 'lock.yml')
    with open(book, 'w', encoding='utf-8') as f:
        f.write(LOCK_HOLDER)
    r = run_playbook(book, inventory=shop.inventory_path)
    assert r.returncode == 0, r.stdout[-4000:]
    assert len(shop.snapshots()) == 1


def test_verify_reads_false_strings_as_false(shop):  # pylint: disable=redefined-outer-name
    shop.install()
    book = os.path.join(shop.root, 'verify.yml')
    with open(book, 'w', encoding='utf-8') as f:
        f.write(VERIFY)
    # -e key=value: every value is a string, as AWX extra vars often are.
    r = run_playbook(book, inventory=shop.inventory_path,
                     args=['-e', 'verify_django_check=false verify_no_unapplied_migrations=false'])
    assert r.returncode == 0, r.stdout[-4000:]


def always_tasks(tmp_path, name, inventory_vars, host_vars=None, **extra_vars):
    """The playbook ``name`` on two local hosts app1 and app2 of the group django (app1 also in web), with
    ``--tags nothing``: only its always-tagged tasks - the checks before anything is done - run."""
    inventory = {'all': {'children': {
        'django': {'hosts': {'app1': {}, 'app2': {}}},
        'web': {'hosts': {'app1': {}}}},
        'vars': dict({'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable},
                     **inventory_vars)}}
    for host, variables in (host_vars or {}).items():
        inventory['all']['children']['django']['hosts'][host].update(variables)
    path = str(tmp_path / 'inventory.yml')
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(inventory, f)
    return run_playbook(playbook(name), inventory=path, args=['--tags', 'nothing'],
                        env={'DJANGOOPS_REPORT_DIR': str(tmp_path / 'reports')},
                        extra_vars=dict(extra_vars, djangoops_restore_confirm='RESTORE',
                                        djangoops_lock_dir=str(tmp_path / 'locks')))


def test_play_keywords_set_in_the_inventory_are_refused(tmp_path):
    """serial and hosts are templated before the inventory is read: djangoops_serial and djangoops_hosts in
    group_vars would be ignored without a word. The playbooks refuse them there (only the always-tagged tasks
    run here: --tags nothing)."""
    for name in ('backup', 'restore', 'deploy'):
        r = always_tasks(tmp_path, name, {'djangoops_serial': 1})
        assert r.returncode != 0, (name, r.stdout[-3000:])
        assert 'the play runs on app1, app2 in batches of 2, but djangoops_hosts is django and djangoops_serial 1' \
            in r.stdout, (name, r.stdout[-3000:])
    r = always_tasks(tmp_path, 'backup', {'djangoops_hosts': 'web'})
    assert r.returncode != 0 and 'but djangoops_hosts is web' in r.stdout, r.stdout[-3000:]
    # The same values as extra vars are what the play runs with.
    r = always_tasks(tmp_path, 'backup', {'djangoops_serial': 1}, djangoops_serial=1)
    assert r.returncode == 0, r.stdout[-3000:]
    r = always_tasks(tmp_path, 'backup', {}, djangoops_hosts='web')
    assert r.returncode == 0, r.stdout[-3000:]


def test_hosts_whose_snapshots_would_collide_off_host_are_refused_before_anything(tmp_path):
    """A window gives its snapshots one id on every host, and the backup playbook later pushes every snapshot a
    host holds to its off-host store, which refuses a second snapshot of one id in one place. So the deploy
    playbook refuses hosts that take a snapshot in the window and push to one place, before anything is done; and
    neither it nor the backup playbook counts a host of a shared database that takes no snapshot."""
    store = {'type': 'ssh', 'host': 'backup.invalid', 'user': 'djangoops', 'path': '/srv/backups'}
    window = {'window_release_version': '1.1', 'window_django': {'project_path': str(tmp_path / 'app')}}

    refused = always_tasks(tmp_path, 'deploy', {'djangoops_offhost_remote': store}, **window)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert 'a window gives its snapshots one id on every host (its run id), but hosts that take one push it to the ' \
        'same place of one off-host store (app1 and app2 to ssh://djangoops@backup.invalid:22/srv/backups), ' \
        in refused.stdout, refused.stdout[-3000:]
    assert 'nothing was done' in refused.stdout and not os.path.exists(str(tmp_path / 'locks'))

    own = {h: {'djangoops_offhost_remote': dict(store, path='/srv/backups/' + h)} for h in ('app1', 'app2')}
    apart = always_tasks(tmp_path, 'deploy', {}, own, **window)
    assert apart.returncode == 0, apart.stdout[-3000:]

    # A shared database: app2 snapshots no media, so only the primary takes a snapshot - unless app2 has media.
    shared = {'djangoops_offhost_remote': store, 'window_topology': 'shared', 'window_primary_host': 'app1'}
    quiet = always_tasks(tmp_path, 'deploy', shared, {'app2': {'window_snapshot_media': False}}, **window)
    assert quiet.returncode == 0, quiet.stdout[-3000:]
    media = always_tasks(tmp_path, 'deploy', shared, **window)
    assert media.returncode != 0 and '(app1 and app2 to ssh://djangoops@backup.invalid' in media.stdout, \
        media.stdout[-3000:]

    # The backup playbook, with a shared database, does not count a host without media either (snapshot_media, or
    # window_snapshot_media as in the window).
    for media in ({'snapshot_media': False}, {'window_snapshot_media': False}):
        backup = always_tasks(tmp_path, 'backup', shared, {'app2': media})
        assert backup.returncode == 0, (media, backup.stdout[-3000:])
    backup = always_tasks(tmp_path, 'backup', shared)
    assert backup.returncode != 0 and 'but hosts push to the same place of one off-host store (app1 and app2 to ' \
        'ssh://djangoops@backup.invalid:22/srv/backups), where' in backup.stdout, backup.stdout[-3000:]


def test_shared_database_host_without_media_takes_no_snapshot(shop):  # pylint: disable=redefined-outer-name
    """The documented shared-database setup on a host that is not the primary and snapshots no media: it has
    nothing to snapshot, says so in the report and goes on; when it rolls back it switches the release back."""
    shop.install(window_topology='shared', window_primary_host='db-primary-elsewhere', window_snapshot_media=False)
    shutil.copytree(os.path.join(shop.releases, '1.0'), os.path.join(shop.releases, '1.1'), symlinks=True)

    def report(r):
        """This host's record in the newest report (run ids begin with the time)."""
        reports = os.path.join(shop.root, 'reports')
        assert os.path.isdir(reports), r.stdout[-4000:]
        with open(os.path.join(reports, sorted(os.listdir(reports))[-1], 'report.json'), encoding='utf-8') as f:
            return json.load(f)['hosts']['demo-shop']

    good = shop.run('deploy', window_release_version='1.1')
    assert good.returncode == 0, good.stdout[-4000:]
    host = report(good)
    assert host['snapshot']['state'] == 'skipped' and host['snapshot']['id'] is None, host['snapshot']
    assert 'holds neither the database' in host['snapshot']['reason'], host['snapshot']
    assert [p['detail'] for p in host['phases'] if p['name'] == 'snapshot'][0].startswith('no snapshot: ')
    assert shop.live() == os.path.join(shop.releases, '1.1') and shop.snapshots() == []

    # Release 2.0's migration is the primary's to run: here it stays unapplied, the verification fails, and the
    # host goes back to 1.1 by its link alone.
    bad = shop.run('deploy', window_release_version='2.0')
    assert bad.returncode != 0, bad.stdout[-4000:]
    host = report(bad)
    assert host['status'] == 'restored' and host['error'].startswith('verify: '), host
    assert host['restored']['release'] is True and host['restored']['database'] is False, host['restored']
    assert shop.live() == os.path.join(shop.releases, '1.1') and not os.path.exists(shop.flag)

    # As the primary it dumps the database, and its media stays out of the snapshot even when an extra var asks for
    # media (-e snapshot_media=true, which wins over every variable the window gives the snapshot role).
    with open(shop.inventory_path, encoding='utf-8') as f:
        inventory = yaml.safe_load(f)
    inventory['all']['vars']['window_primary_host'] = 'demo-shop'
    with open(shop.inventory_path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(inventory, f)
    shutil.copytree(os.path.join(shop.releases, '1.0'), os.path.join(shop.releases, '1.2'), symlinks=True)
    primary = shop.run('deploy', window_release_version='1.2', snapshot_media=True)
    assert primary.returncode == 0, primary.stdout[-4000:]
    assert len(shop.snapshots()) == 1, shop.snapshots()
    parts = shop.manifest(shop.snapshots()[0])['parts']
    assert 'database' in parts and 'media' not in parts, sorted(parts)


def task_results(stdout, task):
    """{host: 'ok'|'changed'|'skipping'|...} of the task named ``task`` in ansible-playbook's output."""
    results, inside = {}, False
    for line in stdout.splitlines():
        if line.startswith('TASK ['):
            inside = line[6:].split(']')[0].split(' : ')[-1] == task
        elif inside and line.split(':')[0] in ('ok', 'changed', 'skipping', 'fatal') and '[' in line:
            results[line.split('[', 1)[1].split(']')[0]] = line.split(':')[0]
    return results


def verbose_result(stdout, task):
    """The result ansible-playbook -v printed for the (one host's) task named ``task``."""
    inside = False
    for line in stdout.splitlines():
        if line.startswith('TASK ['):
            inside = line[6:].split(']')[0].split(' : ')[-1] == task
        elif inside and ' => {' in line:
            return json.loads(line.split(' => ', 1)[1])
    raise AssertionError('no result of %r in the output' % task)


def test_shared_database_is_restored_by_the_primary_alone(shop):  # pylint: disable=redefined-outer-name
    """Two hosts of one shared-database app (here both on this machine, with a snapshot root and a lock of their
    own): the restore playbook restores the database and the media once, on window_primary_host, and refuses a
    run without the primary."""
    shop.install(window_topology='shared', window_primary_host='primary')
    with open(shop.inventory_path, encoding='utf-8') as f:
        inventory = yaml.safe_load(f)
    django = inventory['all']['children']['django']
    local = django['hosts'].pop('demo-shop')
    django['hosts'] = {'primary': dict(local), 'secondary': dict(
        local, djangoops_snapshot_root=os.path.join(shop.root, 'secondary', 'backups'),
        djangoops_lock_dir=os.path.join(shop.root, 'secondary', 'locks'),
        djangoops_app_stop_command=[], djangoops_app_start_command=[], window_snapshot_media=False)}
    with open(shop.inventory_path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(inventory, f)

    # The secondary snapshots no media (window_snapshot_media false: media in a shared directory) and does not dump
    # the shared database: it takes no snapshot.
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    assert 'no snapshot on secondary: it does not dump the shared database (the primary primary does) and has no ' \
        'media (window_snapshot_media is false)' in backup.stdout, backup.stdout[-4000:]
    assert not os.path.exists(os.path.join(shop.root, 'secondary', 'backups')) and len(shop.snapshots()) == 1
    data_at_backup = shop.data()
    execute(shop.demo.db, 'DELETE FROM shop_orderline')

    alone = shop.run('restore', djangoops_hosts='secondary', djangoops_restore_confirm='RESTORE')
    assert alone.returncode != 0, alone.stdout[-4000:]
    assert 'the primary host primary restores it' in alone.stdout, alone.stdout[-4000:]
    assert shop.data() != data_at_backup

    restore = shop.run('restore', djangoops_restore_confirm='RESTORE')
    assert restore.returncode == 0, restore.stdout[-4000:]
    assert task_results(restore.stdout, 'Restore the database and prove it exact') == {
        'primary': 'changed'}, restore.stdout[-6000:]
    assert 'no snapshot %s on secondary: it does not restore the shared database (the primary primary does) and ' \
        'has no media (window_snapshot_media is false); it only stops and starts its app' % shop.snapshots()[0] \
        in restore.stdout, restore.stdout[-6000:]
    assert shop.data() == data_at_backup
    assert not os.path.exists(shop.flag) and shop.serving()

    # An extra var wins over every other variable: -e restore_database=true must still not make the secondary
    # restore the shared database too.
    forced = shop.run('restore', djangoops_restore_confirm='RESTORE', restore_database=True)
    assert forced.returncode == 0, forced.stdout[-4000:]
    assert task_results(forced.stdout, 'Restore the database and prove it exact') == {
        'primary': 'changed'}, forced.stdout[-6000:]

    # The secondary cannot stop its app: the shared database is not restored under it, and the primary's app
    # is started again, its flag lowered.
    execute(shop.demo.db, 'DELETE FROM shop_orderline')
    changed = shop.data()
    django['hosts']['secondary']['djangoops_app_stop_command'] = ['false']
    with open(shop.inventory_path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(inventory, f)
    stuck = shop.run('restore', djangoops_restore_confirm='RESTORE')
    assert stuck.returncode != 0, stuck.stdout[-4000:]
    assert 'and secondary could not stop it; nothing was restored on primary' in stuck.stdout, stuck.stdout[-6000:]
    assert shop.data() == changed, 'the shared database was restored while an app using it still ran'
    assert not os.path.exists(shop.flag) and shop.serving()


def test_a_flag_already_up_stays_up_when_the_restore_fails_before_it_changed_anything(shop):  # noqa: E501 pylint: disable=redefined-outer-name
    """A failed window left the site in maintenance; a restore that then fails before it changed anything (the
    app's stop command fails) must not lower a flag it did not raise, nor start the app it did not stop."""
    shop.install(djangoops_release_link=shop.current, djangoops_app_stop_command=['false'])
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    with open(shop.flag, 'w', encoding='utf-8') as f:
        f.write('left by a failed window\n')
    failed = shop.run('restore', djangoops_restore_confirm='RESTORE')
    assert failed.returncode != 0, failed.stdout[-4000:]
    assert 'failed before anything was restored' in failed.stdout, failed.stdout[-4000:]
    assert 'the maintenance flag lowered' not in failed.stdout
    assert os.path.exists(shop.flag), 'the restore lowered a flag it had not raised'
