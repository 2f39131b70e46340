# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet tests: several SSH hosts on this machine (tests/support/rig.py, docs/testing.md).

``rig`` is a fresh 3-host rig per test: it is up in about a second and down in a fraction of one,
which buys every test hosts that no earlier test left down, dirty or stopped. ``make_rig(n)`` gives
rigs of other sizes, torn down with the test as well.

Every test here is marked ``fleet``. They skip only where a rig cannot exist at all (not root, or no
`ip netns`); anything else that stops a rig is an error, so CI, which runs as root, always runs them.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from support.rig import Rig

HERE = pathlib.Path(__file__).parent


def _why_no_rig():
    if os.geteuid() != 0:
        return 'fleet tests need root (network namespaces, bridges, sshd); run them as root, e.g. in CI'
    if shutil.which('ip') is None:
        return 'fleet tests need iproute2 (`ip netns`); make test installs it'
    p = subprocess.run(['ip', 'netns', 'list'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       universal_newlines=True, check=False)
    if p.returncode != 0:
        return 'fleet tests need `ip netns`, which fails here: %s' % p.stderr.strip()
    return None


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    for item in items:
        if HERE in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fleet)


@pytest.fixture(scope='session')
def rig_available():
    reason = _why_no_rig()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def make_rig(rig_available):  # pylint: disable=redefined-outer-name,unused-argument
    """``make_rig(n)`` starts an n-host rig that is torn down when the test ends, however it ends."""
    rigs = []

    def make(hosts=3):
        r = Rig(hosts)
        rigs.append(r)
        return r.start()

    yield make
    errors = []
    for r in reversed(rigs):
        try:
            r.stop()
        except Exception as e:  # pylint: disable=broad-except
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def rig(make_rig):  # pylint: disable=redefined-outer-name
    """A ready rig of three hosts, h1..h3, each answering SSH as root."""
    return make_rig(3)
