# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verification arithmetic and report assembly of the window roles."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.djangoops.maintenance.plugins.filter.window import (
    collect_window_report, downtime_seconds, offhost_collisions, query_check_failures, remote_place, row_count_drops,
    window_report_html, window_report_markdown)

RECORDED = {'shop_product': {'rows': 100}, 'shop_order': {'rows': 50}, 'django_session': {'rows': 10},
            'shop_legacy': {'rows': 5}, 'shop_empty': {'rows': 0}}


def test_drops_within_and_beyond_tolerance():
    current = {'shop_product': {'rows': 95}, 'shop_order': {'rows': 60}, 'django_session': {'rows': 0},
               'shop_empty': {'rows': 0}, 'shop_new': {'rows': 3}}
    drops = row_count_drops(current, RECORDED, tolerance=0.1, exclude=['django_session'])
    assert drops == [{'table': 'shop_legacy', 'before': 5, 'after': 0, 'drop': 1.0, 'missing': True}]
    strict = row_count_drops(current, RECORDED, tolerance=0)
    assert [d['table'] for d in strict] == ['django_session', 'shop_legacy', 'shop_product']
    assert strict[2]['drop'] == 0.05


@pytest.mark.parametrize('bad', [-0.1, 1.5, 'lots'])
def test_bad_tolerance_is_named(bad):
    with pytest.raises(AnsibleFilterError, match='tolerance'):
        row_count_drops({}, RECORDED, tolerance=bad)


def test_query_checks_compare_as_text():
    checks = [{'sql': 'select count(*)', 'expected': [[3]]}, {'sql': 'select 1.0', 'expected': [['1']]},
              {'name': 'no nulls', 'sql': 'select x', 'expected': []}, {'sql': 'select y'}]
    assert query_check_failures([[[3]], [[1.0]], [], [[9]]], checks) == []
    fails = query_check_failures([[[4]], [[1.0]], [[None]], []], checks)
    assert [f['name'] for f in fails] == ['select count(*)', 'no nulls']
    with pytest.raises(AnsibleFilterError, match='2 results for 4 checks'):
        query_check_failures([[], []], checks)


def test_downtime_from_maintenance_on_to_off():
    phases = [{'name': 'lock', 'start': '2026-01-01T00:00:00Z', 'end': '2026-01-01T00:00:01Z'},
              {'name': 'maintenance_on', 'start': '2026-01-01T00:00:02Z', 'end': '2026-01-01T00:00:03Z'},
              {'name': 'migrate', 'start': '2026-01-01T00:00:03Z', 'end': '2026-01-01T00:01:00Z'},
              {'name': 'maintenance_off', 'start': '2026-01-01T00:01:00Z', 'end': '2026-01-01T00:01:05Z'}]
    assert downtime_seconds(phases) == 63
    assert downtime_seconds(phases[:3]) == 58  # still in maintenance: up to the last phase seen
    assert downtime_seconds(phases[:1]) is None


class FakeHostvars(dict):
    """hostvars as the filter sees it: a mapping of host to a mapping of variables."""


def test_report_marks_lost_and_not_started_hosts():
    hv = FakeHostvars({
        'h1': {'window__report': {'status': 'migrated', 'phases': [], 'snapshot': {'id': 's1', 'bytes': 10}}},
        'h2': {'window__report': {'status': 'restored', 'phases': [], 'error': 'migration 0007 failed',
                                  'restored': {'database': True, 'media': True, 'release': True}}},
        'h3': {'window__report': {'status': 'in_progress', 'phases': [], 'snapshot': {'id': 's3'}}},
        'h4': {},
    })
    report = collect_window_report(hv, ['h1', 'h2', 'h3', 'h4'], ['h1'], run={'run_id': 'r1', 'release': '2.0'})
    assert report['summary'] == {'migrated': ['h1'], 'restored': ['h2'], 'lost': ['h3'], 'not_started': ['h4']}
    assert report['ok'] is False
    assert report['hosts']['h3']['snapshot']['id'] == 's3'
    md = window_report_markdown(report)
    assert md.startswith('# Maintenance window r1') and '**FAILED**' in md
    assert '## h3: lost' in md and 'snapshot: s3' in md and 'restored: database, media, release' in md
    page = window_report_html(report)
    assert '<h2>h2: restored</h2>' in page and 'migration 0007 failed' in page
    ok = collect_window_report(FakeHostvars({'h1': {'window__report': {'status': 'migrated'}}}), ['h1'], ['h1'])
    assert ok['ok'] is True and '**SUCCEEDED**' in window_report_markdown(ok)


def test_report_of_a_window_that_could_not_finish_and_of_a_warning():
    """finish_failed (the new release stays, maintenance mode may be on) is a failure with its own status; a
    warning (old releases not dropped) leaves the run a success, and both reports say it."""
    hv = FakeHostvars({
        'h1': {'window__report': {'status': 'finish_failed', 'phases': [], 'maintenance_flag_left': '/srv/m.on',
                                  'error': 'maintenance_off: the load balancer said no'}},
        'h2': {'window__report': {'status': 'migrated', 'phases': [],
                                  'warnings': ['old releases were not dropped: rmtree failed']}},
    })
    report = collect_window_report(hv, ['h1', 'h2'], ['h2'])
    assert report['summary'] == {'migrated': ['h2'], 'finish_failed': ['h1']} and report['ok'] is False
    assert list(report['summary']) == ['migrated', 'finish_failed'] and report['warnings'] == ['h2']
    md = window_report_markdown(report)
    assert '## h1: finish_failed' in md and 'maintenance flag still up: /srv/m.on' in md
    assert '> warning: old releases were not dropped: rmtree failed' in md and 'with warnings: h2' in md
    page = window_report_html(report)
    assert 'maintenance flag still up: /srv/m.on' in page and 'warning: old releases were not dropped' in page
    warned = collect_window_report(FakeHostvars({'h2': hv['h2']}), ['h2'], ['h2'])
    assert warned['ok'] is True and warned['warnings'] == ['h2']
    assert 'warnings' not in collect_window_report(FakeHostvars({'h1': {'window__report': {'status': 'migrated'}}}),
                                                   ['h1'], ['h1'])


def test_html_escapes_everything():
    report = collect_window_report(FakeHostvars({'<b>': {'window__report': {
        'status': 'failed', 'error': '<script>x</script>', 'phases': [{'name': '<i>'}]}}}), ['<b>'], [])
    page = window_report_html(report)
    assert '<script>' not in page and '&lt;script&gt;' in page and '<i>' not in page


def test_migration_targets():
    from ansible_collections.djangoops.maintenance.plugins.filter.window import migration_targets
    before = {'shop': ['0001_initial', '0002_stock'], 'auth': ['0001_initial'], 'blog': []}
    after = {'shop': ['0001_initial', '0002_stock', '0003_x', '0004_y'], 'auth': ['0001_initial'],
             'blog': ['0001_initial'], 'new': ['0001_initial']}
    assert migration_targets(before, after) == [
        {'app': 'blog', 'target': 'zero'}, {'app': 'new', 'target': 'zero'}, {'app': 'shop', 'target': '0002_stock'}]
    assert migration_targets(before, before) == []
    with pytest.raises(AnsibleFilterError):
        migration_targets([], {})


def test_django_connection_takes_the_password_from_secret_environment():
    from ansible_collections.djangoops.maintenance.plugins.filter.window import django_connection
    info = {'database': {'connection': {'engine': 'postgresql', 'database': 'shop', 'login_password': '********'},
                         'password_env': 'SHOP_DB_PASSWORD'}}
    conn = django_connection(info, {'secret_environment': {'SHOP_DB_PASSWORD': 's3cret'}})
    assert conn == {'engine': 'postgresql', 'database': 'shop', 'login_password': 's3cret'}
    assert info['database']['connection']['login_password'] == '********', 'input left alone'
    from_host = {'database': {'connection': {'engine': 'sqlite', 'database': '/srv/db.sqlite3'}, 'password_env': None}}
    assert django_connection(from_host, {}) == {'engine': 'sqlite', 'database': '/srv/db.sqlite3'}
    with pytest.raises(AnsibleFilterError, match='django_info result'):
        django_connection({'failed': True}, {})


def test_django_connection_gives_the_plays_own_connection_first_and_adds_client_bin_dir():
    from ansible_collections.djangoops.maintenance.plugins.filter.window import django_connection
    info = {'database': {'connection': {'engine': 'postgresql', 'database': 'shop'}, 'password_env': None}}
    own = {'engine': 'mysql', 'database': 'other', 'login_host': 'db'}
    assert django_connection(info, {}, own) == own
    assert django_connection({'skipped': True}, {}, own, '/opt/bin') == dict(own, client_bin_dir='/opt/bin'), \
        'Django\'s result is not read when the play gives its own connection'
    assert own == {'engine': 'mysql', 'database': 'other', 'login_host': 'db'}, 'input left alone'
    assert django_connection(info, {}, {}, '/usr/lib/postgresql/15/bin') == {
        'engine': 'postgresql', 'database': 'shop', 'client_bin_dir': '/usr/lib/postgresql/15/bin'}
    assert django_connection(info, {}, {}, '') == {'engine': 'postgresql', 'database': 'shop'}


def _back(app, target, plan, irreversible=()):
    return {'item': {'app': app, 'target': target}, 'changed': False, 'failed': False,
            'plan': [{'id': i, 'backwards': True} for i in plan], 'plan_irreversible': list(irreversible)}


FORWARD = {'failed': True, 'migrations_applied': ['shop.0007_order_priority'],
           'plan': [{'id': 'shop.0007_order_priority', 'destructive': False},
                    {'id': 'shop.0008_drop_note', 'destructive': True}]}
NOW = {'applied_migrations': {'shop': ['0001_initial', '0007_order_priority']}}


def test_reverse_rollback_problems():
    from ansible_collections.djangoops.maintenance.plugins.filter.window import reverse_rollback_problems
    safe = {'results': [_back('shop', '0006_product_slug', ['shop.0007_order_priority'])]}
    assert reverse_rollback_problems(safe, FORWARD, NOW) == []
    # a squash recorded after 0006 makes the target look older: the step back would undo 0005 and 0006 too
    back_too_far = ['shop.0007_order_priority', 'shop.0006_product_slug', 'shop.0005_remove_product_legacy_code']
    past = {'results': [_back('shop', '0001_squashed_0004', back_too_far)]}
    assert reverse_rollback_problems(past, FORWARD, NOW) == [
        'the step back of shop would unapply migrations from before the window: shop.0006_product_slug, '
        'shop.0005_remove_product_legacy_code']
    # 0008 failed half-applied on MariaDB (its DROP COLUMN stays): going back over 0007 would not undo it
    half = dict(FORWARD, partial_state=True, failed_migration='shop.0008_drop_note')
    assert reverse_rollback_problems(safe, half, NOW) == ['migration shop.0008_drop_note failed half-applied']
    # the new release cannot be loaded: django_info failed (registered with failed_when false)
    assert reverse_rollback_problems({'results': []}, FORWARD, {'failed': False, 'msg': 'settings failed to load'}) \
        == ['the new release could not be read (settings failed to load)']
    # the old checks: an irreversible step back, a window migration that dropped data, a step back not planned
    irreversible = {'results': [_back('shop', '0006_product_slug', ['shop.0007_order_priority'],
                                      irreversible=['shop.0007_order_priority'])]}
    assert reverse_rollback_problems(irreversible, FORWARD, NOW) == ['irreversible step back: shop.0007_order_priority']
    dropping = dict(FORWARD, migrations_applied=['shop.0007_order_priority', 'shop.0008_drop_note'])
    both = {'results': [_back('shop', '0006_product_slug', ['shop.0008_drop_note', 'shop.0007_order_priority'])]}
    assert reverse_rollback_problems(both, dropping, NOW) == [
        'the window applied migrations that drop data: shop.0008_drop_note']
    unplanned = {'results': [{'item': {'app': 'shop', 'target': '0006'}, 'failed': False, 'msg': 'no such target'}]}
    assert reverse_rollback_problems(unplanned, FORWARD, NOW) == [
        'the step back of shop cannot be planned: no such target']
    assert reverse_rollback_problems({'results': []}, FORWARD, NOW) == ['no app to migrate back']


def test_remote_place_ignores_credentials_and_spelling_of_the_same_path():
    a = {'type': 'ssh', 'host': 'backup', 'user': 'djangoops', 'path': '/srv/backups/', 'ssh_key': '/a'}
    b = {'type': 'ssh', 'host': 'backup', 'user': 'djangoops', 'path': '/srv//backups', 'ssh_key': '/b', 'port': 22}
    assert remote_place(a) == remote_place(b) == 'ssh://djangoops@backup:22/srv/backups'
    assert remote_place(dict(a, path='/srv/backups/web1')) != remote_place(a)
    assert remote_place(dict(a, port=2222)) != remote_place(a)
    s3 = {'type': 's3', 'bucket': 'b', 'prefix': '/web1/', 'access_key': 'x', 'secret_key': 'y'}
    assert remote_place(s3) == remote_place(dict(s3, prefix='web1', access_key='z')) == 's3://aws/b/web1'
    assert remote_place(dict(s3, prefix='web2')) != remote_place(s3)
    assert remote_place({}) == remote_place(None) == ''
    with pytest.raises(AnsibleFilterError, match='remote_place expects'):
        remote_place('s3://b')


def test_offhost_collisions_count_the_hosts_that_take_a_snapshot():
    store = {'type': 'ssh', 'host': 'backup', 'path': '/srv/backups'}
    own = {'type': 'ssh', 'host': 'backup', 'path': '/srv/backups/web3'}
    hostvars = {'web1': {'djangoops_offhost_remote': store},
                'web2': {'djangoops_offhost_remote': dict(store, path='/srv/backups/')},
                'web3': {'djangoops_offhost_remote': own}, 'web4': {}}
    hosts = ['web1', 'web2', 'web3', 'web4']
    assert offhost_collisions(hosts, hostvars) == [
        {'place': 'ssh://@backup:22/srv/backups', 'hosts': ['web1', 'web2'],
         'text': 'web1 and web2 to ssh://@backup:22/srv/backups'}]
    assert offhost_collisions(['web1', 'web3', 'web4'], hostvars) == []

    # A shared database: the primary dumps it; another host takes a snapshot only of its media, if it has any.
    shared = {h: dict(v, window_topology='shared', window_primary_host='web2') for h, v in hostvars.items()}
    shared['web1']['window_snapshot_media'] = 'false'
    assert offhost_collisions(hosts, shared) == []
    shared['web1']['window_snapshot_media'] = True
    assert offhost_collisions(hosts, shared)[0]['hosts'] == ['web1', 'web2']
    # the primary snapshots the database whatever its media setting; media_var names the variable read
    shared['web2']['window_snapshot_media'] = False
    shared['web1'].update(window_snapshot_media=False, snapshot_media=True)
    assert offhost_collisions(hosts, shared) == []
    assert offhost_collisions(hosts, shared, media_vars='snapshot_media')[0]['hosts'] == ['web1', 'web2']
    # without window_primary_host, the first host of the run is the primary
    del shared['web2']['window_primary_host'], shared['web1']['window_primary_host']
    shared['web1']['snapshot_media'] = False
    assert offhost_collisions(hosts, shared, media_vars='snapshot_media')[0]['hosts'] == ['web1', 'web2']
    assert offhost_collisions(['web2', 'web1'], shared, media_vars='snapshot_media') == []
    # with several variables, a host snapshots media only when every one is true
    shared['web1'].update(snapshot_media=True, window_snapshot_media='no')
    both = ['snapshot_media', 'window_snapshot_media']
    assert offhost_collisions(['web2', 'web1'], shared, media_vars=both) == []
    shared['web1']['window_snapshot_media'] = 'yes'
    assert offhost_collisions(['web2', 'web1'], shared, media_vars=both)[0]['hosts'] == ['web2', 'web1']


def test_offhost_collisions_name_a_media_setting_that_is_not_a_boolean():
    hostvars = {'web1': {'window_topology': 'shared', 'window_snapshot_media': 'maybe',
                         'djangoops_offhost_remote': {'type': 'ssh', 'host': 'b', 'path': '/x'}}}
    with pytest.raises(AnsibleFilterError, match="window_snapshot_media of web1 must be a boolean, got 'maybe'"):
        offhost_collisions(['web0', 'web1'], dict(hostvars, web0={}))
