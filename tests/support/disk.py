# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small real file systems for the tests of a full or read-only disk (tmpfs; the tests run as root)."""

from __future__ import annotations

import contextlib
import os
import subprocess

from support.modules import run_module


@contextlib.contextmanager
def small_tmpfs(path, size='8m', readonly=False):
    """A tmpfs of ``size`` mounted on ``path`` (created) for the block; unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    options = 'size=%s' % size + (',ro' if readonly else '')
    subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', path], check=True)
    try:
        yield path
    finally:
        subprocess.run(['umount', path], check=True)


def assert_full_disk_fails_cleanly(take, root, says=('No space left on device',)):
    """``take(root, **kw)`` snapshots into ``root``, on a file system too small for it, with the pre-flight
    off: it must fail naming the full disk (one of ``says``) and leave nothing under ``root``, neither a
    snapshot nor a ``.partial`` directory."""
    r = take(root, space_check=False)
    assert r.failed, r
    assert any(s in r['msg'] for s in says), r['msg']
    assert 'Traceback' not in r['msg'] and not r['msg'].startswith('OSError'), r['msg']
    assert os.listdir(root) == [], 'the failed snapshot must be removed: %s' % os.listdir(root)
    info = run_module('snapshot_info', dict(snapshot_root=root))
    assert info['snapshots'] == [] and info['incomplete'] == [], info
