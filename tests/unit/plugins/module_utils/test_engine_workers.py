# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_engine_base.in_workers: tasks on N threads, each with a resource of its own (a connection)."""

from __future__ import annotations

import contextlib
import sys
import threading

import pytest

from support.modules import COLLECTIONS_PATH, ensure_collection_link

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

# pylint: disable=wrong-import-position
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import in_workers  # noqa: E402


class Resources(object):
    """Counts the resources opened and closed, and which resource ran which task."""

    def __init__(self):
        self.opened = []
        self.closed = []
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def __call__(self):
        with self.lock:
            name = 'r%d' % len(self.opened)
            self.opened.append(name)
        try:
            yield name
        finally:
            with self.lock:
                self.closed.append(name)


@pytest.mark.parametrize('count', [1, 2, 5])
def test_results_come_back_in_task_order_and_every_resource_is_closed(count):
    res = Resources()
    tasks = [lambda r, i=i: (i * i, r) for i in range(7)]
    out = in_workers(tasks, count, res)
    assert [v for v, dummy in out] == [i * i for i in range(7)]
    assert len(res.opened) == min(count, 7)
    assert sorted(res.closed) == sorted(res.opened)
    assert set(r for dummy, r in out) <= set(res.opened)


def test_no_more_workers_than_tasks():
    res = Resources()
    assert in_workers([lambda r: 1], 4, res) == [1]
    assert len(res.opened) == 1


def test_tasks_run_at_the_same_time():
    # Each of the two tasks waits for the other: on one thread this barrier would break.
    barrier = threading.Barrier(2, timeout=10)
    res = Resources()
    out = in_workers([lambda r: barrier.wait() is not None, lambda r: barrier.wait() is not None], 2, res)
    assert out == [True, True]
    assert len(set(res.opened)) == 2


def test_after_an_error_no_new_task_starts():
    started = []

    def task(name, fail=False):
        def run(r):
            started.append(name)
            if fail:
                raise ValueError('bad relation')
        return run

    res = Resources()
    with pytest.raises(ValueError, match='bad relation'):
        in_workers([task('a'), task('b', fail=True), task('c'), task('d')], 1, res)
    assert started == ['a', 'b']
    assert res.closed == res.opened == ['r0']


def test_an_error_waits_for_the_task_still_running_elsewhere():
    finished = []
    gate = threading.Event()

    def boom(r):
        gate.set()
        raise ValueError('bad relation')

    def slow(r):
        gate.wait(10)  # the error happens while this one runs; it still ends before the call returns
        finished.append('slow')

    res = Resources()
    with pytest.raises(ValueError, match='bad relation'):
        in_workers([slow, boom], 2, res)
    assert finished == ['slow']
    assert sorted(res.closed) == sorted(res.opened) == ['r0', 'r1']


def test_a_resource_that_cannot_be_opened_is_the_error():
    def refused():
        raise RuntimeError('cannot connect')

    with pytest.raises(RuntimeError, match='cannot connect'):
        in_workers([lambda r: 1, lambda r: 2], 2, refused)
