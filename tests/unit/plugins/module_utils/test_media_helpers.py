# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of media snapshots: the space reserve and tree names."""

from __future__ import annotations

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils._media import parse_reserve, tree_name
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotError

GIB = 2 ** 30


@pytest.mark.parametrize('text, expected', [
    ('5%', 5 * GIB), ('0', 0), ('0%', 0), ('100%', 100 * GIB), ('2.5%', int(2.5 * GIB)), ('500M', 500 * 2 ** 20),
    ('2G', 2 * GIB), ('2GiB', 2 * GIB), ('2gb', 2 * GIB), ('1048576', 2 ** 20), (' 1 T ', 2 ** 40), ('64k', 65536),
])
def test_reserve(text, expected):
    assert parse_reserve(text, 100 * GIB) == expected


@pytest.mark.parametrize('bad', ['', 'lots', '5 percent', '101%', '-1G', '1.5.5M', '5%%', 'G'])
def test_bad_reserve(bad):
    with pytest.raises(SnapshotError) as e:
        parse_reserve(bad, GIB)
    assert repr(bad) in str(e.value)


def test_tree_names_are_safe_and_unique():
    taken = set()
    names = [tree_name(p, taken) for p in ('/srv/a/media', '/srv/b/media/', '/srv/c/media', '/srv/Uploads (old)',
                                           '/', '/srv/..hidden', '/srv/' + 'x' * 100)]
    assert names == ['media', 'media-2', 'media-3', 'Uploads_old', 'root', 'hidden', 'x' * 60]
