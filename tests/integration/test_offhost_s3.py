# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_copy, snapshot_remote_info and snapshot_remote_prune against a real S3 server (moto's server
mode, see support/s3_server.py): upload, list, download, prune, a corrupted object, wrong credentials,
an interrupted upload."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
import time
import uuid

import pytest

from support.background import Background
from support.media_tree import describe, make_rich_tree, write
from support.modules import run_module
from support.pulls import assert_a_second_pull_is_refused
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
    # What a push cut off mid-way leaves: its marker, objects it finished (with the sha256 it records), an
    # unfinished multipart upload, no manifest.
    with open(os.path.join(root, sid, 'media', 'SHA256SUMS'), 'rb') as f:
        data = f.read()
    client.put_object(Bucket=bucket, Key='%s/.djangoops-partial' % sid, Body=b'{}')  # a push writes it first
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


def in_process(remote, commands=None):
    """The S3 store of the modules, in this process (to make one of its requests fail or lie)."""
    from ansible_collections.djangoops.maintenance.plugins.module_utils._remote_s3 import S3Store
    return S3Store(remote, None, commands.append if commands is not None else lambda command: None)


def keys_of(s3, bucket, prefix=''):
    return sorted(o['Key'] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get('Contents') or [])


def test_prune_never_deletes_what_is_not_its_own(s3, bucket, shop, media, tmp_path):
    """prefix '' (the default) on a bucket shared with another host's snapshots (under web1/), an application's
    uploaded media and a folder named like a snapshot: only the copy this collection marked as its own goes."""
    root = str(tmp_path / 'snaps')
    ids = [take(shop, media, root)]
    mutate(shop)
    ids.append(take(shop, media, root))
    assert not copy(root, s3.remote(bucket, prefix='web1'), snapshot_id=ids[0]).failed
    remote = s3.remote(bucket)
    pushed = copy(root, remote, snapshot_id=ids[1])
    assert not pushed.failed, pushed
    client = s3.client()
    client.put_object(Bucket=bucket, Key='media/uploads/invoice-1.pdf', Body=b'%PDF customer invoice')
    client.put_object(Bucket=bucket, Key='20200101T000000Z-foreign/notes.txt', Body=b'not a snapshot')
    foreign = keys_of(s3, bucket, 'web1/') + ['20200101T000000Z-foreign/notes.txt', 'media/uploads/invoice-1.pdf']

    # A deletion cut short after the manifest went: what is left is marked, so a prune may finish it.
    deleting = []
    store = in_process(remote, deleting)
    entry = [e for e in store.entries() if e.name == ids[1]][0]

    def broken(**kw):
        raise OSError('network is unreachable')
    store.client.delete_objects = broken
    with pytest.raises(Exception, match='network is unreachable'):
        store.delete(entry)
    info = run_module('snapshot_remote_info', dict(remote=remote))
    time.sleep(2)

    args = dict(remote=remote, keep_last=5, partial_max_age='1s')
    check = run_module('snapshot_remote_prune', args, check=True)
    assert [p['name'] for p in check['partials_removed']] == [ids[1]], check
    assert check['ignored'] == ['20200101T000000Z-foreign', 'media', 'web1'], check
    pruned = run_module('snapshot_remote_prune', args)
    assert not pruned.failed, pruned
    assert [p['name'] for p in pruned['partials_removed']] == [ids[1]] and pruned['deleted'] == [], pruned
    assert keys_of(s3, bucket) == sorted(foreign), 'the prune deleted something not its own'
    assert [s['id'] for s in run_module('snapshot_remote_info', dict(remote=s3.remote(bucket, prefix='web1'),
                                                                     verify=True))['snapshots']] == ids[:1]
    kinds = dict((i['name'], i['kind']) for i in info['incomplete'])
    assert kinds == {ids[1]: 'partial', 'web1': 'invalid', 'media': 'invalid', '20200101T000000Z-foreign': 'invalid'}
    # The push wrote its marker before anything else, and removed it once the manifest was there.
    ours = [c for c in pushed['commands'] if ' %s/' % ids[1] in c and ('put_object' in c or 'multipart' in c)]
    assert ours[0] == 's3 put_object %s/.djangoops-partial' % ids[1], ours
    assert ours[-1] == 's3 put_object %s/manifest.json' % ids[1], ours
    assert 's3 delete_object %s/.djangoops-partial' % ids[1] == pushed['commands'][-1], pushed['commands']
    # The deletion cut short had put the marker back before it removed the manifest; the prune removed it last.
    assert deleting[-3:] == ['s3 put_object %s/.djangoops-partial' % ids[1],
                             's3 delete_object %s/manifest.json' % ids[1], 's3 delete_objects %s' % bucket], deleting
    assert pruned['commands'][-1] == 's3 delete_object %s/.djangoops-partial' % ids[1], pruned['commands']


def test_corrupted_upload_is_not_kept_and_a_repush_replaces_it(s3, bucket, shop, media, tmp_path):
    """The store keeps other bytes than were sent (ETag mismatch): the object is deleted at once; and an object a
    former version left in that state (wrong bytes, the expected sha256 in its metadata) is uploaded again."""
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    digest = content_digest(shop)
    store = in_process(remote)
    put = store.client.put_object
    flipped = {}

    def corrupting_put(**kw):
        if '/database/' in kw['Key']:
            body = bytearray(kw['Body'])
            body[len(body) // 2] ^= 0xff
            flipped[kw['Key']] = kw['Body'], bytes(body)
            kw['Body'] = bytes(body)
        return put(**kw)
    store.client.put_object = corrupting_put
    from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotStore
    with pytest.raises(Exception, match='corrupted in the store'):
        store.push(SnapshotStore(root).load(sid), [])
    assert len(flipped) == 1, flipped
    key = list(flipped)[0]
    good, bad = flipped[key]
    assert key not in keys_of(s3, bucket), 'the corrupted object was left in the store'

    # What the former version left: the corrupted bytes under the sha256 the manifest expects.
    s3.client().put_object(Bucket=bucket, Key=key, Body=bad, Metadata={'sha256': hashlib.sha256(good).hexdigest()})
    again = copy(root, remote)
    assert not again.failed and again['copied'] == [sid], again
    assert not [c for c in again['commands'] if c.startswith('s3 skip %s' % key)], 'the corrupted object was kept'
    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert [s['status'] for s in info['snapshots']] == ['verified'], info
    other = str(tmp_path / 'other')
    pulled = copy(other, remote, direction='pull')
    assert not pulled.failed, pulled
    target = str(tmp_path / 'restored' / 'db.sqlite3')
    assert not run_module('db_restore', dict(engine='sqlite', database=target, create=True, snapshot_root=other)).failed
    assert content_digest(target) == digest


def test_an_object_is_skipped_only_when_its_etag_is_the_local_files(s3, bucket, tmp_path):
    """The ETag a push computes from a local file is the one the store computed for its upload, single PUT or
    multipart (part_size_mb 5: a file of exactly one part is a multipart upload of one part)."""
    from ansible_collections.djangoops.maintenance.plugins.module_utils import _remote_s3
    store = in_process(s3.remote(bucket))
    part = store.part_size
    for size in (0, 1000, part - 1, part, part + 1, 2 * part + 17):
        path = str(tmp_path / ('f%d' % size))
        data = os.urandom(size)
        write(path, data)
        key = 'etag/%d' % size
        f = dict(path=key, size=size, sha256=hashlib.sha256(data).hexdigest())
        with open(path, 'rb') as src:
            up = _remote_s3.Upload(store, key, {'sha256': f['sha256']})
            _remote_s3._pump(src, up)  # pylint: disable=protected-access
            up.finish(expect_sha256=f['sha256'])
        etag = s3.client().head_object(Bucket=bucket, Key=key)['ETag'].strip('"')
        assert _remote_s3.local_etag(path, part) == (f['sha256'], etag), size
        assert store._intact(key, path, f), size  # pylint: disable=protected-access
        if size:
            write(path, data[:-1] + bytes([data[-1] ^ 1]))  # same size, same recorded sha256, other bytes
            assert not store._intact(key, path, f), size  # pylint: disable=protected-access


def tamper_index(s3, bucket, sid, change):
    client = s3.client()
    key = '%s/objects.json' % sid
    index = json.loads(client.get_object(Bucket=bucket, Key=key)['Body'].read())
    change(index['objects'])
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(index).encode('utf-8'))


def test_pull_takes_only_what_the_manifest_lists_and_writes_only_inside(s3, bucket, shop, media, tmp_path):
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    assert not copy(root, remote).failed
    client = s3.client()
    other = str(tmp_path / 'other')
    outside = str(tmp_path / 'outside')
    payload = str(tmp_path / 'payload')
    write(os.path.join(payload, 'planted.txt'), b'written outside the snapshot root\n')
    tar = subprocess.run(['tar', '-C', payload, '-cf', '-', '.'], stdout=subprocess.PIPE, check=True).stdout
    client.put_object(Bucket=bucket, Key='%s/evil.tar' % sid, Body=tar)
    escape = os.path.relpath(outside, os.path.join(other, sid + '.partial'))
    planted = dict(path='evil.tar', size=len(tar), sha256=hashlib.sha256(tar).hexdigest(), kind='tree', dir=escape)
    extra = dict(path='database/extra.bin', size=len(tar), sha256=planted['sha256'], kind='file')
    client.put_object(Bucket=bucket, Key='%s/database/extra.bin' % sid, Body=tar)

    def plant(objects):
        objects.insert(0, planted)
        objects.append(extra)
    tamper_index(s3, bucket, sid, plant)
    pulled = copy(other, remote, direction='pull')
    assert pulled.failed and 'does not match its manifest' in pulled['msg'], pulled
    assert 'evil.tar: a tree the manifest does not list' in pulled['msg'], pulled['msg']
    assert 'database/extra.bin: an object the manifest does not list' in pulled['msg'], pulled['msg']
    assert not os.path.exists(outside), 'the pull wrote outside the snapshot root'
    assert not os.path.exists(os.path.join(other, sid))
    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert info['damaged'] == [sid], info
    assert [p for p in info['snapshots'][0]['problems'] if p.startswith('evil.tar')], info['snapshots'][0]

    tamper_index(s3, bucket, sid, lambda objects: objects[1].pop('size'))  # a malformed index: an error, no traceback
    for result in (copy(other, remote, direction='pull'), copy(root, remote)):
        assert result.failed and 'Traceback' not in result['msg'], result
        assert result['msg'].startswith('the object index %s/objects.json on ' % sid), result['msg']
        assert 'is malformed: its entry 2' in result['msg'], result['msg']
    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert info['damaged'] == [sid] and 'is malformed' in info['snapshots'][0]['problems'][0], info


def test_a_tree_tar_that_would_write_outside_is_not_extracted(s3, bucket, shop, media, tmp_path):
    """The tar of a media tree is not covered by the manifest's checksums (only its contents, after extraction):
    an archive with a symbolic link out of the tree and a file through it is refused before tar runs."""
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    assert not copy(root, remote).failed
    outside = str(tmp_path / 'outside')
    os.makedirs(outside)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as archive:
        link = tarfile.TarInfo('./escape')
        link.type, link.linkname = tarfile.SYMTYPE, outside
        archive.addfile(link)
        planted = tarfile.TarInfo('./escape/planted.txt')
        planted.size = 6
        archive.addfile(planted, io.BytesIO(b'owned\n'))
    tar = buf.getvalue()
    key = '%s/media/trees/media.tar' % sid
    s3.client().put_object(Bucket=bucket, Key=key, Body=tar)

    def swap(objects):
        for obj in objects:
            if obj['path'] == 'media/trees/media.tar':
                obj.update(size=len(tar), sha256=hashlib.sha256(tar).hexdigest())
    tamper_index(s3, bucket, sid, swap)
    other = str(tmp_path / 'other')
    pulled = copy(other, remote, direction='pull')
    assert pulled.failed, pulled
    assert pulled['msg'] == ("%s: the tar member './escape/planted.txt' lies under a symbolic link of the archive; "
                             "refusing to extract it" % key), pulled['msg']
    assert os.listdir(outside) == []
    assert not os.path.exists(os.path.join(other, sid))


@pytest.mark.parametrize('members, problem', [
    ([('../up.txt', tarfile.REGTYPE, '')], 'is an absolute path or holds ".."'),
    ([('/etc/cron.d/x', tarfile.REGTYPE, '')], 'is an absolute path or holds ".."'),
    ([('./a/../../up.txt', tarfile.REGTYPE, '')], 'is an absolute path or holds ".."'),
    ([('./l', tarfile.SYMTYPE, '../..'), ('./l/x', tarfile.REGTYPE, '')], 'lies under a symbolic link of the archive'),
    ([('./h', tarfile.LNKTYPE, '../../etc/shadow')],
     'is a hard link to something other than a file or symbolic link extracted before it'),
    ([('./d', tarfile.DIRTYPE, ''), ('./h', tarfile.LNKTYPE, 'd')],
     'is a hard link to something other than a file or symbolic link extracted before it'),
    ([('./l', tarfile.SYMTYPE, '/etc'), ('./h', tarfile.LNKTYPE, 'l'), ('./h/passwd', tarfile.REGTYPE, '')],
     'lies under a symbolic link of the archive'),
    ([('./l', tarfile.SYMTYPE, '/etc'), ('./l', tarfile.DIRTYPE, '')], 'names something the archive already holds'),
    ([('./dev', tarfile.CHRTYPE, '')], 'is not a file, directory or link'),
    ([('./fifo', tarfile.FIFOTYPE, '')], 'is not a file, directory or link'),
])
def test_tar_members_that_could_leave_the_tree_are_refused(tmp_path, members, problem):
    from ansible_collections.djangoops.maintenance.plugins.module_utils._remote_s3 import RemoteError, check_tar
    path = str(tmp_path / 'evil.tar')
    with tarfile.open(path, mode='w', format=tarfile.GNU_FORMAT) as archive:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info, io.BytesIO(b'') if kind == tarfile.REGTYPE else None)
    with pytest.raises(RemoteError) as e:
        check_tar(path, 'evil.tar')
    assert str(e.value) == "evil.tar: the tar member %r %s; refusing to extract it" % (members[-1][0], problem)


def test_tar_of_a_real_tree_passes_the_member_check(media, tmp_path):
    from ansible_collections.djangoops.maintenance.plugins.module_utils._remote_s3 import TAR_FLAGS, check_tar
    os.symlink('photos', os.path.join(media, 'current'))
    os.link(os.path.join(media, 'current'), os.path.join(media, 'current-copy'), follow_symlinks=False)
    path = str(tmp_path / 'media.tar')
    subprocess.run(['tar'] + list(TAR_FLAGS) + ['-C', media, '-cf', path, '.'], check=True)
    check_tar(path, 'media.tar')


def test_a_second_pull_of_the_same_id_fails_clearly_and_leaves_the_first_alone(s3, bucket, shop, media, tmp_path):
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    assert not copy(root, remote).failed
    assert_a_second_pull_is_refused(lambda other: copy(other, remote, direction='pull'), sid, str(tmp_path / 'other'))


class Gate(object):
    """Holds a push in ``store`` (run in this process) at its requests ``method`` number ``at``: ``reached``
    is set when it gets there, and the request goes out once ``go`` is set; ``done`` is set after it."""

    def __init__(self, store, method, at=1):
        self.reached, self.go, self.done = threading.Event(), threading.Event(), threading.Event()
        real = getattr(store.client, method)
        count = []

        def held(**kw):
            count.append(1)
            if len(count) != at:
                return real(**kw)
            self.reached.set()
            assert self.go.wait(120), 'the test never let the request go'
            try:
                return real(**kw)
            finally:
                self.done.set()
        setattr(store.client, method, held)


def pushing(store, root, sid):
    from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotStore
    return Background(lambda: store.push(SnapshotStore(root).load(sid), []))


MARKER_KEY = '%s/.djangoops-partial'


def test_a_push_uploading_a_large_object_looks_fresh_to_a_prune(s3, bucket, shop, media, tmp_path):
    """A multipart upload of one large object (a big dump over a slow link) adds no object until it completes:
    its parts are the copy's activity, and the push refreshes its marker as they go. partial_max_age 10s stands
    for 1d: the objects the push wrote before the upload are older than that when the prune looks, the part just
    stored is not (a margin of 10s for the prune module to start on a busy machine)."""
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    commands = []
    store = in_process(remote, commands)  # the marker refresh interval stays the default: as an older push would
    part2 = Gate(store, 'upload_part', 2)
    part3 = Gate(store, 'upload_part', 3)
    push = pushing(store, root, sid)
    try:
        assert part2.reached.wait(60), 'the push never reached the second part of the media tar'
        time.sleep(12.5)  # everything the push wrote so far, the marker and the first part are older than 10s now
        part2.go.set()
        assert part3.reached.wait(60)
        pruned = run_module('snapshot_remote_prune', dict(remote=remote, keep_last=1, partial_max_age='10s'))
        assert not pruned.failed, pruned
        assert pruned['partials_removed'] == [] and pruned['partials_kept'] == [sid], pruned
        assert any(c == 's3 list_parts %s/media/trees/media.tar' % sid for c in pruned['commands']), pruned
        assert MARKER_KEY % sid in keys_of(s3, bucket), 'the prune removed the copy in progress'
        # A refresh is due (interval 0 from now on): the marker is put again once the next part is stored.
        store.activity_interval = 0
    finally:
        part2.go.set()
        part3.go.set()
        push.thread.join(120)
    push.join()
    parts = [i for i, c in enumerate(commands) if c == 's3 upload_part %s/media/trees/media.tar' % sid]
    assert len(parts) == 3, commands
    assert 's3 put_object %s' % (MARKER_KEY % sid) in commands[parts[2]:], commands[parts[2]:]
    assert commands[-1] == 's3 delete_object %s' % (MARKER_KEY % sid), commands
    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert not info.failed, info
    assert [(s['id'], s['status']) for s in info['snapshots']] == [(sid, 'verified')] and info['incomplete'] == []


@pytest.mark.parametrize('held', ['upload_part', 'create_multipart_upload'])
def test_an_abandoned_copy_is_removed_and_its_push_then_fails_without_publishing(s3, bucket, shop, media, tmp_path,
                                                                                 held):
    """A push that makes no progress for longer than partial_max_age looks abandoned: the prune removes its objects
    and aborts its multipart upload. When it goes on, it fails saying so and publishes no manifest - whether it
    was inside the upload the prune aborted (upload_part) or between two objects (create_multipart_upload)."""
    root = str(tmp_path / 'snaps')
    remote = s3.remote(bucket)
    sid = take(shop, media, root)
    store = in_process(remote)
    gate = Gate(store, held, 2 if held == 'upload_part' else 1)
    push = pushing(store, root, sid)
    try:
        assert gate.reached.wait(60)
        time.sleep(2.5)
        pruned = run_module('snapshot_remote_prune', dict(remote=remote, keep_last=1, partial_max_age='1s'))
        assert not pruned.failed, pruned
        assert [p['name'] for p in pruned['partials_removed']] == [sid] and pruned['partials_kept'] == [], pruned
        assert keys_of(s3, bucket) == [], 'the abandoned copy was not removed'
        assert not s3.client().list_multipart_uploads(Bucket=bucket).get('Uploads'), 'its upload was not aborted'
    finally:
        gate.go.set()
        push.thread.join(120)
    with pytest.raises(Exception) as failed:
        push.join()
    assert str(failed.value).startswith('the incomplete copy of snapshot %s on s3://%s/ ' % (sid, bucket)), failed.value
    assert 'was removed while this push ran' in str(failed.value), failed.value
    keys = keys_of(s3, bucket)
    assert '%s/manifest.json' % sid not in keys, 'a manifest was published over objects the prune had removed'
    assert MARKER_KEY % sid in keys or keys == [], 'what the push wrote after the removal is not marked as its own'
    info = run_module('snapshot_remote_info', dict(remote=remote))
    assert info['snapshots'] == [], info
    # Pushed again, the copy is complete and sound.
    again = copy(root, remote)
    assert not again.failed and again['copied'] == [sid], again
    info = run_module('snapshot_remote_info', dict(remote=remote, verify=True))
    assert [(s['id'], s['status']) for s in info['snapshots']] == [(sid, 'verified')] and info['incomplete'] == []
