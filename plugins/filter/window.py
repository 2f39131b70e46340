# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the maintenance-window roles: verification arithmetic and the window report.

Kept as Python rather than Jinja so the logic is readable and unit-tested; the roles only call them."""

from __future__ import annotations

import datetime
import fnmatch
import html

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

STATUS_ORDER = ('migrated', 'unchanged', 'finish_failed', 'restored', 'reversed', 'failed', 'restore_failed', 'lost',
                'in_progress', 'not_started')


def row_count_drops(current, recorded, tolerance=0.0, exclude=None):
    """Tables whose row count fell by more than ``tolerance`` (a fraction) since the snapshot.

    ``current`` and ``recorded`` are ``{table: {'rows': n, ...}}`` as db_info and db_snapshot return
    them. A recorded table that no longer exists counts as dropped to 0. Tables matching a glob in
    ``exclude`` are skipped; tables new since the snapshot cannot have dropped."""
    if not isinstance(current, dict) or not isinstance(recorded, dict):
        raise AnsibleFilterError('row_count_drops expects two table dicts, got %s and %s'
                                 % (type(current).__name__, type(recorded).__name__))
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        raise AnsibleFilterError('row_count_drops: tolerance must be a number, got %r' % (tolerance,))
    if not 0 <= tolerance <= 1:
        raise AnsibleFilterError('row_count_drops: tolerance must be between 0 and 1, got %r' % (tolerance,))
    patterns = list(exclude or [])
    drops = []
    for table in sorted(recorded):
        if any(fnmatch.fnmatchcase(table, p) for p in patterns):
            continue
        before = int((recorded[table] or {}).get('rows') or 0)
        now = current.get(table)
        after = int(now.get('rows') or 0) if now else 0
        if before == 0 or after >= before:
            continue
        ratio = (before - after) / float(before)
        if ratio > tolerance:
            drops.append({'table': table, 'before': before, 'after': after, 'drop': round(ratio, 4),
                          'missing': now is None})
    return drops


def query_check_failures(results, checks):
    """Compare db_info query results with the expected rows of each check.

    ``checks``: ``[{'sql': ..., 'expected': [[...], ...], 'name': optional}]``; ``results``: the
    ``query_results`` list, same order. Values are compared as text so 3 == '3' == 3.0 is not a trap
    only when the user wrote them alike: ``expected`` rows are compared after ``str()`` of each value."""
    if len(results) != len(checks):
        raise AnsibleFilterError('query_check_failures: %d results for %d checks' % (len(results), len(checks)))
    failures = []
    for check, rows in zip(checks, results):
        if 'expected' not in check:
            continue
        want = [[_norm(v) for v in row] for row in check['expected']]
        got = [[_norm(v) for v in row] for row in rows]
        if want != got:
            failures.append({'name': check.get('name') or check['sql'], 'sql': check['sql'],
                             'expected': check['expected'], 'actual': rows})
    return failures


def _norm(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _parse(ts):
    try:
        return datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%SZ')
    except (TypeError, ValueError):
        return None


def downtime_seconds(phases):
    """Seconds from the start of 'maintenance_on' to the end of 'maintenance_off' (or the last phase)."""
    start = end = None
    for p in phases or []:
        if p.get('name') == 'maintenance_on' and start is None:
            start = _parse(p.get('start'))
        if p.get('name') == 'maintenance_off':
            end = _parse(p.get('end'))
    if start is None:
        return None
    if end is None:
        ends = [_parse(p.get('end')) for p in phases if p.get('end')]
        ends = [e for e in ends if e]
        if not ends:
            return None
        end = max(ends)
    return int((end - start).total_seconds())


def collect_window_report(hostvars, hosts_all, active_hosts, key='window__report', run=None):
    """Assemble the fleet report from each host's ``key`` fact.

    A host with no record never started (a later serial batch, or the play stopped first). A host whose
    record is still ``in_progress`` but that is no longer active was lost (unreachable) mid-window. ``ok`` is
    true only when every host is ``migrated`` or ``unchanged``; ``warnings`` (present only when there are any)
    names the hosts whose record carries warnings (old releases not dropped) - a success all the same."""
    active = set(active_hosts or [])
    hosts = {}
    for name in hosts_all:
        try:
            record = hostvars[name].get(key)
        except (KeyError, AttributeError):
            record = None
        if not record:
            hosts[name] = {'status': 'not_started', 'phases': []}
            continue
        record = dict(record)
        if record.get('status') == 'in_progress' and name not in active:
            record['status'] = 'lost'
            record.setdefault('error', 'host became unreachable during the window')
        record['downtime_seconds'] = downtime_seconds(record.get('phases'))
        hosts[name] = record
    summary = dict((s, sorted(n for n, r in hosts.items() if r['status'] == s)) for s in STATUS_ORDER)
    summary = dict((k, v) for k, v in summary.items() if v)
    report = dict(run or {})
    report['hosts'] = hosts
    report['summary'] = summary
    report['ok'] = all(r['status'] in ('migrated', 'unchanged') for r in hosts.values())
    warned = sorted(n for n, r in hosts.items() if r.get('warnings'))
    if warned:
        report['warnings'] = warned
    return report


def _phase_rows(rec):
    rows = []
    for p in rec.get('phases') or []:
        rows.append((p.get('name', ''), p.get('start', ''), p.get('end', ''), p.get('status', ''),
                     p.get('detail', '') or ''))
    return rows


def window_report_markdown(report):
    """The report as Markdown for a human at 2 a.m.: verdict first, then each host."""
    lines = ['# Maintenance window %s' % report.get('run_id', ''), '']
    verdict = 'SUCCEEDED' if report.get('ok') else 'FAILED'
    lines.append('**%s** - release %s, topology %s, rollback strategy %s.' % (
        verdict, report.get('release', '?'), report.get('topology', '?'), report.get('rollback_strategy', '?')))
    lines.append('')
    for status, names in report.get('summary', {}).items():
        lines.append('- %s: %s' % (status, ', '.join(names)))
    if report.get('warnings'):
        lines.append('- with warnings: %s' % ', '.join(report['warnings']))
    for name in sorted(report.get('hosts', {})):
        rec = report['hosts'][name]
        lines += ['', '## %s: %s' % (name, rec.get('status'))]
        if rec.get('error'):
            lines += ['', '> %s' % str(rec['error']).replace('\n', ' ')]
        for warning in rec.get('warnings') or []:
            lines += ['', '> warning: %s' % str(warning).replace('\n', ' ')]
        snap = rec.get('snapshot') or {}
        facts = [
            ('snapshot', '%s (%s bytes)' % (snap.get('id'), snap.get('bytes')) if snap.get('id') else None),
            ('release', '%s -> %s' % (rec.get('release_from'), rec.get('release_to')) if rec.get('release_to') else None),
            ('migrations applied', ', '.join(rec.get('migrations_applied') or []) or None),
            ('verification', _verification_text(rec.get('verification'))),
            ('restored', ', '.join(k for k, v in sorted((rec.get('restored') or {}).items()) if v) or None),
            ('maintenance flag still up', rec.get('maintenance_flag_left')),
            ('downtime', '%s s' % rec['downtime_seconds'] if rec.get('downtime_seconds') is not None else None),
        ]
        lines.append('')
        for label, value in facts:
            if value:
                lines.append('- %s: %s' % (label, value))
        rows = _phase_rows(rec)
        if rows:
            lines += ['', '| phase | start | end | status | detail |', '| --- | --- | --- | --- | --- |']
            for r in rows:
                lines.append('| %s |' % ' | '.join(str(c).replace('|', '\\|').replace('\n', ' ') for c in r))
    return '\n'.join(lines) + '\n'


def _verification_text(v):
    if not v:
        return None
    if v.get('ok'):
        return 'passed (%d checks)' % len(v.get('checks') or [])
    failed = [c.get('name') for c in v.get('checks') or [] if not c.get('ok')]
    return 'FAILED: %s' % ', '.join(str(f) for f in failed)


def window_report_html(report):
    """The same report as a standalone HTML page."""
    esc = html.escape
    verdict = 'SUCCEEDED' if report.get('ok') else 'FAILED'
    out = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>Maintenance window %s</title>'
           % esc(str(report.get('run_id', ''))),
           '<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}'
           'td,th{border:1px solid #ccc;padding:.2em .5em}.ok{color:#060}.bad{color:#a00}</style></head><body>',
           '<h1>Maintenance window %s</h1>' % esc(str(report.get('run_id', ''))),
           '<p class="%s"><strong>%s</strong> - release %s, topology %s</p>' % (
               'ok' if report.get('ok') else 'bad', verdict, esc(str(report.get('release', '?'))),
               esc(str(report.get('topology', '?')))), '<ul>']
    for status, names in report.get('summary', {}).items():
        out.append('<li>%s: %s</li>' % (esc(status), esc(', '.join(names))))
    if report.get('warnings'):
        out.append('<li>with warnings: %s</li>' % esc(', '.join(report['warnings'])))
    out.append('</ul>')
    for name in sorted(report.get('hosts', {})):
        rec = report['hosts'][name]
        out.append('<h2>%s: %s</h2>' % (esc(name), esc(str(rec.get('status')))))
        if rec.get('error'):
            out.append('<p class="bad">%s</p>' % esc(str(rec['error'])))
        for warning in rec.get('warnings') or []:
            out.append('<p class="bad">warning: %s</p>' % esc(str(warning)))
        if rec.get('maintenance_flag_left'):
            out.append('<p class="bad">maintenance flag still up: %s</p>' % esc(str(rec['maintenance_flag_left'])))
        snap = rec.get('snapshot') or {}
        if snap.get('id'):
            out.append('<p>snapshot %s (%s bytes)</p>' % (esc(str(snap['id'])), esc(str(snap.get('bytes')))))
        rows = _phase_rows(rec)
        if rows:
            out.append('<table><tr><th>phase</th><th>start</th><th>end</th><th>status</th><th>detail</th></tr>')
            for r in rows:
                out.append('<tr>%s</tr>' % ''.join('<td>%s</td>' % esc(str(c)) for c in r))
            out.append('</table>')
    out.append('</body></html>')
    return '\n'.join(out) + '\n'


def django_connection(info, django=None, connection=None, client_bin_dir=None):
    """The db_snapshot/db_restore/db_info connection options of a django_info result, or ``connection``
    when the play gave one (not empty); with ``client_bin_dir`` added when it is set.

    django_info returns the password (with include_password) only when Django read it from the host; a
    password the play itself passed in ``secret_environment`` comes back masked, and django_info names
    the variable instead (``database.password_env``). Take that one from the play's own options."""
    if connection:
        return dict(connection, **({'client_bin_dir': client_bin_dir} if client_bin_dir else {}))
    try:
        database = info['database']
        connection = dict(database['connection'])
    except (KeyError, TypeError):
        raise AnsibleFilterError('django_connection expects a django_info result (with database.connection)')
    env_name = database.get('password_env')
    secret_env = (django or {}).get('secret_environment') or {}
    if env_name and env_name in secret_env:
        connection['login_password'] = secret_env[env_name]
    if client_bin_dir:
        connection['client_bin_dir'] = client_bin_dir
    return connection


def migration_targets(before, after):
    """For each app whose applied migrations changed, the migration to go back to: the last one
    applied before (``applied_migrations`` lists are in applied order), or ``zero``."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        raise AnsibleFilterError('migration_targets expects two applied_migrations dicts')
    targets = []
    for app in sorted(set(before) | set(after)):
        was, now = list(before.get(app) or []), list(after.get(app) or [])
        if was != now:
            targets.append({'app': app, 'target': was[-1] if was else 'zero'})
    return targets


def reverse_rollback_problems(back_plans, migrate_result, now):
    """Why migrating back after a failed window is not safe (an empty list: it is). ``back_plans``: the
    registered results of ``django_migrate plan_only`` for each ``migration_targets`` entry; ``migrate_result``:
    the window's forward ``django_migrate`` result (failed or not); ``now``: ``django_info`` after the failure."""
    if not isinstance(now, dict) or 'applied_migrations' not in now:
        return ['the new release could not be read (%s)' % (now or {}).get('msg', 'no result')]
    results = list((back_plans or {}).get('results') or [])
    migrate_result = migrate_result or {}
    applied = set(migrate_result.get('migrations_applied') or [])
    problems = []
    if not results:
        problems.append('no app to migrate back')
    for r in results:
        app = (r.get('item') or {}).get('app')
        if r.get('failed') or 'plan' not in r:  # registered with failed_when false: a failure has no plan
            problems.append('the step back of %s cannot be planned: %s' % (app, r.get('msg', 'no plan')))
            continue
        if r.get('plan_irreversible'):
            problems.append('irreversible step back: %s' % ', '.join(r['plan_irreversible']))
        older = [s.get('id') for s in r.get('plan') or [] if s.get('id') not in applied]
        if older:
            problems.append('the step back of %s would unapply migrations from before the window: %s'
                            % (app, ', '.join(older)))
    if migrate_result.get('partial_state'):
        problems.append('migration %s failed half-applied' % migrate_result.get('failed_migration'))
    dropped = [s.get('id') for s in migrate_result.get('plan') or []
               if s.get('id') in applied and s.get('destructive')]
    if dropped:
        problems.append('the window applied migrations that drop data: %s' % ', '.join(dropped))
    return problems


def remote_place(remote):
    """Where an off-host store keeps snapshots, as one string: two ``remote`` dicts (the modules' option) with the
    same place write into the same directory or prefix whatever their credentials. '' for no remote."""
    if not remote:
        return ''
    if not isinstance(remote, dict):
        raise AnsibleFilterError('remote_place expects the remote option (a dict), got %r' % (remote,))
    kind = remote.get('type')
    if kind == 's3':
        prefix = str(remote.get('prefix') or '').strip('/')
        return 's3://%s/%s/%s' % (remote.get('endpoint_url') or 'aws', remote.get('bucket') or '', prefix)
    path = '/' + '/'.join(part for part in str(remote.get('path') or '').split('/') if part not in ('', '.'))
    return '%s://%s@%s:%s%s' % (kind, remote.get('user') or '', remote.get('host') or '', remote.get('port') or 22, path)


def offhost_collisions(hosts, hostvars, media_vars=('window_snapshot_media',)):
    """Places of an off-host store that several of ``hosts`` would push snapshots of one id to.

    For a run that gives its snapshots one id on every host (a window's run id, a shared backup's id), the hosts
    that take a snapshot - every host per_host; with ``window_topology: shared`` the primary
    (``window_primary_host``, default the first host) and each host whose ``media_vars`` are all true (their
    default) - and push it to ``djangoops_offhost_remote``. ``[{'place': ..., 'hosts': [...], 'text': ...}]`` for every
    place two or more of them share, in the order of ``hosts`` (``text``: "web1 and web2 to <place>"); ``[]`` when
    none do."""
    hosts = list(hosts or [])
    media_vars = [media_vars] if isinstance(media_vars, str) else list(media_vars or [])
    by_place = {}
    for host in hosts:
        v = hostvars[host]
        if (v.get('window_topology') or 'per_host') == 'shared':
            primary = v.get('window_primary_host') or (hosts[0] if hosts else '')
            if host != primary and not all(_flag(v.get(name, True), host, name) for name in media_vars):
                continue
        place = remote_place(v.get('djangoops_offhost_remote'))
        if place:
            by_place.setdefault(place, []).append(host)
    return [{'place': place, 'hosts': names, 'text': '%s to %s' % (' and '.join(names), place)}
            for place, names in by_place.items() if len(names) > 1]


def _flag(value, host, name):
    try:
        return boolean(value, strict=True)
    except TypeError:
        raise AnsibleFilterError('%s of %s must be a boolean, got %r' % (name, host, value))


class FilterModule(object):
    def filters(self):
        return {
            'row_count_drops': row_count_drops,
            'migration_targets': migration_targets,
            'reverse_rollback_problems': reverse_rollback_problems,
            'django_connection': django_connection,
            'query_check_failures': query_check_failures,
            'collect_window_report': collect_window_report,
            'window_report_markdown': window_report_markdown,
            'window_report_html': window_report_html,
            'remote_place': remote_place,
            'offhost_collisions': offhost_collisions,
        }
