# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_copy, snapshot_remote_info and snapshot_remote_prune against a real S3 server (moto's server
mode, see support/s3_server.py): upload, list, download, prune, a corrupted object, wrong credentials,
an interrupted upload."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from support.media_tree import describe, make_rich_tree, write
from support.modules import run_module
from support.s3_server import S3Server
from support.sqlite_data import content_digest, make_shop, mutate


@pytest.fixture(scope='module')
def s3():
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3):
    name = 'bk-%s' % uuid.uuid4().hex[:12]
    return s3.bucket(name)


@pytest.fixture
def shop(tmp_path):
    path = str(tmp_path / 'app' / 'db.sqlite3')
    os.makedirs(os.path.dirname(path))
    make_shop(path)
    return path


def take(shop, media, root, **labels):
    """A snapshot with a database part and a media part (a tree with a file bigger than one upload part)."""
    r = run_module('db_snapshot', dict(engine='sqlite', database=shop, snapshot_root=root, finalize=False,
                                       snapshot_id=None, table_stats='checksums'))
    assert not r.failed, r
    m = run_module('media_snapshot', dict(src=[media], snapshot_root=root, snapshot_id=r['snapshot_id'],
                                          checksums=True, labels=labels))
    assert not m.failed, m
    return r['snapshot_id']


def copy(root, remote, direction='push', snapshot_id='latest', check=False, **kw):
    return run_module('snapshot_copy', dict(snapshot_root=root, direction=direction, snapshot_id=snapshot_id,
                                            remote=remote, **kw), check=check)


@pytest.fixture
def media(tmp_path):
    root = make_rich_tree(str(tmp_path / 'media'))
    write(os.path.join(root, 'video', 'big.bin'), os.urandom(11 * 1024 * 1024))  # three 5 MiB parts
    return root


def test_push_list_pull_restore_prune(s3, bucket, shop, media, tmp_path):
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket, prefix='web1')
    ids = [take(shop, media, root)]
    mutate(shop)
    ids.append(take(shop, media, root))
    digest = content_digest(shop)
    media_before = describe(media)

    check = copy(root, remote, snapshot_id='all', check=True)
    assert not check.failed and check['changed'] is True and check['copied'] == ids, check
    assert not s3.client().list_objects_v2(Bucket=bucket).get('Contents'), 'check mode uploaded something'

    r = copy(root, remote, snapshot_id='all')
    assert not r.failed, r
    assert r['changed'] is True and r['copied'] == ids and r['already_present'] == []
    assert any('create_multipart_upload' in c for c in r['commands']), 'the 11 MiB media file goes in parts'
    keys = [o['Key'] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix='web1/')['Contents']]
    assert 'web1/%s/manifest.json' % ids[0] in keys and 'web1/%s/media/trees/media.tar' % ids[0] in keys

    again = copy(root, remote, snapshot_id='all')
    assert not again.failed and again['changed'] is False and again['already_present'] == ids, again

    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert not info.failed, info
    assert [s['id'] for s in info['snapshots']] == ids and info['latest'] == ids[-1]
    assert [s['status'] for s in info['snapshots']] == ['verified', 'verified'] and info['damaged'] == []

    # A replacement host: nothing local, pull the latest, restore database and media from it.
    other = str(tmp_path / 'other')
    pulled = copy(other, remote, direction='pull')
    assert not pulled.failed, pulled
    assert pulled['changed'] is True and pulled['snapshot_id'] == ids[-1]
    assert copy(other, remote, direction='pull')['changed'] is False
    host = run_module('snapshot_info', dict(snapshot_root=other))['snapshots'][-1]['host']  # as the manifest has it
    assert copy(other, remote, direction='pull', from_host=host)['snapshot_id'] == ids[-1], host
    wrong = copy(other, remote, direction='pull', from_host='web9')
    assert wrong.failed and wrong['msg'] == ('the remote store holds no complete snapshot of host web9 (it holds '
                                             'snapshots of: %s)' % host), wrong['msg']
    target = str(tmp_path / 'restored' / 'db.sqlite3')
    res = run_module('db_restore', dict(engine='sqlite', database=target, create=True, snapshot_root=other))
    assert not res.failed and res['tables_match'] is True, res
    assert content_digest(target) == digest
    dest = str(tmp_path / 'media-restored')
    mr = run_module('media_restore', dict(snapshot_root=other, dest=dest))
    assert not mr.failed, mr
    assert describe(dest) == media_before

    pruned = run_module('snapshot_remote_prune', dict(remote=remote, keep_last=1))
    assert not pruned.failed, pruned
    assert [d['id'] for d in pruned['deleted']] == ids[:1] and [k['id'] for k in pruned['kept']] == ids[1:]
    keys = [o['Key'] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix='web1/')['Contents']]
    assert not [k for k in keys if k.startswith('web1/%s/' % ids[0])]
    info = run_module('snapshot_remote_info', dict(remote=remote))
    assert [s['id'] for s in info['snapshots']] == ids[1:]


def test_corrupted_object_is_detected_and_never_restored(s3, bucket, shop, media, tmp_path):
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    assert not copy(root, remote).failed
    client = s3.client()
    key = [o['Key'] for o in client.list_objects_v2(Bucket=bucket)['Contents'] if '/database/' in o['Key']][0]
    body = bytearray(client.get_object(Bucket=bucket, Key=key)['Body'].read())
    body[len(body) // 2] ^= 0xff  # one flipped byte, same size
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert not info.failed, info
    assert info['damaged'] == [sid]
    assert any(key.split('/', 1)[1] in p for p in info['snapshots'][0]['problems']), info['snapshots'][0]

    other = str(tmp_path / 'other')
    pulled = copy(other, remote, direction='pull')
    assert pulled.failed and 'corrupted' in pulled['msg'], pulled
    assert not os.path.isdir(os.path.join(other, sid)), 'a corrupted copy must never become a snapshot'


def test_wrong_credentials_fail_clearly_and_change_nothing(s3, bucket, shop, media, tmp_path):
    root = str(tmp_path / 'snaps')
    sid = take(shop, media, root)
    for bad in (dict(secret_key='not-the-secret'), dict(access_key='AKIANOSUCHKEY0000000')):
        r = copy(root, s3.remote(bucket, **bad))
        assert r.failed and 'refused the credentials' in r['msg'], r
        assert 'not-the-secret' not in str(r) and s3.secret_key not in str(r)
    assert not s3.client().list_objects_v2(Bucket=bucket).get('Contents')
    assert os.path.isfile(os.path.join(root, sid, 'manifest.json'))
    r = copy(root, s3.remote('no-such-bucket-here'))
    assert r.failed and 'does not exist' in r['msg'], r


def test_interrupted_upload_is_not_a_snapshot_and_a_rerun_completes_it(s3, bucket, shop, media, tmp_path):
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    client = s3.client()
    # What a push cut off mid-way leaves: objects it finished (with the sha256 it records), an unfinished
    # multipart upload, no manifest.
    with open(os.path.join(root, sid, 'media', 'SHA256SUMS'), 'rb') as f:
        data = f.read()
    client.put_object(Bucket=bucket, Key='%s/media/SHA256SUMS' % sid, Body=data,
                      Metadata={'sha256': hashlib.sha256(data).hexdigest()})
    client.create_multipart_upload(Bucket=bucket, Key='%s/media/trees/media.tar' % sid)

    info = run_module('snapshot_remote_info', dict(remote=remote))
    assert info['snapshots'] == [] and info['latest'] is None
    assert [(i['name'], i['kind']) for i in info['incomplete']] == [(sid, 'partial')]
    pulled = copy(str(tmp_path / 'other'), remote, direction='pull')
    assert pulled.failed and 'no complete snapshot' in pulled['msg'], pulled

    r = copy(root, remote)
    assert not r.failed and r['copied'] == [sid], r
    assert any('skip %s/media/SHA256SUMS' % sid in c for c in r['commands']), 'the object already there is kept'
    assert not client.list_multipart_uploads(Bucket=bucket).get('Uploads'), 'the unfinished upload was aborted'
    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert [s['status'] for s in info['snapshots']] == ['verified'] and info['incomplete'] == []
