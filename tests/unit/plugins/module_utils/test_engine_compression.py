# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""compression and compression_level: checked, defaulted, and handed to the streaming compressor."""

from __future__ import annotations

import os
import sys

import pytest

from support.modules import COLLECTIONS_PATH, ensure_collection_link

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

# pylint: disable=wrong-import-position
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (  # noqa: E402
    ZSTD_TEXT_PARAMS, EngineError, check_compression, compressor_step)
from ansible_collections.djangoops.maintenance.plugins.module_utils._engines import get_engine  # noqa: E402


@pytest.mark.parametrize('compression, level, expected', [
    ('none', None, None), ('none', 9, None),
    ('zstd', None, 3), ('gzip', None, 6),
    ('zstd', 1, 1), ('zstd', 19, 19), ('gzip', 1, 1), ('gzip', 9, 9),
])
def test_levels_in_range_and_defaults(compression, level, expected):
    assert check_compression(compression, level) == expected


@pytest.mark.parametrize('compression, level, says', [
    ('zstd', 0, 'compression_level 0 is out of range for zstd (1-19)'),
    ('zstd', 20, 'compression_level 20 is out of range for zstd (1-19)'),
    ('gzip', 10, 'compression_level 10 is out of range for gzip (1-9)'),
    ('gzip', -1, 'compression_level -1 is out of range for gzip (1-9)'),
    ('lz4', None, "compression must be one of none, gzip, zstd, got 'lz4'"),
])
def test_bad_values_are_refused_by_name(compression, level, says):
    with pytest.raises(EngineError) as e:
        check_compression(compression, level)
    assert str(e.value) == says


@pytest.mark.parametrize('compression, level, flag', [('zstd', 19, '-19'), ('zstd', None, '-3'), ('gzip', 1, '-1')])
def test_the_level_reaches_the_compressor(compression, level, flag):
    step = compressor_step(compression, level)
    assert os.path.basename(step.argv[0]) in ({'zstd'} if compression == 'zstd' else {'gzip', 'pigz'})
    assert flag in step.argv and '-c' in step.argv, step.argv
    assert [a for a in step.argv[1:] if a.lstrip('-').isdigit()] == [flag], 'one level, the one asked for'


def test_no_compressor_for_none():
    assert compressor_step('none', None) is None


def test_zstd_parameters_follow_the_level():
    step = compressor_step('zstd', None, params=ZSTD_TEXT_PARAMS)
    assert step.argv[1:] == ['-q', '-c', '-3', '--zstd=' + ZSTD_TEXT_PARAMS, '-T0'], step.argv
    assert '--zstd=' + ZSTD_TEXT_PARAMS not in compressor_step('zstd', 3).argv
    assert compressor_step('gzip', None, params=ZSTD_TEXT_PARAMS).argv[1:] == ['-c', '-6'], 'zstd only'


@pytest.mark.parametrize('engine, opts, params', [
    ('postgresql', dict(compression='zstd'), ZSTD_TEXT_PARAMS),
    ('postgresql', dict(compression='zstd', format='plain'), ZSTD_TEXT_PARAMS),
    ('postgresql', dict(compression='zstd', format='directory'), None),
    ('postgresql', dict(compression='zstd', compression_level=3), None),
    ('postgresql', dict(compression='gzip'), None),
    ('mysql', dict(compression='zstd'), ZSTD_TEXT_PARAMS),
    ('mysql', dict(compression='zstd', compression_level=1), None),
    ('sqlite', dict(compression='zstd'), None),
])
def test_sql_dumps_at_the_default_zstd_level_get_the_text_parameters(tmp_path, engine, opts, params):
    """A level the user chose is run as it is; SQLite's binary pages keep zstd's own parameters."""
    conn = dict(database='shop', login_user='u', login_host='127.0.0.1', path=str(tmp_path / 'db.sqlite3'))
    resolved = get_engine(engine, conn, str(tmp_path)).resolve_options(opts)
    assert resolved.get('compression_params') == params, resolved
    assert resolved['compression_level'] == opts.get('compression_level', 6 if opts['compression'] == 'gzip' else 3)
