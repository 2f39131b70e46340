# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A process that owns a rig and then waits to be killed: test_rig.py kills it with SIGTERM (its
teardown must run) or SIGKILL (its leftovers must be swept by the next rig).

Usage: python rig_owner.py HOSTS [postgres]. Prints the rig id once the rig is up."""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from support.rig import Rig  # noqa: E402  pylint: disable=wrong-import-position


def main():
    with Rig(int(sys.argv[1])) as rig:
        if 'postgres' in sys.argv[2:]:
            rig.start_postgres('h1')
        rig['h1'].popen(['sleep', '600'])
        print(rig.id, flush=True)
        time.sleep(600)


if __name__ == '__main__':
    main()
