# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull lock of snapshot_copy, the same for every kind of store."""

from __future__ import annotations

import fcntl
import os

from support.media_tree import write


def assert_a_second_pull_is_refused(pull, sid, other):
    """While a first pull of ``sid`` into ``other`` holds its lock (and has a copy under way), ``pull(other)``
    fails at once, naming the lock, and leaves that copy alone; once the lock is free, it pulls the snapshot."""
    os.makedirs(other, 0o700)
    partial = os.path.join(other, sid + '.partial')
    write(os.path.join(partial, 'database', 'being-written'), b'the first pull is writing this')
    lock = os.path.join(other, '.%s.pull-lock' % sid)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the first pull holds it
        second = pull(other)
        assert second.failed and second['msg'] == (
            'another pull of snapshot %s into %s is running (it holds %s); let it finish, then the snapshot is '
            'there' % (sid, other, lock)), second
        assert os.path.isfile(os.path.join(partial, 'database', 'being-written')), 'the first pull lost its copy'
    finally:
        os.close(fd)
    third = pull(other)  # the first one gone (the lock released): it starts anew
    assert not third.failed and third['snapshot_id'] == sid, third
    assert not os.path.exists(lock) and not os.path.exists(partial)
