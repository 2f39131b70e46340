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
import sys

import pytest
import yaml

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.demo_shop import DemoShop
from support.modules import REPO, run_playbook

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
    value, before any host writes anything."""
    backup = shop.run()
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
