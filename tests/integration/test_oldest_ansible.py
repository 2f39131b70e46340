# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy playbook with the OLDEST ansible-core the collection claims to support (meta/runtime.yml
``requires_ansible``) as the controller. Every other test runs on the ansible-core of tests/requirements.txt;
this one keeps the claim honest: on the demo shop (SQLite, media, gunicorn on localhost), a good release
migrates, a bad one is restored to exactly the data it had, and neither run prints a warning."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from support.demo_shop import DemoShop
from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.modules import REPO, run_playbook

pytestmark = pytest.mark.slow

OLDEST_VENV = os.path.join(REPO, '.build', 'ansible-oldest')


@pytest.fixture(scope='module')
def oldest_ansible():
    """The venv scripts/bootstrap.sh keeps for tests/requirements-oldest-ansible.txt (made if missing)."""
    subprocess.run(['bash', '-c', 'source scripts/bootstrap.sh && ensure_oldest_ansible_venv'], cwd=REPO, check=True)
    return os.path.join(OLDEST_VENV, 'bin')


def core_version(bindir):
    out = subprocess.run([os.path.join(bindir, 'ansible-playbook'), '--version'], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    match = re.search(r'\[core (\d+)\.(\d+)\.(\d+)', out)
    assert match, out
    return tuple(int(n) for n in match.groups())


def test_the_second_controller_is_the_claimed_minimum(oldest_ansible):  # pylint: disable=redefined-outer-name
    with open(os.path.join(REPO, 'meta', 'runtime.yml'), encoding='utf-8') as f:
        claim = yaml.safe_load(f)['requires_ansible']
    minimum = re.fullmatch(r'>=(\d+)\.(\d+)(?:\.\d+)?', claim)
    assert minimum, 'requires_ansible %r is not a plain minimum' % claim
    # The same major.minor series as the claim: a newer series here would test nothing the others do not.
    assert core_version(oldest_ansible)[:2] == (int(minimum.group(1)), int(minimum.group(2)))
    # and really older than the main controller's
    assert core_version(oldest_ansible) < core_version(os.path.dirname(sys.executable))


def deploy(bindir, inventory, release, reports):
    return run_playbook('djangoops.maintenance.deploy', inventory=inventory, bindir=bindir, timeout=900,
                        extra_vars={'window_release_version': release}, env={'DJANGOOPS_REPORT_DIR': reports})


def newest_report(reports):
    # run ids start with a UTC timestamp and a random suffix: the newest is the only one not seen before
    runs = sorted(os.listdir(reports))
    with open(os.path.join(reports, runs[-1], 'report.json'), encoding='utf-8') as f:
        return runs, json.load(f)


def warnings_in(output):
    return [line for line in output.splitlines() if re.match(r'\[(DEPRECATION )?WARNING\]', line)]


def test_good_and_bad_release_with_the_oldest_ansible_core(tmp_path, oldest_ansible, django_venvs):  # noqa: F811  pylint: disable=redefined-outer-name
    shop = DemoShop(str(tmp_path / 'demo'), os.path.join(django_venvs['5.2'], 'bin', 'python'))
    reports = str(tmp_path / 'reports')
    inventory = str(tmp_path / 'inventory.yml')
    try:
        shop.install()
        with open(inventory, 'w', encoding='utf-8') as f:
            yaml.safe_dump(shop.inventory(), f)

        good = deploy(oldest_ansible, inventory, '2.0', reports)
        assert good.returncode == 0, good.stdout[-4000:]
        runs, report = newest_report(reports)
        host = report['hosts']['demo-shop']
        assert len(runs) == 1 and report['ok'] is True and report['release'] == '2.0', report
        assert host['status'] == 'migrated' and host['migrations_applied'] == ['shop.0007_order_priority'], host
        assert host['verification']['ok'] is True and host['snapshot']['id'], host
        assert os.readlink(shop.live).endswith('/releases/2.0')
        assert warnings_in(good.stdout) == [], warnings_in(good.stdout)
        data_after_good = shop.data()

        bad = deploy(oldest_ansible, inventory, '3.0', reports)
        assert bad.returncode != 0, bad.stdout[-4000:]
        runs, report = newest_report(reports)
        host = report['hosts']['demo-shop']
        assert len(runs) == 2 and report['ok'] is False and report['summary'] == {'restored': ['demo-shop']}, report
        assert host['status'] == 'restored' and 'shop.0008_bad_release' in host['error'], host.get('error')
        assert host['restored']['database'] is True and host['restored']['release'] is True, host['restored']
        assert host['verification_restored']['ok'] is True, host['verification_restored']
        assert warnings_in(bad.stdout) == [], warnings_in(bad.stdout)
        # restored: the data, the live release, no maintenance flag left behind
        assert shop.data() == data_after_good
        assert os.readlink(shop.live).endswith('/releases/2.0')
        assert not os.path.exists(os.path.join(shop.app, 'maintenance.on'))
    finally:
        shop.stop()
