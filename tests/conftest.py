# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures: throwaway database servers (one of each per test session, plus private ones for
tests that kill or corrupt a server), uniquely named databases, and snapshot roots."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support.modules import COLLECTIONS_PATH, ensure_collection_link  # noqa: E402  pylint: disable=wrong-import-position
from support.servers import MariaDBServer, PostgresServer  # noqa: E402  pylint: disable=wrong-import-position

ensure_collection_link()
# Unit tests import the collection's module_utils directly.
if COLLECTIONS_PATH not in sys.path:
    sys.path.insert(0, COLLECTIONS_PATH)


@pytest.fixture(scope='session')
def pg_server():
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope='session')
def mariadb_server():
    server = MariaDBServer().start()
    yield server
    server.destroy()


@pytest.fixture
def private_pg_server():
    """A server of the test's own, free to be killed."""
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def private_mariadb_server():
    server = MariaDBServer().start()
    yield server
    server.destroy()


def unique_name(prefix='t'):
    return '%s_%s' % (prefix, uuid.uuid4().hex[:10])


@pytest.fixture
def pg_db(pg_server):
    name = unique_name('pg')
    pg_server.create_database(name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def mysql_db(mariadb_server):
    name = unique_name('my')
    mariadb_server.create_database(name)
    yield name
    mariadb_server.drop_database(name)


@pytest.fixture
def snapshot_root(tmp_path):
    return str(tmp_path / 'snapshots')


@pytest.fixture
def world_dir():
    """A directory other users can reach (pytest's tmp_path is root's alone), for modules run as them."""
    base = tempfile.mkdtemp(prefix='djangoops-users-', dir='/var/tmp')
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base)


def pytest_collection_modifyitems(items):
    """The longest tests first - the fleet's, then the other slow ones - so that the two xdist workers end
    together on short tests instead of one of them on a 60-second fleet test while the other idles. The order
    within each group is kept."""
    def weight(item):
        if '/tests/fleet/' in str(item.fspath):
            return 0
        return 1 if item.get_closest_marker('slow') else 2
    items.sort(key=weight)
