# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: every task result as one JSON line in the file named by
DJANGOOPS_RESULT_LINES, so tests read results instead of parsing screen output (ansible-core's
json callback lives in ansible.posix, which the tests do not install; tree and oneline are deprecated)."""

from __future__ import annotations

DOCUMENTATION = """
    name: result_lines
    type: notification
    short_description: Task results as JSON lines, for this collection's tests
    description:
      - Appends one JSON object per host and task to the file named by E(DJANGOOPS_RESULT_LINES).
    author: djangoops maintainers (@djangoops)
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'result_lines'
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, status, result):
        path = os.environ.get('DJANGOOPS_RESULT_LINES')
        if not path:
            return
        res = getattr(result, 'result', None)
        if res is None:
            res = result._result  # pylint: disable=protected-access
        line = {'host': result.host.get_name(), 'task': result.task.get_name(), 'status': status,
                'result': json.loads(self._dump_results(res))}
        with open(path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(line) + '\n')

    def v2_runner_on_ok(self, result):
        self._write('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write('ignored' if ignore_errors else 'failed', result)

    def v2_runner_on_unreachable(self, result):
        self._write('unreachable', result)

    def v2_runner_on_skipped(self, result):
        self._write('skipped', result)
