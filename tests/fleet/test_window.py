# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The maintenance window across a fleet of real SSH hosts: playbooks/deploy.yml on the demo shop,
deployed on every rig host and served by gunicorn, per-host and shared databases, failures, a lost
host, and the lock."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.fleet_app import FleetApp, build_releases, read_report, write_inventory

DEPLOY = 'djangoops.maintenance.deploy'


@pytest.fixture(scope='module')
def releases(tmp_path_factory, django_venvs):  # pylint: disable=unused-argument
    return build_releases(str(tmp_path_factory.mktemp('releases') / 'releases'))


@pytest.fixture
def report_dir(tmp_path):
    path = tmp_path / 'reports'
    path.mkdir()
    return str(path)


def deploy(rig, inventory, report_dir, version='2.0', **extra):
    extra_vars = {'window_release_version': version, 'djangoops_hosts': 'django'}
    extra_vars.update(extra)
    return rig.playbook(DEPLOY, extra_vars=extra_vars, inventory=inventory, env={'DJANGOOPS_REPORT_DIR': report_dir})


def snapshots(host):
    root = os.path.join(host.srv, 'backups')
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def test_per_host_sqlite_all_migrate_then_nothing_to_do(rig, releases, tmp_path, report_dir):
    app = FleetApp(rig, releases)
    for h in rig.hosts:
        app.install(h)
    inv = write_inventory(rig, str(tmp_path / 'inv'), [h.name for h in rig.hosts], app.group_vars())

    r = deploy(rig, inv, report_dir)
    assert r.rc == 0, r.output[-6000:]
    report = read_report(report_dir)
    assert report['ok'] is True and report['summary'] == {'migrated': ['h1', 'h2', 'h3']}
    for h in rig.hosts:
        status, body = app.health(h, bypass=False)
        assert status == 200 and body['applied_migrations'] == 25 and body['pending_migrations'] == [], body
        assert app.live_release(h) == '/srv/shop/releases/2.0'
        assert not app.in_maintenance(h)
        rec = report['hosts'][h.name]
        assert rec['migrations_applied'] == ['shop.0007_order_priority']
        assert rec['snapshot']['id'] in snapshots(h)
        assert [p['name'] for p in rec['phases']] == [
            'lock', 'preflight', 'maintenance_on', 'snapshot', 'release', 'migrate', 'start', 'verify',
            'maintenance_off']
        assert rec['downtime_seconds'] >= 0 and rec['verification']['ok'] is True
    assert not os.listdir(os.path.join(rig['h1'].srv, 'locks')), 'the lock is released'

    # A second run: release live, nothing pending - nothing to do, no maintenance, no snapshot.
    before = dict((h.name, snapshots(h)) for h in rig.hosts)
    r = deploy(rig, inv, report_dir)
    assert r.rc == 0, r.output[-6000:]
    report = read_report(report_dir)
    assert report['summary'] == {'unchanged': ['h1', 'h2', 'h3']}
    for h in rig.hosts:
        assert [p['name'] for p in report['hosts'][h.name]['phases']] == ['lock', 'preflight']
        assert snapshots(h) == before[h.name]
        assert app.health(h, bypass=False)[0] == 200


def test_per_host_failure_on_the_second_host_stops_the_rollout(rig, releases, tmp_path, report_dir):
    app = FleetApp(rig, releases)
    for h in rig.hosts:
        app.install(h)
    failing = app.group_vars()['djangoops_django']
    failing = dict(failing, environment=dict(failing['environment'], SHOP_FAIL_MIGRATION='1'))
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1', 'h2', 'h3'], app.group_vars(),
                          host_vars={'h2': {'djangoops_django': failing}})
    before = dict((h.name, app.state(h)) for h in rig.hosts)

    r = deploy(rig, inv, report_dir, djangoops_serial=1, djangoops_max_fail_percentage=0)
    assert r.rc != 0
    report = read_report(report_dir)
    assert report['summary'] == {'migrated': ['h1'], 'restored': ['h2'], 'not_started': ['h3']}, report['summary']

    h1, h2, h3 = rig['h1'], rig['h2'], rig['h3']
    assert app.live_release(h1) == '/srv/shop/releases/2.0' and app.health(h1)[1]['applied_migrations'] == 25
    # h2: data, media and code exactly as before, serving again, out of maintenance
    assert app.state(h2) == before['h2']
    assert app.health(h2, bypass=False)[0] == 200 and not app.in_maintenance(h2)
    rec = report['hosts']['h2']
    assert 'shop.0007_order_priority' in rec['error'] and 'SHOP_FAIL_MIGRATION' in rec['error']
    assert rec['restored']['database'] is True and rec['restored']['tables_match'] is True
    assert rec['restored']['release'] is True
    assert rec['verification_restored']['ok'] is True
    assert [p['name'] for p in rec['phases']][-5:] == ['migrate', 'rollback', 'start', 'verify_restored',
                                                       'maintenance_off']
    # h3 never touched: no snapshot, old release, no lock
    assert app.state(h3) == before['h3'] and snapshots(h3) == []
    assert report['hosts']['h3']['status'] == 'not_started'
    assert 'h2' in r.output and 'did not complete on h2' in r.output


def test_lost_host_after_its_snapshot(rig, releases, tmp_path, report_dir):
    app = FleetApp(rig, releases)
    for h in rig.hosts:
        app.install(h)
    # Slow h2's verification a little so the cut lands mid-window whatever the load.
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1', 'h2', 'h3'], app.group_vars())
    h2 = rig['h2']
    seen = {}

    def cut_after_snapshot():
        deadline = time.monotonic() + 300
        root = os.path.join(h2.srv, 'backups')
        while time.monotonic() < deadline:
            # Complete: renamed from <id>.partial, which holds its manifest a moment before the rename.
            done = [d for d in (os.listdir(root) if os.path.isdir(root) else [])
                    if not d.endswith('.partial') and os.path.isfile(os.path.join(root, d, 'manifest.json'))]
            if done:
                seen['snapshot'] = done[0]
                h2.down()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=cut_after_snapshot, daemon=True)
    watcher.start()
    r = deploy(rig, inv, report_dir)
    watcher.join(5)
    assert seen.get('snapshot'), 'h2 never completed a snapshot'
    assert r.rc != 0 and 'h2' in r.unreachable, r.output[-4000:]
    report = read_report(report_dir)
    assert report['summary']['migrated'] == ['h1', 'h3'], report['summary']
    assert report['summary']['lost'] == ['h2']
    lost = report['hosts']['h2']
    assert lost['snapshot']['id'] == seen['snapshot']
    assert 'unreachable' in lost['error']
    # No reachable host is left in maintenance mode.
    for h in (rig['h1'], rig['h3']):
        assert not app.in_maintenance(h) and app.health(h, bypass=False)[0] == 200
    h2.up()
    assert app.in_maintenance(h2), 'the lost host stays in maintenance until someone looks at it'


def test_a_second_window_is_refused_by_the_lock(make_rig, releases, tmp_path, report_dir):
    rig = make_rig(1)
    app = FleetApp(rig, releases)
    h1 = rig['h1']
    app.install(h1)
    hook = tmp_path / 'wait.yml'
    hook.write_text('- name: Hold the window open until the test says go\n'
                    '  ansible.builtin.wait_for:\n    path: /srv/go\n    timeout: 300\n')
    gv = app.group_vars({'window_verify_hook_tasks': [str(hook)]})
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1'], gv)
    first = {}

    def run_first():
        first['run'] = deploy(rig, inv, report_dir)

    t = threading.Thread(target=run_first, daemon=True)
    t.start()
    lock = os.path.join(h1.srv, 'locks', 'shop.lock')
    deadline = time.monotonic() + 300
    while not os.path.exists(os.path.join(h1.srv, 'shop', 'releases', '2.0')) or \
            os.readlink(app.local(h1, 'current')) != '/srv/shop/releases/2.0':
        assert time.monotonic() < deadline and t.is_alive(), first
        time.sleep(0.2)
    assert os.path.exists(lock) and app.in_maintenance(h1)

    second = deploy(rig, inv, report_dir, version='3.0')
    assert second.rc != 0
    assert 'is held by' in second.output and 'maintenance window' in second.output
    # The refused window changed nothing: the first still holds its lock, maintenance and release.
    assert os.path.exists(lock) and app.in_maintenance(h1)
    assert app.live_release(h1) == '/srv/shop/releases/2.0'

    open(os.path.join(h1.srv, 'go'), 'w').close()
    t.join(300)
    assert first['run'].rc == 0, first['run'].output[-6000:]
    assert app.live_release(h1) == '/srv/shop/releases/2.0' and not app.in_maintenance(h1)
    assert not os.path.exists(lock)


def _pg_dump(server, dbname):
    """The whole database as SQL, read from the controller (an independent view of the data)."""
    env = dict(os.environ, PGPASSWORD=server.password)
    p = subprocess.run([os.path.join(server.bindir, 'pg_dump'), '-h', server.host, '-p', str(server.port), '-U',
                        server.superuser, '--no-owner', dbname], env=env, stdout=subprocess.PIPE, check=True)
    # pg_dump 15.14+ brackets its output with \restrict/\unrestrict and a random key per run.
    return b'\n'.join(line for line in p.stdout.split(b'\n') if not line.startswith((b'\\restrict', b'\\unrestrict')))


def test_shared_postgres_one_app_host_fails_verification(rig, releases, tmp_path, report_dir):
    h1, h2, h3 = rig['h1'], rig['h2'], rig['h3']
    pg = rig.start_postgres(h3)
    pg.create_database('shop')
    app = FleetApp(rig, releases,
                   db_env={'SHOP_DB_ENGINE': 'postgresql', 'SHOP_DB_NAME': 'shop', 'SHOP_DB_HOST': pg.host,
                           'SHOP_DB_PORT': str(pg.port), 'SHOP_DB_USER': pg.superuser, 'SHOP_DB_SSLMODE': 'disable'},
                   secret_env={'SHOP_DB_PASSWORD': pg.password})
    app.install(h1)
    app.install(h2, migrate=False, seed=False)
    gv = app.group_vars({'window_topology': 'shared'})
    broken_checks = gv['window_verify_http_checks'] + [{
        'name': 'a page only the old release has', 'url': 'http://{{ ansible_host }}:8000/health/',
        'headers': {'X-Djangoops-Bypass': 'fleet-bypass-token'}, 'contains': '"applied_migrations": 24'}]
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1', 'h2'], gv,
                          host_vars={'h2': {'window_verify_http_checks': broken_checks}})
    before = _pg_dump(pg, 'shop')
    media_before = dict((h.name, app.state(h)['media']) for h in (h1, h2))

    # An extra var wins over every other variable: -e snapshot_database=true must still not make h2 dump the
    # shared database (its snapshot holds its media alone).
    r = deploy(rig, inv, report_dir, snapshot_database=True)
    assert r.rc != 0
    report = read_report(report_dir)
    assert report['summary'] == {'restored': ['h1', 'h2']}, report['summary']
    assert _pg_dump(pg, 'shop') == before, 'the shared database is exactly as before the window'
    for h in (h1, h2):
        assert app.live_release(h) == '/srv/shop/releases/1.0'
        status, body = app.health(h, bypass=False)
        assert status == 200 and body['applied_migrations'] == 24, body
        assert not app.in_maintenance(h)
        assert app.state(h)['media'] == media_before[h.name]
    # The database was snapshot, migrated and restored once, by the primary.
    assert report['hosts']['h1']['restored']['database'] is True
    assert report['hosts']['h1']['restored']['tables_match'] is True
    assert report['hosts']['h2']['restored']['database'] is False
    assert report['hosts']['h1']['migrations_applied'] == ['shop.0007_order_priority']
    assert 'verification failed' in report['hosts']['h2']['error']
    assert 'another host' in ' '.join(p.get('detail', '') for p in report['hosts']['h1']['phases'])
    assert 'database' in report['hosts']['h1']['snapshot']['parts']
    assert 'database' not in report['hosts']['h2']['snapshot']['parts']


def _mysql_dump(server, dbname, tmp_path):
    cnf = tmp_path / 'my.cnf'
    cnf.write_text('[client]\nuser=%s\npassword="%s"\nhost=%s\nport=%d\n' % (
        server.user, server.password.replace('\\', '\\\\').replace('"', '\\"'), server.host, server.port))
    cnf.chmod(0o600)
    p = subprocess.run(['mariadb-dump', '--defaults-extra-file=%s' % cnf, '--skip-dump-date', '--routines',
                        '--triggers', '--events', '--hex-blob', dbname], stdout=subprocess.PIPE, check=True)
    return p.stdout


def test_mariadb_half_applied_migration_is_restored_exactly(make_rig, releases, tmp_path, report_dir):
    rig = make_rig(1)
    h1 = rig['h1']
    my = rig.start_mariadb(h1)
    my.create_database('shop')
    app = FleetApp(rig, releases,
                   db_env={'SHOP_DB_ENGINE': 'mysql', 'SHOP_DB_NAME': 'shop', 'SHOP_DB_HOST': my.host,
                           'SHOP_DB_PORT': str(my.port), 'SHOP_DB_USER': my.user},
                   secret_env={'SHOP_DB_PASSWORD': my.password})
    app.install(h1)
    dj = app.group_vars()['djangoops_django']
    gv = app.group_vars({'djangoops_django': dict(dj, environment=dict(dj['environment'], SHOP_FAIL_MIGRATION='1'))})
    inv = write_inventory(rig, str(tmp_path / 'inv'), ['h1'], gv)
    before = _mysql_dump(my, 'shop', tmp_path)

    r = deploy(rig, inv, report_dir)
    assert r.rc != 0
    report = read_report(report_dir)
    rec = report['hosts']['h1']
    assert rec['status'] == 'restored', rec
    # MariaDB committed the ALTER TABLE of the failed migration; the snapshot took it back out.
    assert 'shop.0007_order_priority' in rec['error']
    assert _mysql_dump(my, 'shop', tmp_path) == before
    columns = [c[0] for c in my.sql("SELECT column_name FROM information_schema.columns "
                                    "WHERE table_schema='shop' AND table_name='shop_order'")]
    assert 'priority' not in columns
    assert rec['restored']['tables_match'] is True
    assert app.health(h1, bypass=False)[0] == 200
