# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup playbook with a shared database (window_topology shared): three hosts of one app on this machine,
each with a snapshot root and a lock of its own, one database (the demo shop's SQLite file). Only
window_primary_host dumps it; the others snapshot their media alone, or nothing; a primary host that is not in the
run, or a topology that is neither per_host nor shared, is refused before anything is written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.demo_shop import DemoShop
from support.modules import REPO, run_playbook
from test_playbooks_local import task_results

pytestmark = pytest.mark.slow

BACKUP = os.path.join(REPO, 'playbooks', 'backup.yml')
HOSTS = ('primary', 'secondary', 'apionly')


class SharedShop(object):
    """The demo shop, seen by three inventory hosts that share its database."""

    def __init__(self, root, python):
        self.root = root
        self.demo = DemoShop(os.path.join(root, 'demo'), python)
        self.inventory_path = os.path.join(root, 'inventory.yml')
        self.inventory = None

    def install(self):
        self.demo.install()
        self.demo.stop()  # a backup needs no running app
        self.inventory = self.demo.inventory()
        local = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
        self.inventory['all']['children']['django']['hosts'] = {
            name: dict(local, djangoops_snapshot_root=self.backups(name),
                       djangoops_lock_dir=os.path.join(self.root, name, 'locks')) for name in HOSTS}
        # A host with no media of its own to snapshot (an API-only one): with a shared database, nothing at all.
        self.inventory['all']['children']['django']['hosts']['apionly']['snapshot_media'] = False
        self.set(window_topology='shared', window_primary_host='primary')
        return self

    def set(self, **variables):
        self.inventory['all']['vars'].update(variables)
        with open(self.inventory_path, 'w', encoding='utf-8') as f:
            yaml.safe_dump(self.inventory, f)

    def backups(self, host):
        return os.path.join(self.root, host, 'backups')

    def run(self, args=(), **extra_vars):
        return run_playbook(BACKUP, inventory=self.inventory_path, extra_vars=extra_vars or None, args=list(args))

    def snapshots(self, host):
        """{id: sorted part names} of the host's complete snapshots; anything else in its root is listed too."""
        root = self.backups(host)
        found = {}
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            manifest = os.path.join(root, name, 'manifest.json')
            if os.path.isfile(manifest):
                with open(manifest, encoding='utf-8') as f:
                    found[name] = sorted(json.load(f)['parts'])
            else:
                found[name] = 'not a complete snapshot'
        return found

    def everything(self):
        return {host: self.snapshots(host) for host in HOSTS}


@pytest.fixture
def shop(tmp_path, django_venvs):  # noqa: F811  pylint: disable=redefined-outer-name
    s = SharedShop(str(tmp_path), os.path.join(django_venvs['5.2'], 'bin', 'python'))
    try:
        yield s.install()
    finally:
        s.demo.stop()


def test_only_the_primary_dumps_a_shared_database(shop):  # pylint: disable=redefined-outer-name
    """One dump of the shared database per backup, on the primary; the other hosts keep their media, and a host
    without media takes no snapshot but still applies the retention policy. Check mode writes nothing. A primary
    host that is not in the run, one that does not name itself, or a topology with a typo is refused, naming the
    value, before any host writes anything. An extra var -e snapshot_database=true (which wins over every other
    variable) does not make the other hosts dump it; media that window_snapshot_media leaves to the primary (a
    shared directory) is not snapshotted by the others either."""
    backup = shop.run(snapshot_database=True)
    assert backup.returncode == 0, backup.stdout[-4000:]
    taken = shop.everything()
    assert [list(taken[h].values()) for h in HOSTS] == [[['database', 'media']], [['media']], []], taken
    assert 'no snapshot on apionly: it does not dump the shared database (the primary primary does) and has no ' \
        'media (snapshot_media is false)' in backup.stdout, backup.stdout[-4000:]
    assert 'TASK [Apply the retention policy]' in backup.stdout
    assert 'apionly' in backup.stdout.split('TASK [Apply the retention policy]', 1)[1].split('TASK [', 1)[0]

    check = shop.run(args=['--check'])
    assert check.returncode == 0, check.stdout[-4000:]
    assert shop.everything() == taken

    shop.inventory['all']['children']['django']['hosts']['secondary']['window_snapshot_media'] = False
    shop.set()
    media_once = shop.run()
    assert media_once.returncode == 0, media_once.stdout[-4000:]
    assert 'no snapshot on secondary: it does not dump the shared database (the primary primary does) and has ' \
        'no media (window_snapshot_media is false)' in media_once.stdout, media_once.stdout[-4000:]
    assert len(shop.snapshots('primary')) == 2 and shop.snapshots('secondary') == taken['secondary']
    shop.inventory['all']['children']['django']['hosts']['secondary'].pop('window_snapshot_media')
    shop.set()
    taken = shop.everything()

    refusals = [
        (dict(window_primary_host='web9'),
         'and primary names window_primary_host "web9", not a host of this run (apionly, primary, secondary);'
         ' nothing was backed up'),
        (dict(window_primary_host=''), 'and primary names window_primary_host (not set), not a host of this run'),
        (dict(window_topology='Shared'), 'window_topology of primary is "Shared", neither per_host nor shared'),
    ]
    for variables, message in refusals:
        refused = shop.run(**variables)
        assert refused.returncode != 0, (variables, refused.stdout[-4000:])
        assert message in refused.stdout, (variables, refused.stdout[-4000:])
        assert shop.everything() == taken, variables

    # The secondary, not the primary, set as primary on the primary itself: no host would dump the database.
    shop.inventory['all']['children']['django']['hosts']['primary']['window_primary_host'] = 'secondary'
    shop.set()
    refused = shop.run()
    assert refused.returncode != 0, refused.stdout[-4000:]
    assert 'and apionly names window_primary_host "primary", whose own window_topology and window_primary_host ' \
        'are shared and secondary; nothing was backed up' in refused.stdout, refused.stdout[-4000:]
    assert shop.everything() == taken


RESTORE = os.path.join(REPO, 'playbooks', 'restore.yml')


class RestorableShop(SharedShop):
    """The shared-database rig, running, as the restore playbook sees it: the primary stops and starts the app
    (all three hosts are this machine: the others have no app of their own to stop), every host raises the one
    maintenance flag; the secondary keeps media of its own, apionly none."""

    def install(self):
        super().install()
        v = self.inventory['all']['vars']
        self.flag = os.path.join(self.demo.app, 'maintenance.on')
        v.update(djangoops_maintenance_flag=self.flag, djangoops_verify_http_checks=v['window_verify_http_checks'])
        hosts = self.inventory['all']['children']['django']['hosts']
        hosts['primary'].update(djangoops_app_stop_command=v['window_app_stop_command'],
                                djangoops_app_start_command=v['window_app_start_command'])
        self.media = os.path.join(self.root, 'secondary', 'media')
        os.makedirs(self.media)
        for name in ('a.txt', 'b.txt'):
            with open(os.path.join(self.media, name), 'w', encoding='utf-8') as f:
                f.write('secondary %s\n' % name)
        hosts['secondary']['snapshot_media_paths'] = [self.media]
        self.set()
        subprocess.run(v['window_app_start_command'], check=True, stdout=subprocess.DEVNULL)
        return self

    def restore(self, args=(), **extra_vars):
        return run_playbook(RESTORE, inventory=self.inventory_path,
                            extra_vars=dict(extra_vars, djangoops_restore_confirm='RESTORE'), args=list(args))

    def serving(self):
        """True when the app answers /health/ as a visitor does (no maintenance bypass)."""
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d/health/' % self.demo.port, timeout=10) as r:
                return r.status == 200 and json.loads(r.read().decode()).get('ok') is True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def media_files(self):
        return sorted(os.listdir(self.media))

    def damage(self):
        """A bad data fix: order lines gone from the shared database, a file gone from the secondary's media."""
        con = sqlite3.connect(self.demo.db)
        try:
            con.execute('DELETE FROM shop_orderline')
            con.commit()
        finally:
            con.close()
        os.unlink(os.path.join(self.media, 'b.txt'))


@pytest.fixture
def fleet(tmp_path, django_venvs):  # noqa: F811  pylint: disable=redefined-outer-name
    s = RestorableShop(str(tmp_path), os.path.join(django_venvs['5.2'], 'bin', 'python'))
    try:
        yield s.install()
    finally:
        s.demo.stop()


def test_a_shared_backup_is_restored_fleet_wide_under_one_id(fleet):  # pylint: disable=redefined-outer-name
    """A backup names one snapshot id for the whole run: the primary's dump and the secondary's media carry it
    (apionly takes none). A restore of latest on the whole fleet takes the primary's newest snapshot of the
    database - not a newer media-only snapshot of another host - and restores it on every host that holds it: the
    primary its database and media, the secondary its media; apionly, with nothing a backup would have
    snapshotted, is skipped and says so. A named id works the same without --limit. A host that lacks the id but
    has media is refused before anything changes on any host."""
    backup = fleet.run()
    assert backup.returncode == 0, backup.stdout[-4000:]
    taken = fleet.everything()
    assert [list(taken[h].values()) for h in HOSTS] == [[['database', 'media']], [['media']], []], taken
    assert list(taken['primary']) == list(taken['secondary']), 'one backup run, two snapshot ids: %s' % taken
    [snapshot] = taken['primary']
    data_at_backup = fleet.demo.data()

    # Later, the secondary's media alone: its newest snapshot is not the newest of the shared database.
    media_only = fleet.run(djangoops_hosts='secondary', snapshot_database=False)
    assert media_only.returncode == 0, media_only.stdout[-4000:]
    assert len(fleet.snapshots('secondary')) == 2

    fleet.damage()
    assert fleet.demo.data() != data_at_backup and fleet.media_files() == ['a.txt']
    restore = fleet.restore()
    assert restore.returncode == 0, restore.stdout[-6000:]
    assert task_results(restore.stdout, 'Restore the database and prove it exact') == {
        'primary': 'changed', 'secondary': 'skipping'}, restore.stdout[-6000:]
    assert task_results(restore.stdout, 'Restore the media')['secondary'] == 'changed', restore.stdout[-6000:]
    assert 'no snapshot %s on apionly: it does not restore the shared database (the primary primary does) and ' \
        'has no media (snapshot_media is false); it only stops and starts its app with the other hosts' \
        % snapshot in restore.stdout, restore.stdout[-6000:]
    assert fleet.demo.data() == data_at_backup and fleet.media_files() == ['a.txt', 'b.txt']
    assert not os.path.exists(fleet.flag) and fleet.serving()

    # The same snapshot by its id, on the whole fleet (no --limit).
    fleet.damage()
    named = fleet.restore(djangoops_snapshot_id=snapshot)
    assert named.returncode == 0, named.stdout[-6000:]
    assert fleet.demo.data() == data_at_backup and fleet.media_files() == ['a.txt', 'b.txt']
    assert not os.path.exists(fleet.flag) and fleet.serving()

    # The secondary lost that snapshot but has media to restore: refused before any host changed anything.
    fleet.damage()
    damaged = fleet.demo.data()
    os.rename(os.path.join(fleet.backups('secondary'), snapshot), os.path.join(fleet.root, 'lost'))
    for wanted in ({}, {'djangoops_snapshot_id': snapshot}):
        refused = fleet.restore(**wanted)
        assert refused.returncode != 0, (wanted, refused.stdout[-6000:])
        assert 'snapshot %s is not on secondary, which has media a backup of the shared database snapshots' \
            % snapshot in refused.stdout, (wanted, refused.stdout[-6000:])
        assert 'did not; nothing was restored on primary' in refused.stdout, refused.stdout[-6000:]
        assert fleet.demo.data() == damaged and fleet.media_files() == ['a.txt']
        assert not os.path.exists(fleet.flag) and fleet.serving()


def test_hosts_that_would_push_one_id_to_one_place_are_refused_and_per_host_ids_stay_apart(shop):  # pylint: disable=redefined-outer-name
    """A shared database's backup gives its snapshots one id on every host; pushed by several hosts to the same
    directory or prefix of one off-host store, the second push would be refused there: refused before anything is
    written, naming the place. Per host (no shared database, no djangoops_backup_id) every host's snapshot keeps an
    id of its own, as before, so hosts that share a store do not collide."""
    same = {'type': 'ssh', 'host': 'backup.invalid', 'user': 'djangoops', 'path': '/srv/backups'}
    shop.set(djangoops_offhost_remote=same)
    refused = shop.run()
    assert refused.returncode != 0, refused.stdout[-4000:]
    # apionly takes no snapshot (no media, and the primary dumps the database): it pushes none of this id
    assert 'hosts push to the same place of one off-host store (primary and secondary to ssh://djangoops@' \
        'backup.invalid:22/srv/backups), ' in refused.stdout, refused.stdout[-4000:]
    assert 'nothing was backed up' in refused.stdout
    assert shop.everything() == {host: {} for host in HOSTS}

    # The same with an id named for every host, whatever the topology.
    shop.set(window_topology='per_host')
    named = shop.run(djangoops_backup_id='nightly-1')
    assert named.returncode != 0 and 'snapshot id nightly-1 is shared by every host' in named.stdout, \
        named.stdout[-4000:]
    assert shop.everything() == {host: {} for host in HOSTS}

    # Per host, without a remote: three snapshots, three ids.
    shop.inventory['all']['vars'].pop('djangoops_offhost_remote')
    shop.set()
    backup = shop.run()
    assert backup.returncode == 0, backup.stdout[-4000:]
    ids = [name for host in HOSTS for name in shop.snapshots(host)]
    assert len(ids) == 3 and len(set(ids)) == 3, shop.everything()

    # With a shared database in batches of one host (serial): still one id for the whole run, named in the first
    # batch and taken by the later ones.
    before = shop.everything()
    shop.set(window_topology='shared')
    serial = shop.run(djangoops_serial=1)
    assert serial.returncode == 0, serial.stdout[-4000:]
    assert serial.stdout.count('PLAY [') == 3, 'not three batches'
    new = {host: sorted(set(shop.snapshots(host)) - set(before[host])) for host in HOSTS}
    assert len(new['primary']) == 1 and new['secondary'] == new['primary'] and new['apionly'] == [], new
