# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""djangoops_database_client_bin_dir reaches the database modules through the roles, added to the connection
Django's settings give: with PostgreSQL 17's client tools for the 15 server of the shop, the snapshot role
and the restore role are refused by the modules' pre-flight (docs/engines/postgresql.md), before anything is
written or touched."""

from __future__ import annotations

import json
import os

from support.django_project import django_venvs, shop_factory  # noqa: F401  pylint: disable=unused-import
from support.modules import run_module, run_playbook
from support.servers import pg_series

PLAY = '''
- name: A role with the collection-wide client tools directory
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    djangoops_database_client_bin_dir: {bindir}
  roles:
    - role: djangoops.maintenance.{role}
      vars: {role_vars}
'''


def play(tmp_path, role, role_vars):
    book = tmp_path / ('%s.yml' % role)
    book.write_text(PLAY.format(bindir=json.dumps(pg_series('17')[1]), role=role, role_vars=json.dumps(role_vars)))
    return run_playbook(str(book), timeout=600)


def test_the_snapshot_and_restore_roles_use_djangoops_database_client_bin_dir(shop_factory, tmp_path):  # noqa: F811
    shop = shop_factory('5.2', 'postgresql')
    r = shop.run('django_migrate')
    assert not r.failed, r
    root = tmp_path / 'snaps'
    p = play(tmp_path, 'snapshot', dict(snapshot_django=shop.args(), snapshot_root=str(root), snapshot_media=False,
                                        snapshot_lock_dir=str(tmp_path / 'locks')))
    assert p.returncode != 0, p.stdout[-4000:]
    assert 'pg_dump 17.' in p.stdout and 'cannot be restored into the PostgreSQL server 15.' in p.stdout, \
        p.stdout[-4000:]
    assert not os.path.isdir(root) or os.listdir(root) == [], 'nothing written'

    r = run_module('db_snapshot', dict(shop.server.conn_args(shop.dbname), snapshot_root=str(root)))
    assert not r.failed, r
    before = shop.server.sql('SELECT count(*) FROM django_migrations', database=shop.dbname)[0][0]
    p = play(tmp_path, 'restore', dict(restore_django=shop.args(), restore_root=str(root), restore_media=False,
                                       restore_release=False, restore_check_migrations=False))
    assert p.returncode != 0, p.stdout[-4000:]
    assert 'pg_restore 17.' in p.stdout and 'cannot restore into the PostgreSQL server 15.' in p.stdout, \
        p.stdout[-4000:]
    assert shop.server.sql('SELECT count(*) FROM django_migrations', database=shop.dbname)[0][0] == before
    # with the play's own connection instead of Django's, the directory is added to that one
    p = play(tmp_path, 'restore', dict(restore_django=shop.args(), restore_root=str(root), restore_media=False,
                                       restore_release=False, restore_check_migrations=False,
                                       restore_database_connection=shop.server.conn_args(shop.dbname)))
    assert p.returncode != 0, p.stdout[-4000:]
    assert 'pg_restore 17.' in p.stdout and 'cannot restore into the PostgreSQL server 15.' in p.stdout, \
        p.stdout[-4000:]
    assert shop.server.password not in p.stdout
    assert shop.server.sql('SELECT count(*) FROM django_migrations', database=shop.dbname)[0][0] == before
