# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: proving a loaded fixture complete by its recorded object counts."""

from __future__ import annotations


def compare_counts(recorded, loaded, tables=None):
    """Per model: the objects Django deserialized must equal what dumpdata wrote; after a flush,
    the rows in each table must too (anything more was not in the fixture, anything less was
    merged away by a duplicate key). Returns a list of mismatches, empty when it all holds."""
    mismatches = []
    for model in sorted(set(recorded) | set(loaded)):
        want, got = recorded.get(model, 0), loaded.get(model, 0)
        if want != got:
            mismatches.append({'model': model, 'problem': 'loaded %d objects, the fixture recorded %d' % (got, want),
                               'recorded': want, 'loaded': got})
        elif tables is not None and tables.get(model) != want:
            mismatches.append({'model': model, 'problem': 'table holds %s rows after flush and load, the fixture '
                               'recorded %d' % (tables.get(model), want), 'recorded': want, 'rows': tables.get(model)})
    return mismatches
