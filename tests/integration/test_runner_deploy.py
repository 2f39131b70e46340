# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy playbook the way AWX runs it: ansible-runner with a private data directory whose project
is awx/project/ (the job template's playbook), on the demo shop (SQLite, media, gunicorn on localhost,
laid out as scripts/demo.sh lays it out). A good release makes a successful job whose artifacts hold
the window report (set_stats ``djangoops_window``); a bad release makes a failed job whose artifacts
say the host was restored - and the shop's data is what it was before."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
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


def set_inventory_vars(pdd, drop=(), **variables):
    """Change the job's inventory as an operator would between jobs: set ``variables``, remove ``drop``."""
    path = os.path.join(pdd, 'inventory', 'hosts.yml')
    with open(path, encoding='utf-8') as f:
        inventory = yaml.safe_load(f)
    inventory['all']['vars'].update(variables)
    for name in drop:
        inventory['all']['vars'].pop(name, None)
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(inventory, f)


def recorded_migrations(shop):  # pylint: disable=redefined-outer-name
    con = sqlite3.connect(shop.db)
    try:
        return ['%s.%s' % row for row in con.execute('SELECT app, name FROM django_migrations ORDER BY id')]
    finally:
        con.close()


@contextlib.contextmanager
def undeletable(path):
    """A directory ``rm -rf`` fails on: an immutable file in it as root, a read-only directory otherwise."""
    os.makedirs(path)
    locked = os.path.join(path, 'locked')
    open(locked, 'w', encoding='utf-8').close()
    if os.geteuid() == 0:
        if subprocess.run(['chattr', '+i', locked], check=False, stderr=subprocess.DEVNULL).returncode != 0:
            pytest.skip('chattr +i does not work here, so no release can be made undeletable')
        undo = ['chattr', '-i', locked]
    else:
        os.chmod(path, 0o555)
        undo = ['chmod', '0755', path]
    try:
        yield path
    finally:
        subprocess.run(undo, check=True)


def test_maintenance_off_failure_keeps_the_release(tmp_path, shop):  # pylint: disable=redefined-outer-name
    """The release was migrated, started and verified when the maintenance-off hook fails: no rollback, the host
    is finish_failed with the error (not lost), the run is red and the maintenance flag is named. Once the operator
    finished by hand, the next window runs; old releases it cannot drop are a warning of a successful run."""
    pdd = private_data_dir(str(tmp_path), shop)
    hook = tmp_path / 'maintenance_off.yml'
    hook.write_text(textwrap.dedent('''
        - name: Put the host back behind the load balancer
          ansible.builtin.fail:
            msg: the load balancer refused to take the host back
        '''), encoding='utf-8')
    set_inventory_vars(pdd, window_maintenance_off_tasks=str(hook))
    flag = os.path.join(shop.app, 'maintenance.on')
    before = recorded_migrations(shop)
    assert 'shop.0007_order_priority' not in before

    job = run_job(pdd, '2.0', 'finish')
    assert job.status == 'failed' and job.rc != 0, job.stdout.read()[-4000:]
    assert job.stats['failures'] == {'demo-shop': 1}, job.stats
    report = window_artifact(job)
    host = report['hosts']['demo-shop']
    assert report['ok'] is False and report['summary'] == {'finish_failed': ['demo-shop']}, report['summary']
    assert host['status'] == 'finish_failed', host
    assert host['error'].startswith('maintenance_off: the load balancer refused to take the host back'), host['error']
    assert 'release 2.0 is live and stays (no rollback)' in host['error'] and flag in host['error'], host['error']
    assert host['maintenance_flag_left'] == flag and os.path.exists(flag)
    assert [(p['name'], p['status']) for p in host['phases']][-3:] == [
        ('start', 'ok'), ('verify', 'ok'), ('maintenance_off', 'failed')], host['phases']
    assert 'restored' not in host and host['verification']['ok'] is True
    # No rollback: the new release is live, its migration applied, the lock released.
    assert os.readlink(os.path.join(shop.app, 'current')).endswith('/releases/2.0')
    assert recorded_migrations(shop) == before + ['shop.0007_order_priority']
    assert not os.listdir(os.path.join(shop.root, 'locks'))
    job.stdout.seek(0)
    assert 'did not complete on demo-shop: finish_failed - maintenance_off' in job.stdout.read()

    # The operator finishes by hand. The next release's window cannot drop an old release: a warning, not a failure.
    os.unlink(flag)
    set_inventory_vars(pdd, drop=['window_maintenance_off_tasks'], window_keep_releases=2)
    releases = os.path.join(shop.app, 'releases')
    shutil.copytree(os.path.join(releases, '2.0'), os.path.join(releases, '2.1'), symlinks=True)
    with undeletable(os.path.join(releases, '0.9')) as old:
        os.utime(old, (1e9, 1e9))  # the oldest release, so the first to go
        job = run_job(pdd, '2.1', 'warned')
        assert job.status == 'successful' and job.rc == 0, job.stdout.read()[-4000:]
        report = window_artifact(job)
        host = report['hosts']['demo-shop']
        assert report['ok'] is True and report['summary'] == {'migrated': ['demo-shop']}, report['summary']
        assert report['warnings'] == ['demo-shop'] and len(host['warnings']) == 1, host.get('warnings')
        assert host['warnings'][0].startswith('old releases were not dropped: ') and old in host['warnings'][0]
        assert os.path.isdir(old) and not os.path.exists(flag)
        assert os.readlink(os.path.join(shop.app, 'current')).endswith('/releases/2.1')
        assert os.path.isdir(os.path.join(releases, '2.0')), 'the previous release is kept'
        with open(os.path.join(report['report_dir'], 'report.md'), encoding='utf-8') as f:
            assert '> warning: old releases were not dropped' in f.read()


def test_switch_hook_failing_part_way(tmp_path, django_venvs):  # noqa: F811  pylint: disable=redefined-outer-name
    """The caller's switch copies the new release over the live tree, then fails: the window runs the switch-back
    hook although the switch never completed, so the live tree is the old release again, over the old database."""
    shop = DemoShop(str(tmp_path / 'demo'), os.path.join(django_venvs['5.2'], 'bin', 'python'), in_place=True)
    try:
        shop.install()
        pdd = private_data_dir(str(tmp_path), shop)
        hooks = tmp_path / 'hooks'
        hooks.mkdir()
        (hooks / 'switch.yml').write_text(switch_tasks('window_release_version').split('\n- name: Say')[0] + '\n' + (
            textwrap.dedent('''
            - name: Reload the workers on the new code
              ansible.builtin.fail:
                msg: the switch broke off after copying the new code
            ''')), encoding='utf-8')
        (hooks / 'switch_back.yml').write_text(switch_tasks('window_release_from'), encoding='utf-8')
        set_inventory_vars(pdd, shop_live=shop.live, window_release_switch_tasks=str(hooks / 'switch.yml'),
                           window_release_switch_back_tasks=str(hooks / 'switch_back.yml'),
                           window_live_release="{{ lookup('ansible.builtin.file', shop_live ~ '/RELEASE') }}")
        data_before = shop.data()

        job = run_job(pdd, '2.0', 'half')
        assert job.status == 'failed', job.stdout.read()[-4000:]
        host = window_artifact(job)['hosts']['demo-shop']
        assert host['status'] == 'restored', host
        assert host['error'].startswith('release: the switch broke off after copying the new code'), host['error']
        assert host['restored']['release'] is True and host['restored']['database'] is True, host['restored']
        assert host['verification_restored']['ok'] is True
        with open(os.path.join(shop.live, 'RELEASE'), encoding='utf-8') as f:
            assert f.read().strip() == '1.0'
        assert not os.path.exists(os.path.join(shop.live, 'shop', 'migrations', '0007_order_priority.py'))
        assert shop.data() == data_before
        assert not os.path.exists(os.path.join(shop.app, 'maintenance.on'))
    finally:
        shop.stop()


def test_reverse_restores_when_the_new_release_cannot_load(tmp_path, shop):  # pylint: disable=redefined-outer-name
    """window_rollback_strategy reverse needs the new release to migrate back; one whose models do not even import
    fails its migration, the window declines to migrate back, says why, and restores the snapshot instead."""
    releases = os.path.join(shop.app, 'releases')
    shutil.copytree(os.path.join(releases, '2.0'), os.path.join(releases, '4.0'), symlinks=True)
    with open(os.path.join(releases, '4.0', 'shop', 'models.py'), 'a', encoding='utf-8') as f:
        f.write('\nimport shop_payments_sdk  # noqa: F401  (release 4.0 needs a package the host does not have)\n')
    pdd = private_data_dir(str(tmp_path), shop)
    set_inventory_vars(pdd, window_rollback_strategy='reverse')
    data_before = shop.data()

    job = run_job(pdd, '4.0', 'unloadable')
    assert job.status == 'failed' and job.rc != 0, job.stdout.read()[-4000:]
    report = window_artifact(job)
    host = report['hosts']['demo-shop']
    assert report['rollback_strategy'] == 'reverse' and report['summary'] == {'restored': ['demo-shop']}, report
    assert host['status'] == 'restored' and host['error'].startswith('migrate: '), host.get('error')
    assert 'shop_payments_sdk' in host['error'], host['error']
    rollback = [p for p in host['phases'] if p['name'] == 'rollback']
    assert len(rollback) == 1 and rollback[0]['status'] == 'ok', host['phases']
    assert rollback[0]['detail'].startswith('migrating back is not safe (the new release could not be read'), rollback
    assert 'shop_payments_sdk' in rollback[0]['detail'] and rollback[0]['detail'].endswith('; restoring'), rollback
    assert host['restored']['reversed_migrations'] is False and host['restored']['database'] is True, host['restored']
    assert host['restored']['tables_match'] is True and host['verification_restored']['ok'] is True
    assert shop.data() == data_before
    assert os.readlink(os.path.join(shop.app, 'current')).endswith('/releases/1.0')
    assert not os.path.exists(os.path.join(shop.app, 'maintenance.on'))


SQUASH = '''"""Release 1.1's squash of shop 0001-0004: the operations of the migrations it replaces, in order."""
from importlib import import_module

from django.db import migrations

REPLACED = ['0001_initial', '0002_product_stock_order_total', '0003_backfill_order_totals', '0004_normalize_skus']
MIGRATIONS = [import_module('shop.migrations.' + name).Migration for name in REPLACED]


class Migration(migrations.Migration):
    replaces = [('shop', name) for name in REPLACED]
    dependencies = MIGRATIONS[0].dependencies
    operations = [operation for migration in MIGRATIONS for operation in migration.operations]
'''


def test_reverse_restores_when_a_step_back_crosses_the_window(tmp_path, shop):  # pylint: disable=redefined-outer-name
    """Release 1.1 shipped a squash of shop 0001-0004, which its migrate recorded after 0006: the last migration
    before the window is then the squash, and going back to it would unapply 0005 and 0006 too. The window
    declines to migrate back, says why, and restores the snapshot instead."""
    releases = os.path.join(shop.app, 'releases')
    shutil.copytree(os.path.join(releases, '1.0'), os.path.join(releases, '1.1'), symlinks=True)
    for release in ('1.1', '2.0'):
        with open(os.path.join(releases, release, 'shop', 'migrations', '0001_squashed_0004_shop.py'), 'w',
                  encoding='utf-8') as f:
            f.write(SQUASH)
    current = os.path.join(shop.app, 'current')
    os.unlink(current)
    os.symlink(os.path.join(releases, '1.1'), current)
    subprocess.run([shop.python, os.path.join(current, 'manage.py'), 'migrate', '-v0'], check=True,
                   env=dict(os.environ, **shop.environment))
    assert recorded_migrations(shop)[-2:] == ['shop.0006_product_slug', 'shop.0001_squashed_0004_shop']
    pdd = private_data_dir(str(tmp_path), shop)
    set_inventory_vars(pdd, window_rollback_strategy='reverse', window_verify_sql_checks=[{
        'name': 'a check release 2.0 fails', 'expected': [[0]],
        'sql': "SELECT count(*) FROM django_migrations WHERE name = '0007_order_priority'"}])
    data_before = shop.data()

    job = run_job(pdd, '2.0', 'squashed')
    assert job.status == 'failed' and job.rc != 0, job.stdout.read()[-4000:]
    host = window_artifact(job)['hosts']['demo-shop']
    assert host['status'] == 'restored' and host['error'].startswith('verify: verification failed'), host.get('error')
    assert host['migrations_applied'] == ['shop.0007_order_priority'], host['migrations_applied']
    detail = [p['detail'] for p in host['phases'] if p['name'] == 'rollback']
    assert len(detail) == 1 and detail[0].startswith('migrating back is not safe ('), host['phases']
    assert 'the step back of shop would unapply migrations from before the window: ' in detail[0], detail
    assert 'shop.0005_remove_product_legacy_code' in detail[0] and 'shop.0006_product_slug' in detail[0], detail
    assert host['restored']['reversed_migrations'] is False and host['restored']['database'] is True, host['restored']
    assert host['verification_restored']['ok'] is True
    assert shop.data() == data_before
    assert os.readlink(current).endswith('/releases/1.1')
    assert not os.path.exists(os.path.join(shop.app, 'maintenance.on'))
