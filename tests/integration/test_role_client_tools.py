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


def play(tmp_path, role, role_vars, bindir=None):
    book = tmp_path / ('%s.yml' % role)
    bindir = pg_series('17')[1] if bindir is None else bindir
    book.write_text(PLAY.format(bindir=json.dumps(bindir), role=role, role_vars=json.dumps(role_vars)))
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


def test_the_restore_role_checks_the_database_restore_before_it_switches_the_code_back(shop_factory,  # noqa: F811
                                                                                     tmp_path):
    """The restore role switches the code back to the recorded release before it restores the database. Were the
    database restore then refused (here: PostgreSQL 17's pg_restore for the 15 server), the old code would run on
    the new schema. So the role first runs db_restore in check mode, and a refusal leaves the release link where
    it was; with the server's own tools the same role switches back and restores."""
    shop = shop_factory('5.2', 'postgresql')
    r = shop.run('django_migrate')
    assert not r.failed, r
    releases, link, root = tmp_path / 'releases', tmp_path / 'current', tmp_path / 'snaps'
    for release in ('v1', 'v2'):
        (releases / release).mkdir(parents=True)
    os.symlink(str(releases / 'v1'), str(link))
    p = play(tmp_path, 'snapshot', dict(snapshot_django=shop.args(), snapshot_root=str(root), snapshot_media=False,
                                        snapshot_lock_dir=str(tmp_path / 'locks'), snapshot_release_link=str(link)),
             bindir='')
    assert p.returncode == 0, p.stdout[-4000:]
    os.unlink(str(link))
    os.symlink(str(releases / 'v2'), str(link))  # the deploy
    shop.server.sql('CREATE TABLE added_by_the_deploy (id int)', database=shop.dbname)
    restore_vars = dict(restore_django=shop.args(), restore_root=str(root), restore_media=False,
                        restore_release_link=str(link), restore_check_migrations=False)
    p = play(tmp_path, 'restore', restore_vars)
    assert p.returncode != 0, p.stdout[-4000:]
    assert 'Check the snapshot, the server and the client tools' in p.stdout, p.stdout[-4000:]
    assert 'pg_restore 17.' in p.stdout and 'cannot restore into the PostgreSQL server 15.' in p.stdout, \
        p.stdout[-4000:]
    assert os.readlink(str(link)) == str(releases / 'v2'), 'the code was switched back, the database was not'
    assert shop.server.sql("SELECT to_regclass('added_by_the_deploy') IS NOT NULL", database=shop.dbname)[0][0]
    # the same with the play's own connection (Django's settings are then not read for the check)
    p = play(tmp_path, 'restore', dict(restore_vars, restore_database_connection=shop.server.conn_args(shop.dbname)))
    assert p.returncode != 0, p.stdout[-4000:]
    assert 'pg_restore 17.' in p.stdout and 'cannot restore into the PostgreSQL server 15.' in p.stdout, \
        p.stdout[-4000:]
    assert shop.server.password not in p.stdout
    assert os.readlink(str(link)) == str(releases / 'v2'), 'the code was switched back, the database was not'
    p = play(tmp_path, 'restore', restore_vars, bindir='')
    assert p.returncode == 0, p.stdout[-4000:]
    assert os.readlink(str(link)) == str(releases / 'v1')
    assert not shop.server.sql("SELECT to_regclass('added_by_the_deploy') IS NOT NULL", database=shop.dbname)[0][0]
