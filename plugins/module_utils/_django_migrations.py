# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: pure arithmetic on Django migration state as the helper reports it
(``app.name`` ids and plan steps): grouping per app, plan summaries, the state a plan leads to,
and the text diff of two applied sets."""

from __future__ import annotations


def split_id(migration_id):
    app, _dot, name = migration_id.partition('.')
    return app, name


def applied_per_app(applied):
    """``['auth.0001_initial', 'shop.0001_initial']`` -> ``{'auth': ['0001_initial'], 'shop': [...]}``,
    keeping the order in which they were applied."""
    out = {}
    for mid in applied:
        app, name = split_id(mid)
        out.setdefault(app, []).append(name)
    return out


def plan_summary(plan):
    return dict(
        plan=plan,
        pending_count=sum(1 for s in plan if not s['backwards']),
        plan_irreversible=[s['id'] for s in plan if s['irreversible']],
        plan_destructive=[s['id'] for s in plan if s['destructive']],
    )


def predicted_after(applied, plan):
    """The applied list after running ``plan`` (faking records the same state as applying)."""
    result = list(applied)
    for step in plan:
        if step['backwards']:
            result = [m for m in result if m != step['id']]
        elif step['id'] not in result:
            result.append(step['id'])
    return result


def state_text(applied):
    """One migration id per line, grouped by app: readable as a diff."""
    return ''.join('%s\n' % m for m in sorted(applied, key=split_id))


def applied_diff(before, after):
    return dict(before=state_text(before), after=state_text(after),
                before_header='applied migrations (before)', after_header='applied migrations (after)')


def step_ids(plan, backwards):
    return [s['id'] for s in plan if s['backwards'] == backwards]
