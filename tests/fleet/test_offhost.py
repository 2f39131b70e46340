# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Off-host copies to an SSH backup host that is a rig host of its own: two app hosts push encrypted
snapshots, the backup host is pruned per host, a third host pulls and restores; a network cut mid-push;
a full disk on the backup host; a key the backup host does not accept."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from support.media_tree import describe, inode, make_rich_tree, write
from support.sqlite_data import content_digest, make_shop, mutate

ROOT = '/srv/snapshots'
REMOTE_PATH = '/srv/backups/shop'


def age_key(tmp_path):
    path = str(tmp_path / 'backup-identity.txt')
    subprocess.run(['age-keygen', '-o', path], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(path, encoding='ascii') as f:
        text = f.read()
    public = [line.split(': ')[1].strip() for line in text.splitlines() if line.startswith('# public key:')][0]
    return text, public


def remote(rig, backup, **kw):
    r = dict(type='ssh', host=backup.address, user='root', path=REMOTE_PATH, ssh_key=rig.private_key,
             host_key_checking='no', known_hosts='/dev/null', io_timeout=5)
    r.update(kw)
    return r


def install_app(h, customers=200):
    os.makedirs(os.path.join(h.srv, 'app'))
    make_shop(os.path.join(h.srv, 'app', 'db.sqlite3'), customers=customers)
    make_rich_tree(os.path.join(h.srv, 'media'), seed=customers)


def snapshot_and_push(rig, hosts, backup, recipient):
    """db (encrypted) + media under one id per host, then push everything the backup host lacks."""
    pattern = ':'.join(h.name for h in hosts)
    stamp = 'T%d' % int(time.time() * 1000)
    sid = '{{ inventory_hostname }}-' + stamp
    db = rig.ansible(pattern, 'djangoops.maintenance.db_snapshot', dict(
        engine='sqlite', database='/srv/app/db.sqlite3', snapshot_root=ROOT, snapshot_id=sid, finalize=False,
        table_stats='checksums', encrypt_recipients=[recipient]))
    assert db.rc == 0, db
    media = rig.ansible(pattern, 'djangoops.maintenance.media_snapshot', dict(
        src=['/srv/media'], snapshot_root=ROOT, snapshot_id=sid, checksums=True))
    assert media.rc == 0, media
    push = rig.ansible(pattern, 'djangoops.maintenance.snapshot_copy', dict(
        snapshot_root=ROOT, direction='push', snapshot_id='all', remote=remote(rig, backup)))
    assert push.rc == 0, push
    for h in hosts:
        assert push.last(h.name)['copied'] == ['%s-%s' % (h.name, stamp)], push.last(h.name)
    return stamp


def test_two_hosts_push_prune_remotely_third_pulls_and_restores(make_rig, tmp_path):
    rig = make_rig(4)
    app1, app2, app3, backup = rig.hosts
    identity, recipient = age_key(tmp_path)
    install_app(app1, 200)
    install_app(app2, 300)

    first = snapshot_and_push(rig, [app1, app2], backup, recipient)
    for h in (app1, app2):
        mutate(os.path.join(h.srv, 'app', 'db.sqlite3'))
    write(os.path.join(app1.srv, 'media', 'new', 'upload.jpg'), b'new upload')
    expected_db = content_digest(os.path.join(app1.srv, 'app', 'db.sqlite3'))
    expected_media = describe(os.path.join(app1.srv, 'media'))
    second = snapshot_and_push(rig, [app1, app2], backup, recipient)

    stored = os.path.join(backup.srv, 'backups', 'shop')
    names = sorted(os.listdir(stored))
    assert len(names) == 4 and not [n for n in names if n.endswith('.partial')], names
    # Unchanged media is hard-linked on the backup host against the previous push.
    by_host = {}
    for n in names:
        with open(os.path.join(stored, n, 'manifest.json'), encoding='utf-8') as f:
            by_host.setdefault(json.load(f)['host'], []).append(n)
    assert sorted(by_host) == ['h1', 'h2']
    old, new = sorted(by_host['h1'])
    cat = os.path.join('media', 'trees', 'media', 'photos', '2024', 'cat.jpg')
    assert inode(os.path.join(stored, old, cat)) == inode(os.path.join(stored, new, cat))
    # Only ciphertext of the database left the app hosts.
    db_file = os.path.join(stored, new, 'database', 'database.sqlite3.zst.age')
    with open(db_file, 'rb') as f:
        assert f.read(22) == b'age-encryption.org/v1\n'

    # The same remote also answers an already-present push with "nothing to do".
    again = rig.ansible('h1', 'djangoops.maintenance.snapshot_copy', dict(
        snapshot_root=ROOT, direction='push', snapshot_id='all', remote=remote(rig, backup)))
    assert again.rc == 0, again
    assert again.last('h1')['changed'] is False and len(again.last('h1')['already_present']) == 2, again.last('h1')

    info = rig.ansible('h3', 'djangoops.maintenance.snapshot_remote_info',
                       dict(remote=remote(rig, backup), verify=True))
    assert info.rc == 0, info
    assert info.last('h3')['damaged'] == [] and len(info.last('h3')['snapshots']) == 4

    prune = rig.ansible('h3', 'djangoops.maintenance.snapshot_remote_prune',
                        dict(remote=remote(rig, backup), keep_last=1))
    assert prune.rc == 0, prune
    res = prune.last('h3')
    assert sorted(d['id'] for d in res['deleted']) == sorted([by_host['h1'][0], by_host['h2'][0]]), res
    assert sorted(os.listdir(stored)) == sorted([by_host['h1'][1], by_host['h2'][1]])
    assert first < second

    # A third host, which never had a snapshot, pulls app1's latest and restores it.
    pull = rig.ansible('h3', 'djangoops.maintenance.snapshot_copy', dict(
        snapshot_root=ROOT, direction='pull', snapshot_id=by_host['h1'][1], remote=remote(rig, backup)))
    assert pull.rc == 0 and pull.last('h3')['copied'] == [by_host['h1'][1]], pull
    wrong = rig.ansible('h3', 'djangoops.maintenance.db_restore', dict(
        engine='sqlite', database='/srv/app/db.sqlite3', create=True, snapshot_root=ROOT,
        decrypt_identity_content=_other_identity(tmp_path)))
    assert wrong.rc != 0 and 'cannot decrypt' in wrong.last('h3')['msg'], wrong
    assert not os.path.exists(os.path.join(app3.srv, 'app')), 'a wrong key must not touch the target'
    restore = rig.ansible('h3', 'djangoops.maintenance.db_restore', dict(
        engine='sqlite', database='/srv/app/db.sqlite3', create=True, snapshot_root=ROOT,
        decrypt_identity_content=identity))
    assert restore.rc == 0 and restore.last('h3')['tables_match'] is True, restore
    assert identity.strip().splitlines()[-1] not in restore.output, 'the identity must never be printed'
    assert content_digest(os.path.join(app3.srv, 'app', 'db.sqlite3')) == expected_db
    media = rig.ansible('h3', 'djangoops.maintenance.media_restore', dict(snapshot_root=ROOT, dest='/srv/media'))
    assert media.rc == 0, media
    assert describe(os.path.join(app3.srv, 'media')) == expected_media


def _other_identity(tmp_path):
    other = tmp_path / 'other'
    other.mkdir()
    return age_key(other)[0]


def _push_in_background(rig, host, args, out):
    def go():
        out.append(rig.ansible(host.name, 'djangoops.maintenance.snapshot_copy', args, timeout=300))
    t = threading.Thread(target=go)
    t.start()
    return t


def test_network_cut_mid_push_leaves_no_complete_snapshot_and_a_rerun_completes_it(make_rig):
    rig = make_rig(2)
    app, backup = rig.hosts
    install_app(app)
    write(os.path.join(app.srv, 'media', 'video', 'big.bin'), os.urandom(6 * 1024 * 1024))
    snap = rig.ansible('h1', 'djangoops.maintenance.media_snapshot', dict(src=['/srv/media'], snapshot_root=ROOT))
    assert snap.rc == 0, snap
    sid = snap.last('h1')['snapshot_id']
    stored = os.path.join(backup.srv, 'backups', 'shop')

    args = dict(snapshot_root=ROOT, direction='push', remote=remote(rig, backup, bwlimit=1024, io_timeout=3))
    out = []
    worker = _push_in_background(rig, app, args, out)
    deadline = time.monotonic() + 30
    while not os.path.isdir(os.path.join(stored, sid + '.partial')) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # mid-transfer: 6 MiB at 1 MiB/s
    backup.down()
    worker.join(120)
    assert not worker.is_alive(), 'the push must give up once the backup host is gone'
    failed = out[0]
    msg = failed.last('h1')['msg']
    assert failed.rc != 0 and 'interrupted' in msg and 'Push again' in msg, failed
    assert os.listdir(stored) == [sid + '.partial'], 'no complete snapshot after the cut'

    backup.up()
    rerun = rig.ansible('h1', 'djangoops.maintenance.snapshot_copy', dict(args, remote=remote(rig, backup)))
    assert rerun.rc == 0 and rerun.last('h1')['copied'] == [sid], rerun
    assert os.listdir(stored) == [sid]
    info = rig.ansible('h1', 'djangoops.maintenance.snapshot_remote_info',
                       dict(remote=remote(rig, backup), verify=True))
    assert info.last('h1')['damaged'] == [] and info.last('h1')['incomplete'] == [], info.last('h1')


def test_full_backup_disk_and_a_refused_key_fail_clearly_and_lose_nothing(make_rig, tmp_path):
    rig = make_rig(2)
    app, backup = rig.hosts
    install_app(app)
    write(os.path.join(app.srv, 'media', 'video', 'big.bin'), os.urandom(4 * 1024 * 1024))
    snap = rig.ansible('h1', 'djangoops.maintenance.media_snapshot', dict(src=['/srv/media'], snapshot_root=ROOT,
                                                                          checksums=True))
    sid = snap.last('h1')['snapshot_id']
    backup.run(['mkdir', '-p', '/srv/backups/shop'])
    backup.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', '/srv/backups/shop'])

    full = rig.ansible('h1', 'djangoops.maintenance.snapshot_copy', dict(
        snapshot_root=ROOT, direction='push', remote=remote(rig, backup)))
    msg = full.last('h1')['msg']
    assert full.rc != 0 and 'out of disk space' in msg and 'was removed' in msg, msg
    assert backup.run(['ls', '-A', '/srv/backups/shop']).stdout == '', 'the incomplete copy is cleaned away'
    local = rig.ansible('h1', 'djangoops.maintenance.snapshot_info', dict(snapshot_root=ROOT, verify=True))
    assert local.last('h1')['damaged'] == [] and local.last('h1')['latest'] == sid

    stranger = str(tmp_path / 'stranger')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', stranger], check=True)
    refused = rig.ansible('h1', 'djangoops.maintenance.snapshot_copy', dict(
        snapshot_root=ROOT, direction='push', remote=remote(rig, backup, ssh_key=stranger)))
    assert refused.rc != 0 and 'cannot reach or log in' in refused.last('h1')['msg'], refused
    assert 'Permission denied' in refused.last('h1')['msg']
