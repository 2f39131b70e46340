# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""djangoops_database_timeout reaches the modules through the roles: a snapshot taken by the snapshot
role, or a restore by the restore role, while another session holds a lock ends at the timeout instead
of waiting for the lock."""

from __future__ import annotations

import json
import os
import time

from support.background import InThread
from support.django_project import django_venvs, shop_factory  # noqa: F401  pylint: disable=unused-import
from support.modules import run_module, run_playbook

PLAY = '''
- name: Snapshot through the role, with the collection-wide database timeout
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    djangoops_database_timeout: 3
  roles:
    - role: djangoops.maintenance.snapshot
      vars:
        snapshot_django: {django}
        snapshot_root: {root}
        snapshot_lock_dir: {locks}
        snapshot_media: false
'''


def test_the_snapshot_role_stops_a_dump_waiting_for_a_lock_at_djangoops_database_timeout(
        shop_factory, tmp_path):  # noqa: F811
    shop = shop_factory('5.2', 'postgresql')
    r = shop.run('django_migrate')
    assert not r.failed, r
    root = tmp_path / 'snaps'
    book = tmp_path / 'play.yml'
    book.write_text(PLAY.format(django=json.dumps(shop.args()), root=json.dumps(str(root)),
                                locks=json.dumps(str(tmp_path / 'locks'))))
    holder = shop.server.connect(shop.dbname, autocommit=False)
    job = InThread(lambda: run_playbook(str(book), timeout=600))
    try:
        holder.execute('LOCK TABLE shop_product IN ACCESS EXCLUSIVE MODE')
        job.start()
        took = job.wait(120, 'the role did not pass the timeout: the dump waits for the lock')
    finally:
        holder.rollback()
        holder.close()
        job.join(600)
    p = job.result
    assert p.returncode != 0, p.stdout[-4000:]
    assert 'timed out after 3s and stopped (still running: pg_dump' in p.stdout, p.stdout[-4000:]
    assert took < 120
    assert not os.path.isdir(root) or os.listdir(root) == [], 'the incomplete snapshot is removed'


RESTORE_PLAY = '''
- name: Restore through the role, with the collection-wide database timeout
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    djangoops_database_timeout: 3
  roles:
    - role: djangoops.maintenance.restore
      vars:
        restore_django: {django}
        restore_root: {root}
        restore_media: false
        restore_release: false
        restore_check_migrations: false
'''


def test_the_restore_role_waits_for_a_lock_no_longer_than_djangoops_database_timeout(
        shop_factory, tmp_path):  # noqa: F811
    # A backup tool holds FLUSH TABLES WITH READ LOCK: replacing the database waits for it. Without a
    # timeout that wait is bounded at 60 s (db_restore's own limit); with one, by the timeout.
    shop = shop_factory('5.2', 'mysql')
    r = shop.run('django_migrate')
    assert not r.failed, r
    root = tmp_path / 'snaps'
    r = run_module('db_snapshot', dict(shop.server.conn_args(shop.dbname), snapshot_root=str(root)))
    assert not r.failed, r
    book = tmp_path / 'play.yml'
    book.write_text(RESTORE_PLAY.format(django=json.dumps(shop.args()), root=json.dumps(str(root))))
    locker = shop.server.connect(None)
    try:
        with locker.cursor() as cur:
            cur.execute('FLUSH TABLES WITH READ LOCK')
        started = time.monotonic()
        p = run_playbook(str(book), timeout=600)
        took = time.monotonic() - started
    finally:
        with locker.cursor() as cur:
            cur.execute('UNLOCK TABLES')
        locker.close()
    assert p.returncode != 0, p.stdout[-4000:]
    assert 'could not re-create database %s' % shop.dbname in p.stdout, p.stdout[-4000:]
    assert 'It was not changed.' in p.stdout, p.stdout[-4000:]
    assert took < 45, 'the wait for the lock was not bounded by the timeout: %.1f s' % took
    assert shop.server.sql('SELECT COUNT(*) FROM django_migrations', database=shop.dbname)[0][0] > 0
