# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module run in a thread of its own, for the tests that block it (a lock held in another session) or
break it (a client killed) while it runs, and then check how, and how fast, it ended."""

from __future__ import annotations

import threading
import time


class InThread(threading.Thread):
    """Runs ``fn`` and keeps what it returned in ``result``."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.result = None
        self.started_at = None

    def run(self):
        self.result = self.fn()

    def start(self):
        self.started_at = time.monotonic()
        super().start()

    def join(self, timeout=None):
        if self.started_at is not None:  # a test may fail before it started it
            super().join(timeout)

    def wait(self, seconds, hangs):
        """Wait up to ``seconds`` for it to end and fail with ``hangs`` if it did not; returns the seconds it
        ran. (After releasing what blocked it, the test still joins it, so that none is left running.)"""
        self.join(seconds)
        assert not self.is_alive(), hangs
        return time.monotonic() - self.started_at


class Background(object):
    """Runs ``fn`` on a thread at once; ``join`` returns what it returned or re-raises what it raised (for code
    the test drives from its own process, such as a push held at one of its requests)."""

    def __init__(self, fn):
        self.error, self.result = [], []
        self.thread = threading.Thread(target=self._run, args=(fn,))
        self.thread.start()

    def _run(self, fn):
        try:
            self.result.append(fn())
        except Exception as e:  # pylint: disable=broad-except
            self.error.append(e)

    def join(self):
        self.thread.join(120)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error[0]
        return self.result[0]
