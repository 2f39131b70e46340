# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/restore.yml on the demo shop (as tests/integration/test_playbooks_local.py runs it): a restore that
db_restore or media_restore refuses after the app was stopped, but before either touched its target, changed
nothing - the app is started again and the flag lowered; one that failed after the database was replaced says
so and leaves both. And --check with a snapshot that is only on the off-host store (an S3 server, an SSH backup
host): it reports what would be pulled and restored, and changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from support.django_project import django_venvs  # noqa: F401  pylint: disable=unused-import
from support.modules import run_module
from support.s3_server import S3Server
from test_offhost_ssh_local import sshd  # noqa: F401  pylint: disable=unused-import
from test_playbooks_local import execute, shop, task_results  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow


def forge_database_part(shop, snapshot_id, change):  # pylint: disable=redefined-outer-name
    """Change the snapshot's database part with ``change(part, snapshot_dir)`` and save the manifest: what the
    checks before the stop read (the checksums, the manifest) still holds."""
    path = os.path.join(shop.backups, snapshot_id, 'manifest.json')
    with open(path, encoding='utf-8') as f:
        manifest = json.load(f)
    change(manifest['parts']['database'], os.path.join(shop.backups, snapshot_id))
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(manifest, f)


def no_dump(part, snapdir):
    """The dump's bytes become bytes that are no dump, listed with their size and sha256."""
    entry = part['files'][0]
    data = os.urandom(entry['size'])
    with open(os.path.join(snapdir, entry['path']), 'wb') as f:
        f.write(data)
    entry['sha256'] = hashlib.sha256(data).hexdigest()


def one_row_more(part, snapdir):  # pylint: disable=unused-argument
    part['tables']['shop_product']['rows'] += 1


NOTHING = 'failed before anything was restored, at Restore the %s'
PUT_BACK = 'the app was started again and the maintenance flag lowered'


def test_a_database_restore_refused_before_it_touched_the_database_puts_the_app_back(shop):  # pylint: disable=redefined-outer-name
    """Every check before the stop passes (checksums, the release, db_restore in check mode, which reads no row);
    db_restore then finds the dump is none while it unpacks it beside the database, before it replaces it."""
    shop.install(djangoops_release_link=shop.current)
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()
    execute(shop.demo.db, 'DELETE FROM shop_orderline')
    damaged = shop.data()
    forge_database_part(shop, snapshot, no_dump)

    failed = shop.run('restore', djangoops_restore_confirm='RESTORE', djangoops_snapshot_id=snapshot)
    assert failed.returncode != 0, failed.stdout[-4000:]
    assert task_results(failed.stdout, 'Stop the app') == {'demo-shop': 'changed'}, failed.stdout[-6000:]
    assert NOTHING % 'database and prove it exact' in failed.stdout, failed.stdout[-4000:]
    assert PUT_BACK in failed.stdout, failed.stdout[-4000:]
    assert shop.data() == damaged
    assert not os.path.exists(shop.flag) and shop.serving(), 'the app was left stopped for nothing'
    assert not os.listdir(os.path.join(shop.demo.root, 'locks'))


def test_a_database_restore_that_failed_after_it_replaced_the_database_reports_part_way(shop):  # pylint: disable=redefined-outer-name
    """The database is replaced, then its rows differ from what the manifest recorded: that is part-way, and the
    app stays stopped behind the flag."""
    shop.install(djangoops_release_link=shop.current)
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()
    data_at_backup = shop.data()
    execute(shop.demo.db, 'DELETE FROM shop_orderline')
    forge_database_part(shop, snapshot, one_row_more)

    failed = shop.run('restore', djangoops_restore_confirm='RESTORE', djangoops_snapshot_id=snapshot)
    assert failed.returncode != 0, failed.stdout[-4000:]
    assert 'failed part-way through restoring database, at Restore the database and prove it exact' in \
        failed.stdout, failed.stdout[-4000:]
    assert 'The app stays stopped and the maintenance flag stays up' in failed.stdout
    assert shop.data() == data_at_backup, 'the database was replaced'
    assert os.path.exists(shop.flag) and not shop.running()


def age_key(path):
    subprocess.run(['age-keygen', '-o', path], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(path, encoding='ascii') as f:
        return [x.split(': ')[1] for x in f.read().splitlines() if x.startswith('# public key:')][0]


def test_a_media_restore_refused_before_it_touched_the_media_puts_the_app_back(shop):  # pylint: disable=redefined-outer-name
    """An encrypted snapshot, media only (restore_database=false), and a key that is not the snapshot's: the checks
    before the stop do not decrypt the media, media_restore does and refuses before it extracts or copies a file."""
    recipient = age_key(os.path.join(shop.root, 'right.key'))
    age_key(os.path.join(shop.root, 'wrong.key'))
    shop.install(djangoops_release_link=shop.current, djangoops_encrypt_recipients=[recipient])
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()
    assert shop.manifest(snapshot)['parts']['media'].get('encryption'), 'the media part is encrypted'

    failed = shop.run('restore', djangoops_restore_confirm='RESTORE', djangoops_snapshot_id=snapshot,
                      restore_database=False, djangoops_decrypt_identity=os.path.join(shop.root, 'wrong.key'))
    assert failed.returncode != 0, failed.stdout[-4000:]
    assert task_results(failed.stdout, 'Stop the app') == {'demo-shop': 'changed'}, failed.stdout[-6000:]
    assert NOTHING % 'media' in failed.stdout, failed.stdout[-4000:]
    assert PUT_BACK in failed.stdout
    assert not os.path.exists(shop.flag) and shop.serving(), 'the app was left stopped for nothing'


@pytest.fixture(name='s3')
def s3_fixture():
    server = S3Server().start()
    yield server
    server.stop()


def only_off_host(shop, remote):  # pylint: disable=redefined-outer-name
    """A backup pushed to ``remote`` and gone from the host, which then moved on (release 2.0, rows deleted):
    (the snapshot's id, the database now)."""
    shop.install(djangoops_release_link=shop.current)
    backup = shop.run('backup')
    assert backup.returncode == 0, backup.stdout[-4000:]
    [snapshot] = shop.snapshots()
    pushed = run_module('snapshot_copy', dict(snapshot_root=shop.backups, direction='push', snapshot_id=snapshot,
                                              remote=remote))
    assert not pushed.failed and pushed['copied'] == [snapshot], pushed
    shutil.rmtree(os.path.join(shop.backups, snapshot))
    shop.switch('2.0')
    execute(shop.demo.db, 'DELETE FROM shop_orderline')
    return snapshot, shop.data()


def assert_check_mode_pulls_nothing(shop, snapshot, remote, damaged, ids):  # pylint: disable=redefined-outer-name
    """restore --check from ``remote`` for each of ``ids`` reports the pull and the restore and changes nothing; a
    snapshot the store does not hold is refused, in check mode too, and still nothing is changed."""
    for wanted in ids:
        check = shop.run('restore', args=['--check'], djangoops_restore_confirm='RESTORE',
                         djangoops_restore_from_remote=True, djangoops_offhost_remote=remote,
                         djangoops_snapshot_id=wanted)
        assert check.returncode == 0, check.stdout[-6000:]
        assert 'would pull snapshot %s' % snapshot in check.stdout, check.stdout[-6000:]
        assert 'and restore the release %s/1.0, the database and the media' % shop.releases in check.stdout, \
            check.stdout[-6000:]
        assert os.listdir(shop.backups) == [], 'check mode wrote into the snapshot root'
        assert shop.live() == os.path.join(shop.releases, '2.0') and shop.data() == damaged
        assert not os.path.exists(shop.flag) and shop.running()
        assert not os.listdir(os.path.join(shop.demo.root, 'locks'))

    missing = shop.run('restore', args=['--check'], djangoops_restore_confirm='RESTORE',
                       djangoops_restore_from_remote=True, djangoops_offhost_remote=remote,
                       djangoops_snapshot_id='20200101T000000Z-aaaaaa')
    assert missing.returncode != 0, missing.stdout[-4000:]
    assert 'snapshot 20200101T000000Z-aaaaaa is not on the remote store' in missing.stdout, missing.stdout[-4000:]
    assert os.listdir(shop.backups) == [] and shop.running() and not os.path.exists(shop.flag)


def test_check_mode_from_the_off_host_store_reports_and_changes_nothing(shop, s3):  # pylint: disable=redefined-outer-name
    """The host lost its snapshots; restore --check with djangoops_restore_from_remote finds the snapshot on the
    store, complete, reports what would be pulled and restored, and writes nothing, stops nothing."""
    remote = s3.remote(s3.bucket('restore-check'), prefix='demo-shop')
    snapshot, damaged = only_off_host(shop, remote)
    assert_check_mode_pulls_nothing(shop, snapshot, remote, damaged, (snapshot, 'latest'))

    # Without --check it is pulled and restored; once here, --check checks it here, as any local snapshot.
    restore = shop.run('restore', djangoops_restore_confirm='RESTORE', djangoops_restore_from_remote=True,
                       djangoops_offhost_remote=remote)
    assert restore.returncode == 0, restore.stdout[-6000:]
    assert shop.snapshots() == [snapshot] and shop.live() == os.path.join(shop.releases, '1.0')
    assert shop.data() != damaged and shop.serving()
    again = shop.run('restore', args=['--check'], djangoops_restore_confirm='RESTORE',
                     djangoops_restore_from_remote=True, djangoops_offhost_remote=remote)
    assert again.returncode == 0, again.stdout[-6000:]
    assert 'would pull' not in again.stdout
    assert task_results(again.stdout, "Verify the snapshot's checksums before touching anything") == {
        'demo-shop': 'ok'}, again.stdout[-6000:]


def test_check_mode_from_an_ssh_backup_host_reports_and_changes_nothing(shop, sshd, tmp_path):  # pylint: disable=redefined-outer-name
    """The same with an SSH backup host (a loopback sshd): restore --check finds the newest snapshot there, reports
    the pull, pulls nothing and changes nothing; one the host does not hold is refused."""
    remote = sshd.remote(tmp_path / 'store' / 'demo-shop')
    snapshot, damaged = only_off_host(shop, remote)
    assert_check_mode_pulls_nothing(shop, snapshot, remote, damaged, ('latest',))
