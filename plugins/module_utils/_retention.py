# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: which snapshots a retention policy keeps. Pure logic, no I/O.

Every rule is applied on its own to all snapshots, newest first, and a snapshot is kept when any rule
selects it (the restic semantics; unlike borg, a snapshot kept by one rule still counts for the
others). Kept snapshots carry every reason that keeps them, deleted ones why no rule did.

Calendar rules (hourly ... yearly) keep the newest snapshot of each of the N most recent periods that
have a snapshot; periods without one do not count. Periods are UTC; weeks are ISO weeks.

A future-dated snapshot (dated more than ``_snapshot.FUTURE_TOLERANCE`` after now: taken while a clock ran
ahead) is always kept and counts for no rule: by its date it would take the first keep_last place and the
newest period's bucket, and push the genuinely newest snapshots out.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import FUTURE_TOLERANCE, isoformat

UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}
_DURATION_RE = re.compile(r'(\d+)\s*([smhdw])')

PERIODS = (
    ('hourly', lambda t: t.strftime('%Y-%m-%dT%H')),
    ('daily', lambda t: t.strftime('%Y-%m-%d')),
    ('weekly', lambda t: '%04d-W%02d' % tuple(t.isocalendar()[:2])),
    ('monthly', lambda t: t.strftime('%Y-%m')),
    ('yearly', lambda t: t.strftime('%Y')),
)


class RetentionError(ValueError):
    """A bad policy value; the message names it."""


def parse_duration(text, option='duration'):
    """``36h``, ``7d``, ``2w``, ``1w3d``, ``90m``, ``45s`` as a timedelta."""
    s = str(text).strip().lower() if text is not None else ''
    if not s or _DURATION_RE.sub('', s).strip():
        raise RetentionError('invalid %s %r: use a number and a unit (s, m, h, d, w), for example 36h, 7d, 2w or 1w3d'
                             % (option, text))
    seconds = sum(int(n) * UNITS[u] for n, u in _DURATION_RE.findall(s))
    return datetime.timedelta(seconds=seconds)


def format_duration(delta):
    seconds = int(delta.total_seconds())
    for unit in ('w', 'd', 'h', 'm'):
        if seconds and seconds % UNITS[unit] == 0:
            return '%d%s' % (seconds // UNITS[unit], unit)
    return '%ds' % seconds


def label_matcher(spec):
    """``keep_labels`` as a predicate on a labels dict.

    A list of keys keeps snapshots that have any of those labels, whatever the value. A dict keeps
    snapshots whose label equals the value, or one of the values of a list; null means any value.
    Values compare case-insensitively (YAML turns ``true`` into ``True``). Returns a function giving
    the matching ``key=value`` or None."""
    if spec is None or spec == '' or spec == [] or spec == {}:
        rules = {}
    elif isinstance(spec, str):
        rules = {spec: None}
    elif isinstance(spec, (list, tuple)):
        rules = {}
        for key in spec:
            if not isinstance(key, str) or not key:
                raise RetentionError('keep_labels: a list must hold label names, got %r' % (key,))
            rules[key] = None
    elif isinstance(spec, dict):
        rules = {}
        for key, value in spec.items():
            if value is None or value == '*':
                rules[str(key)] = None
            elif isinstance(value, (list, tuple)):
                rules[str(key)] = set(str(v).lower() for v in value)
            elif isinstance(value, dict):
                raise RetentionError('keep_labels: the value of %r must be a string or a list, got %r' % (key, value))
            else:
                rules[str(key)] = set([str(value).lower()])
    else:
        raise RetentionError('keep_labels must be a list of label names or a dict of label values, got %r' % (spec,))

    def match(labels):
        for key in sorted(rules):
            if key not in (labels or {}):
                continue
            value = str(labels[key])
            if rules[key] is None or value.lower() in rules[key]:
                return '%s=%s' % (key, value)
        return None
    return match


class Policy(object):
    def __init__(self, keep_last=None, keep_within=None, keep_labels=None, keep_ids=None, **periods):
        self.keep_last = self._count('keep_last', keep_last)
        self.keep_within = parse_duration(keep_within, 'keep_within') if keep_within not in (None, '') else None
        self.periods = []
        for name, dummy in PERIODS:
            n = self._count('keep_' + name, periods.pop('keep_' + name, None))
            if n:
                self.periods.append((name, n))
        if periods:
            raise RetentionError('unknown retention rule(s): %s' % ', '.join(sorted(periods)))
        self.keep_labels = keep_labels
        self.label_match = label_matcher(keep_labels)
        self.keep_ids = set(keep_ids or [])

    @staticmethod
    def _count(name, value):
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RetentionError('%s must be a whole number >= 0, got %r' % (name, value))
        return value

    def has_time_rules(self):
        return bool(self.keep_last or self.keep_within or self.periods)


def _ordered(snapshots):
    return sorted(snapshots, key=lambda s: (s['time'], s['id']), reverse=True)


def _dated(snapshot):
    """The latest date a snapshot carries (``time`` or ``dated``)."""
    return max(t for t in (snapshot['time'], snapshot.get('dated')) if t is not None)


def plan(snapshots, policy, now, newest_id=None):
    """Decide for each snapshot (dicts with ``id``, ``time`` (aware datetime, when it was begun: what rules
    rank by), optional ``dated`` (the latest date it carries, its completion) and ``labels``).

    ``newest_id`` is the newest complete snapshot (what ``latest`` resolves to); it is always kept.
    Future-dated snapshots are kept and left out of every rule's ranking.
    Returns a list, newest first, of dicts ``id``, ``time``, ``dated`` (the latest date it carries),
    ``keep``, ``future_dated`` and ``reasons`` (why it is kept, or why nothing keeps it)."""
    everything = _ordered(snapshots)
    kept = dict((s['id'], []) for s in everything)
    why_not = dict((s['id'], []) for s in everything)
    future = set()
    for s in everything:
        if _dated(s) > now + FUTURE_TOLERANCE:
            future.add(s['id'])
            kept[s['id']].append('future-dated: dated %s, more than %s after now; kept, and counted by no rule'
                                 % (isoformat(_dated(s)), format_duration(FUTURE_TOLERANCE)))
    ordered = [s for s in everything if s['id'] not in future]

    if policy.keep_last:
        for i, s in enumerate(ordered):
            if i < policy.keep_last:
                kept[s['id']].append('keep_last: %d of the last %d' % (i + 1, policy.keep_last))
            else:
                why_not[s['id']].append('not among the last %d' % policy.keep_last)

    if policy.keep_within is not None:
        cutoff = now - policy.keep_within
        for s in ordered:
            if s['time'] >= cutoff:
                kept[s['id']].append('keep_within: newer than %s' % format_duration(policy.keep_within))
            else:
                why_not[s['id']].append('older than %s' % format_duration(policy.keep_within))

    period_keys = dict(PERIODS)
    for name, count in policy.periods:
        key_of = period_keys[name]
        chosen = {}
        for s in ordered:
            bucket = key_of(s['time'])
            if bucket in chosen:
                why_not[s['id']].append('%s %s keeps the newer %s' % (name, bucket, chosen[bucket]))
            elif len(chosen) < count:
                chosen[bucket] = s['id']
                kept[s['id']].append('keep_%s: newest of %s (%d of %d)' % (name, bucket, len(chosen), count))
            else:
                why_not[s['id']].append('%s %s is beyond the %d most recent' % (name, bucket, count))

    for s in everything:
        label = policy.label_match(s.get('labels'))
        if label:
            kept[s['id']].append('keep_labels: %s' % label)
        if s['id'] in policy.keep_ids:
            kept[s['id']].append('keep_ids')
        if s['id'] == newest_id:
            kept[s['id']].append('newest complete snapshot')

    out = []
    for s in everything:
        keep = bool(kept[s['id']])
        reasons = kept[s['id']] if keep else (why_not[s['id']] or ['no rule keeps it'])
        out.append(dict(id=s['id'], time=s['time'], dated=_dated(s), keep=keep, future_dated=s['id'] in future,
                        reasons=reasons))
    return out


def stale_partials(partials, max_age, now):
    """Partial (incomplete) snapshots older than ``max_age``: dicts ``name`` and ``time`` (their last
    sign of activity) in, ``name`` and ``age_seconds`` of those to remove out."""
    out = []
    for p in sorted(partials, key=lambda p: p['name']):
        age = now - p['time']
        if age > max_age:
            out.append(dict(name=p['name'], age_seconds=int(age.total_seconds())))
    return out
