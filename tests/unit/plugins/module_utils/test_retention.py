# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention arithmetic: durations, pins, and a 400-day grandfather-father-son set whose kept
dates were worked out by hand from the calendar."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils._retention import (
    Policy, RetentionError, label_matcher, parse_duration, plan, stale_partials)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2025, 6, 30, 12, 0, tzinfo=UTC)  # a Monday: ISO week 2025-W27 starts today


def at(y, m, d, hh=3, mm=0):
    return datetime.datetime(y, m, d, hh, mm, tzinfo=UTC)


def sid(t):
    return t.strftime('%Y%m%dT%H%M%SZ')


def snap(t, **labels):
    return dict(id=sid(t), time=t, labels=labels)


def daily_set(days=400, extra=()):
    """One snapshot at 03:00 UTC each day for ``days`` days up to NOW's day, plus ``extra`` times."""
    out = [snap(at(2025, 6, 30) - datetime.timedelta(days=k)) for k in range(days)]
    return out + [snap(t) for t in extra]


def kept_ids(decisions):
    return set(d['id'] for d in decisions if d['keep'])


@pytest.mark.parametrize('text, seconds', [
    ('36h', 36 * 3600), ('7d', 7 * 86400), ('2w', 14 * 86400), ('1w3d', 10 * 86400), ('90m', 5400),
    ('45s', 45), (' 12H ', 12 * 3600), ('1d 12h', 36 * 3600),
])
def test_durations(text, seconds):
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize('bad', ['', '7', 'd7', '7 days', '1y', '-3d', '3.5d', None, '7d junk'])
def test_bad_durations_name_the_value(bad):
    with pytest.raises(RetentionError) as e:
        parse_duration(bad, 'keep_within')
    assert 'keep_within' in str(e.value) and repr(bad) in str(e.value)


def test_gfs_over_400_days_keeps_the_hand_computed_set():
    # Three snapshots on the last day: daily keeps only the newest of them.
    snaps = daily_set(extra=[at(2025, 6, 30, 9), at(2025, 6, 30, 11)])
    policy = Policy(keep_daily=7, keep_weekly=4, keep_monthly=6, keep_yearly=2, keep_labels={})
    decisions = plan(snaps, policy, NOW, newest_id=sid(at(2025, 6, 30, 11)))
    expected = set(sid(t) for t in [
        # daily: the 7 most recent days, newest snapshot of each
        at(2025, 6, 30, 11), at(2025, 6, 29), at(2025, 6, 28), at(2025, 6, 27), at(2025, 6, 26),
        at(2025, 6, 25), at(2025, 6, 24),
        # weekly: W27 (30th, already kept), W26 ends Sun 29th (kept), W25 ends Sun 22nd, W24 ends Sun 15th
        at(2025, 6, 22), at(2025, 6, 15),
        # monthly: last day of May ... January (June's is the 30th, kept)
        at(2025, 5, 31), at(2025, 4, 30), at(2025, 3, 31), at(2025, 2, 28), at(2025, 1, 31),
        # yearly: 2025 (kept) and the last day of 2024
        at(2024, 12, 31),
    ])
    assert kept_ids(decisions) == expected
    assert len(decisions) == 402
    by_id = dict((d['id'], d) for d in decisions)
    assert by_id[sid(at(2025, 6, 30, 11))]['reasons'] == [
        'keep_daily: newest of 2025-06-30 (1 of 7)', 'keep_weekly: newest of 2025-W27 (1 of 4)',
        'keep_monthly: newest of 2025-06 (1 of 6)', 'keep_yearly: newest of 2025 (1 of 2)',
        'newest complete snapshot']
    assert 'daily 2025-06-30 keeps the newer %s' % sid(at(2025, 6, 30, 11)) in by_id[sid(at(2025, 6, 30, 9))]['reasons']
    oldest = by_id[sid(at(2024, 5, 27))]
    assert not oldest['keep']
    assert 'daily 2024-05-27 is beyond the 7 most recent' in oldest['reasons']
    assert 'yearly 2024 keeps the newer %s' % sid(at(2024, 12, 31)) in oldest['reasons']
    # newest first
    assert [d['time'] for d in decisions] == sorted((d['time'] for d in decisions), reverse=True)


def test_periods_without_snapshots_do_not_count():
    # Snapshots only in Jan, Mar and Jun 2025: keep_monthly=3 reaches back to January.
    snaps = [snap(at(2025, 1, 10)), snap(at(2025, 1, 20)), snap(at(2025, 3, 5)), snap(at(2025, 6, 1))]
    decisions = plan(snaps, Policy(keep_monthly=3), NOW)
    assert kept_ids(decisions) == set([sid(at(2025, 1, 20)), sid(at(2025, 3, 5)), sid(at(2025, 6, 1))])


def test_rules_are_independent_and_reasons_accumulate():
    snaps = daily_set(days=10)
    decisions = plan(snaps, Policy(keep_last=2, keep_within='3d12h', keep_daily=3), NOW)
    # within 3d12h of Monday 12:00 is back to Friday 00:00: Fri, Sat, Sun, Mon at 03:00
    assert kept_ids(decisions) == set(sid(at(2025, 6, d)) for d in (27, 28, 29, 30))
    reasons = dict((d['id'], d['reasons']) for d in decisions)
    assert reasons[sid(at(2025, 6, 30))] == ['keep_last: 1 of the last 2', 'keep_within: newer than 84h',
                                             'keep_daily: newest of 2025-06-30 (1 of 3)']
    assert reasons[sid(at(2025, 6, 27))] == ['keep_within: newer than 84h']
    assert reasons[sid(at(2025, 6, 26))] == ['not among the last 2', 'older than 84h',
                                             'daily 2025-06-26 is beyond the 3 most recent']


def test_pinned_and_newest_are_kept_whatever_the_rules():
    snaps = daily_set(days=30)
    snaps[20]['labels'] = {'pinned': 'True'}   # YAML `pinned: true` arrives as 'True'
    snaps[25]['labels'] = {'release': 'v1.4'}
    newest = snaps[0]['id']
    decisions = plan(snaps, Policy(keep_within='1h', keep_labels={'pinned': 'true'}), NOW, newest_id=newest)
    assert kept_ids(decisions) == set([newest, snaps[20]['id']])
    reasons = dict((d['id'], d['reasons']) for d in decisions)
    assert reasons[newest] == ['newest complete snapshot']
    assert reasons[snaps[20]['id']] == ['keep_labels: pinned=True']
    decisions = plan(snaps, Policy(keep_last=1, keep_labels=['release'], keep_ids=[snaps[29]['id']]), NOW)
    assert kept_ids(decisions) == set([newest, snaps[25]['id'], snaps[29]['id']])


@pytest.mark.parametrize('spec, labels, expected', [
    ({'pinned': 'true'}, {'pinned': 'TRUE'}, 'pinned=TRUE'),
    ({'pinned': 'true'}, {'pinned': 'false'}, None),
    ({'pinned': 'true'}, {}, None),
    (['pinned'], {'pinned': 'no'}, 'pinned=no'),
    ('pinned', {'pinned': ''}, 'pinned='),
    ({'release': ['v1', 'v2']}, {'release': 'v2'}, 'release=v2'),
    ({'release': ['v1', 'v2']}, {'release': 'v3'}, None),
    ({'release': None}, {'release': 'anything'}, 'release=anything'),
    ({'release': '*'}, {'release': 'x'}, 'release=x'),
    ({}, {'pinned': 'true'}, None),
    (None, {'pinned': 'true'}, None),
])
def test_label_matching(spec, labels, expected):
    assert label_matcher(spec)(labels) == expected


@pytest.mark.parametrize('spec', [[{'a': 1}], {'a': {'b': 1}}, 42, ['']])
def test_bad_label_specs_are_refused(spec):
    with pytest.raises(RetentionError) as e:
        label_matcher(spec)
    assert 'keep_labels' in str(e.value)


@pytest.mark.parametrize('kw', [{'keep_last': -1}, {'keep_daily': 'x'}, {'keep_weekly': True}, {'keep_hourly': 1.5}])
def test_bad_counts_are_refused(kw):
    with pytest.raises(RetentionError) as e:
        Policy(**kw)
    assert list(kw)[0] in str(e.value)


def test_policy_without_time_rules_is_detectable():
    assert not Policy(keep_labels=['pinned']).has_time_rules()
    assert Policy(keep_yearly=1).has_time_rules()
    assert not Policy(keep_last=0).has_time_rules()


def test_empty_set():
    assert plan([], Policy(keep_last=3), NOW) == []


def test_stale_partials():
    partials = [dict(name='a.partial', time=NOW - datetime.timedelta(hours=25)),
                dict(name='b.partial', time=NOW - datetime.timedelta(hours=23)),
                dict(name='c.partial', time=NOW + datetime.timedelta(hours=1))]
    assert stale_partials(partials, parse_duration('1d'), NOW) == [dict(name='a.partial', age_seconds=25 * 3600)]


def test_a_future_dated_snapshot_is_kept_and_counts_for_no_rule():
    # Taken while the host's clock ran a month ahead: by its date it is the newest, and it would fill
    # the first keep_last place and the newest daily bucket, pushing the genuinely newest ones out.
    ahead = snap(NOW + datetime.timedelta(days=30))
    snaps = daily_set(days=5) + [ahead]
    newest = snaps[0]['id']
    decisions = plan(snaps, Policy(keep_last=2, keep_daily=3, keep_within='1h'), NOW, newest_id=newest)
    assert kept_ids(decisions) == set([ahead['id']] + [s['id'] for s in snaps[:3]])
    by_id = dict((d['id'], d) for d in decisions)
    assert by_id[ahead['id']]['future_dated'] is True and by_id[ahead['id']]['keep'] is True
    assert by_id[ahead['id']]['reasons'] == [
        'future-dated: dated 2025-07-30T12:00:00.000000Z, more than 5m after now; kept, and counted by no rule']
    assert by_id[newest]['reasons'] == ['keep_last: 1 of the last 2', 'keep_daily: newest of 2025-06-30 (1 of 3)',
                                        'newest complete snapshot']
    assert by_id[snaps[1]['id']]['reasons'] == ['keep_last: 2 of the last 2',
                                                'keep_daily: newest of 2025-06-29 (2 of 3)']
    assert not any(d['future_dated'] for d in decisions if d['id'] != ahead['id'])
    assert decisions[0]['id'] == ahead['id'], 'still listed newest first, by its date'


def test_future_dated_is_beyond_the_tolerance_and_checks_every_date():
    within = snap(NOW + datetime.timedelta(minutes=4))           # a clock a little fast: believable
    beyond = snap(NOW + datetime.timedelta(minutes=6))
    late_finish = dict(snap(NOW - datetime.timedelta(hours=1)), dated=NOW + datetime.timedelta(days=1))
    decisions = plan([within, beyond, late_finish], Policy(keep_last=1), NOW)
    by_id = dict((d['id'], d) for d in decisions)
    assert by_id[within['id']]['future_dated'] is False
    assert by_id[within['id']]['reasons'] == ['keep_last: 1 of the last 1']
    assert by_id[beyond['id']]['future_dated'] is True
    assert by_id[late_finish['id']]['future_dated'] is True, 'completed after the clock jumped ahead'
    assert by_id[late_finish['id']]['reasons'][0].startswith('future-dated: dated 2025-07-01T12:00:00.000000Z')


def test_a_future_dated_snapshot_keeps_its_pins_and_takes_no_keep_last_place():
    ahead = snap(NOW + datetime.timedelta(days=2), pinned='true')
    snaps = daily_set(days=3) + [ahead]
    decisions = plan(snaps, Policy(keep_last=1, keep_labels={'pinned': 'true'}), NOW, newest_id=snaps[0]['id'])
    by_id = dict((d['id'], d) for d in decisions)
    assert by_id[ahead['id']]['reasons'] == [
        'future-dated: dated 2025-07-02T12:00:00.000000Z, more than 5m after now; kept, and counted by no rule',
        'keep_labels: pinned=true']
    assert 'newest complete snapshot' in by_id[snaps[0]['id']]['reasons']
    assert kept_ids(decisions) == set([ahead['id'], snaps[0]['id']])
    only = plan([ahead], Policy(keep_last=1), NOW)
    assert [(d['keep'], d['future_dated']) for d in only] == [(True, True)]
