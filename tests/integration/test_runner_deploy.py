# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy playbook the way AWX runs it: ansible-runner with a private data directory whose project
is awx/project/ (the job template's playbook), on the demo shop (SQLite, media, gunicorn on localhost,
laid out as scripts/demo.sh lays it out). A good release makes a successful job whose artifacts hold
the window report (set_stats ``djangoops_window``); a bad release makes a failed job whose artifacts
say the host was restored - and the shop's data is what it was before."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap

import ansible_runner
import pytest
import yaml

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.demo_shop import DemoShop
from support.modules import COLLECTIONS_PATH, REPO, run_playbook

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(tmp_path, django_venvs):  # noqa: F811  pylint: disable=redefined-outer-name
    demo = DemoShop(str(tmp_path / 'demo'), os.path.join(django_venvs['5.2'], 'bin', 'python'))
    try:
        demo.install()
        yield demo
    finally:
        demo.stop()


def private_data_dir(root, shop):  # pylint: disable=redefined-outer-name
    """What AWX hands ansible-runner: the project checkout, the inventory, the job's environment."""
    pdd = os.path.join(root, 'runner')
    shutil.copytree(os.path.join(REPO, 'awx', 'project'), os.path.join(pdd, 'project'))
    os.makedirs(os.path.join(pdd, 'inventory'))
    with open(os.path.join(pdd, 'inventory', 'hosts.yml'), 'w', encoding='utf-8') as f:
        yaml.safe_dump(shop.inventory(), f)
    os.makedirs(os.path.join(pdd, 'env'))
    envvars = {'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS_PATH, 'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
               'DJANGOOPS_REPORT_DIR': os.path.join(root, 'reports'), 'ANSIBLE_NOCOLOR': '1',
               'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')}
    with open(os.path.join(pdd, 'env', 'envvars'), 'w', encoding='utf-8') as f:
        yaml.safe_dump(envvars, f)
    return pdd


def run_job(pdd, release, ident):
    return ansible_runner.run(private_data_dir=pdd, playbook='deploy.yml', ident=ident, quiet=True,
                              extravars={'window_release_version': release}, timeout=900)


def window_artifact(job):
    stats = [e for e in job.events if e.get('event') == 'playbook_on_stats']
    assert len(stats) == 1, 'no playbook_on_stats event'
    return stats[0]['event_data']['artifact_data']['djangoops_window']


def test_good_and_bad_release_through_ansible_runner(tmp_path, shop):  # pylint: disable=redefined-outer-name
    pdd = private_data_dir(str(tmp_path), shop)

    good = run_job(pdd, '2.0', 'good')
    assert good.status == 'successful' and good.rc == 0, good.stdout.read()[-4000:]
    report = window_artifact(good)
    host = report['hosts']['demo-shop']
    assert report['ok'] is True and report['release'] == '2.0'
    assert host['status'] == 'migrated' and 'shop.0007_order_priority' in host['migrations_applied'], host
    assert host['verification']['ok'] is True and host['snapshot']['id']
    # The artifact is the report the window wrote on the controller.
    with open(os.path.join(report['report_dir'], 'report.json'), encoding='utf-8') as f:
        assert json.load(f) == report
    assert os.readlink(os.path.join(shop.app, 'current')).endswith('/releases/2.0')
    # What ansible-runner leaves for AWX: status and rc in the job's artifacts directory.
    with open(os.path.join(pdd, 'artifacts', 'good', 'status'), encoding='utf-8') as f:
        assert f.read().strip() == 'successful'
    data_after_good = shop.data()

    bad = run_job(pdd, '3.0', 'bad')
    assert bad.status == 'failed' and bad.rc != 0, bad.stdout.read()[-4000:]
    report = window_artifact(bad)
    host = report['hosts']['demo-shop']
    assert report['ok'] is False and report['summary'] == {'restored': ['demo-shop']}, report['summary']
    assert host['status'] == 'restored' and 'migrate' in host['error'], host.get('error')
    assert host['restored']['database'] is True and host['restored']['release'] is True, host['restored']
    assert host['verification_restored']['ok'] is True
    assert bad.stats['failures'] == {'demo-shop': 1}, bad.stats
    with open(os.path.join(pdd, 'artifacts', 'bad', 'status'), encoding='utf-8') as f:
        assert f.read().strip() == 'failed'
    # Restored: the data, the live release, no maintenance flag left behind.
    assert shop.data() == data_after_good
    assert os.readlink(os.path.join(shop.app, 'current')).endswith('/releases/2.0')
    assert not os.path.exists(os.path.join(shop.app, 'maintenance.on'))


def switch_tasks(version_var):
    """A caller's switch hook for an in-place deploy: copy releases/<version> over the live tree."""
    return textwrap.dedent('''
        - name: Copy the release over the live tree
          ansible.builtin.command:
            argv: [rsync, -a, --delete, "{{ window_releases_dir }}/{{ %(v)s }}/", "{{ shop_live }}/"]
          changed_when: true

        - name: Say which release is live
          ansible.builtin.copy:
            content: "{{ %(v)s }}\\n"
            dest: "{{ shop_live }}/RELEASE"
            mode: "0644"
        ''') % {'v': version_var}


def test_in_place_deploy_with_switch_hooks(tmp_path, django_venvs):  # noqa: F811  pylint: disable=redefined-outer-name
    """No releases/ + symlink layout: the release is copied over a plain live directory by the caller's
    switch tasks, and copied back by its switch-back tasks when the window rolls back."""
    shop = DemoShop(str(tmp_path / 'demo'), os.path.join(django_venvs['5.2'], 'bin', 'python'), in_place=True)
    try:
        shop.install()
        pdd = private_data_dir(str(tmp_path), shop)
        hooks = os.path.join(str(tmp_path), 'hooks')
        os.makedirs(hooks)
        for name, text in (('switch.yml', switch_tasks('window_release_version')),
                           ('switch_back.yml', switch_tasks('window_release_from'))):
            with open(os.path.join(hooks, name), 'w', encoding='utf-8') as f:
                f.write(text)
        path = os.path.join(pdd, 'inventory', 'hosts.yml')
        with open(path, encoding='utf-8') as f:
            inventory = yaml.safe_load(f)
        inventory['all']['vars'].update({
            'shop_live': shop.live,
            'window_release_switch_tasks': os.path.join(hooks, 'switch.yml'),
            'window_release_switch_back_tasks': os.path.join(hooks, 'switch_back.yml'),
            # read by the caller when the window starts: the version file of the live tree
            'window_live_release': "{{ lookup('ansible.builtin.file', shop_live ~ '/RELEASE') }}"})
        with open(path, 'w', encoding='utf-8') as f:
            yaml.safe_dump(inventory, f)

        def live_release():
            with open(os.path.join(shop.live, 'RELEASE'), encoding='utf-8') as f:
                return f.read().strip()

        good = run_job(pdd, '2.0', 'good')
        assert good.status == 'successful', good.stdout.read()[-4000:]
        host = window_artifact(good)['hosts']['demo-shop']
        assert host['status'] == 'migrated' and host['release_from'] == '1.0', host
        assert live_release() == '2.0' and not os.path.islink(shop.live)
        assert os.path.exists(os.path.join(shop.live, 'shop', 'migrations', '0007_order_priority.py'))
        data_after_good = shop.data()

        again = run_job(pdd, '2.0', 'again')
        assert again.status == 'successful', again.stdout.read()[-4000:]
        assert window_artifact(again)['hosts']['demo-shop']['status'] == 'unchanged'

        bad = run_job(pdd, '3.0', 'bad')
        assert bad.status == 'failed', bad.stdout.read()[-4000:]
        host = window_artifact(bad)['hosts']['demo-shop']
        assert host['status'] == 'restored' and host['restored']['release'] is True, host
        assert host['verification_restored']['ok'] is True
        assert live_release() == '2.0' and shop.data() == data_after_good
        assert not os.path.exists(os.path.join(shop.live, 'shop', 'migrations', '0008_bad_release.py'))
        assert not os.path.exists(os.path.join(shop.app, 'maintenance.on'))
    finally:
        shop.stop()


def test_a_switch_hook_without_its_way_back_is_refused_before_anything_changes(tmp_path):
    app = tmp_path / 'app'
    app.mkdir()
    result = run_playbook(os.path.join(REPO, 'playbooks', 'deploy.yml'), inventory='localhost,', extra_vars={
        'djangoops_hosts': 'localhost', 'ansible_connection': 'local', 'window_release_version': '2.0',
        'window_app_root': str(app), 'window_lock_dir': str(tmp_path / 'locks'),
        'djangoops_snapshot_root': str(tmp_path / 'snapshots'),
        'djangoops_django': {'project_path': str(app / 'current'), 'python': sys.executable},
        'window_release_switch_tasks': str(tmp_path / 'switch.yml')}, env={'DJANGOOPS_REPORT_DIR': str(tmp_path / 'reports')})
    assert result.returncode != 0, result.stdout[-3000:]
    assert 'window_release_switch_back_tasks is empty' in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / 'snapshots').exists() and not (app / 'maintenance.on').exists()
