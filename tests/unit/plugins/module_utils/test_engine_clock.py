# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_engine_base.start_clock / time_left / lock_wait_seconds: one timeout for a whole dump or restore."""

from __future__ import annotations

import sys

from support.modules import COLLECTIONS_PATH, ensure_collection_link

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

# pylint: disable=wrong-import-position
from ansible_collections.djangoops.maintenance.plugins.module_utils import _engine_base  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (  # noqa: E402
    lock_wait_seconds, start_clock, time_left)


class Clock(object):
    def __init__(self, now=1000.0):
        self.now = now

    def monotonic(self):
        return self.now


def test_without_a_timeout_nothing_is_limited(monkeypatch):
    monkeypatch.setattr(_engine_base, 'time', Clock())
    opts = start_clock({'timeout': None})
    assert 'deadline' not in opts and time_left(opts) is None
    assert lock_wait_seconds(opts, 60) == 60


def test_every_step_gets_what_is_left_of_one_timeout(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(_engine_base, 'time', clock)
    opts = start_clock({'timeout': 10})
    assert time_left(opts) == 10
    clock.now += 6.5  # a first step (a lock wait, a pipeline) took 6.5 s
    assert time_left(opts) == 3.5
    assert lock_wait_seconds(opts, 60) == 4  # whole seconds, rounded up
    assert lock_wait_seconds(opts, 2) == 2  # the step's own limit when shorter
    clock.now += 10  # past the deadline: a later step is stopped at once, not given a fresh timeout
    assert time_left(opts) == 0.001
    assert lock_wait_seconds(opts, 60) == 1


def test_options_without_a_started_clock_keep_the_plain_timeout():
    # An engine called without start_clock (the modules always start it) falls back to the timeout itself.
    assert time_left({'timeout': 7}) == 7 and time_left({}) is None
