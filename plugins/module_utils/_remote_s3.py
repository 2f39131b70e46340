# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: a snapshot store in an S3-compatible object store (boto3).

Layout under ``<prefix>``::

    <id>/<path>               one object per file the manifest lists (same relative path)
    <id>/<part>/trees/<name>.tar   one tar stream per media tree (files are not listed one by one)
    <id>/objects.json         every object above with its size and sha256, uploaded before ...
    <id>/manifest.json        ... the manifest, always last: without it <id> is not a snapshot

Uploads stream: a file or ``tar`` output is cut into parts of ``part_size_mb`` (one part in memory at
a time); an object of one part is a single PUT, a larger one a multipart upload. Every request
carries Content-MD5, and the ETag the store returns is compared with the MD5 (of the parts) computed
while reading, so what the store kept is what was read; the sha256 computed on the same read must
equal the manifest's. Downloads hash while writing and refuse an object whose sha256 differs from the
index: a corrupted object is never restored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Step, find_tool, run_pipeline
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import (
    RemoteEntry, RemoteError, finish_pull, parse_manifest, require)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    CHUNK, HashingFile, MANIFEST, ID_RE, remove_tree)

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    HAS_BOTO3 = True
except ImportError:  # pragma: no cover - reported when the store is opened
    HAS_BOTO3 = False

INDEX = 'objects.json'
MIN_PART = 5 * 1024 * 1024  # S3's smallest multipart part (but the last)
_MD5_ETAG = re.compile(r'^[0-9a-f]{32}(-\d+)?$')
_AUTH_CODES = ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken',
               'AuthorizationHeaderMalformed', '403')
TAR_FLAGS = ('--numeric-owner', '--sort=name', '--format=gnu')


class S3Store(object):
    kind = 's3'

    def __init__(self, params, secrets, record):
        if not HAS_BOTO3:
            raise RemoteError('remote.type s3 needs the Python library boto3 on this host (pip install boto3, or the '
                              'python3-boto3 package)')
        require(params, 's3', ('bucket',))
        self.p = params
        self.record = record
        self.bucket = params['bucket']
        prefix = (params.get('prefix') or '').strip('/')
        self.prefix = prefix + '/' if prefix else ''
        self.part_size = max(MIN_PART, int(params.get('part_size_mb') or 16) * 1024 * 1024)
        if bool(params.get('access_key')) != bool(params.get('secret_key')):
            raise RemoteError('give both remote.access_key and remote.secret_key, or neither (then boto3 finds '
                              'credentials in the environment or the instance profile)')
        session = boto3.session.Session(aws_access_key_id=params.get('access_key') or None,
                                        aws_secret_access_key=params.get('secret_key') or None,
                                        aws_session_token=params.get('session_token') or None,
                                        region_name=params.get('region') or 'us-east-1')
        timeout = int(params.get('io_timeout') or 60)
        config = botocore.config.Config(connect_timeout=min(timeout, 30), read_timeout=timeout,
                                        retries={'max_attempts': 3, 'mode': 'standard'},
                                        s3={'addressing_style': 'path'})
        verify = params.get('ca_bundle') or bool(params.get('validate_certs', True))
        self.client = session.client('s3', endpoint_url=params.get('endpoint_url') or None, verify=verify,
                                     config=config)

    def describe(self):
        where = self.p.get('endpoint_url') or 'aws'
        return 's3://%s/%s (%s)' % (self.bucket, self.prefix, where)

    # -- plumbing ------------------------------------------------------------------------------
    def call(self, what, method, **kw):
        self.record('s3 %s %s' % (method, kw.get('Key') or kw.get('Prefix') or self.bucket))
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kw)
        except botocore.exceptions.ClientError as e:
            err = e.response.get('Error', {})
            code = str(err.get('Code', ''))
            msg = err.get('Message') or str(e)
            if code in _AUTH_CODES:
                raise RemoteError('%s refused the credentials while %s (%s: %s); check remote.access_key and '
                                  'remote.secret_key and the bucket policy. Nothing was changed there by this '
                                  'request' % (self.describe(), what, code, msg))
            if code == 'NoSuchBucket':
                raise RemoteError('bucket %r does not exist at %s' % (self.bucket, self.describe()))
            raise RemoteError('%s failed while %s: %s: %s' % (self.describe(), what, code, msg))
        except (botocore.exceptions.BotoCoreError, OSError) as e:
            raise RemoteError('cannot reach %s while %s: %s' % (self.describe(), what, e))

    def key(self, snapshot_id, rel=''):
        return '%s%s/%s' % (self.prefix, snapshot_id, rel)

    def objects(self, prefix):
        """Every object under ``prefix``: {key: (size, LastModified epoch)}."""
        out = {}
        token = None
        while True:
            kw = dict(Prefix=prefix)
            if token:
                kw['ContinuationToken'] = token
            page = self.call('listing %s' % prefix, 'list_objects_v2', **kw)
            for obj in page.get('Contents') or []:
                out[obj['Key']] = (obj['Size'], int(obj['LastModified'].timestamp()))
            if not page.get('IsTruncated'):
                return out
            token = page.get('NextContinuationToken')

    def read_small(self, key, what):
        body = self.call(what, 'get_object', Key=key)['Body']
        try:
            return body.read()
        finally:
            body.close()

    # -- reading -------------------------------------------------------------------------------
    def entries(self):
        objects = self.objects(self.prefix)
        names = {}
        for key, (dummy, mtime) in objects.items():
            name, sep, rest = key[len(self.prefix):].partition('/')
            if not sep:
                continue
            info = names.setdefault(name, {'mtime': 0, 'manifest': False})
            info['mtime'] = max(info['mtime'], mtime)
            if rest == MANIFEST:
                info['manifest'] = True
        entries = []
        for name, info in sorted(names.items()):
            if not ID_RE.match(name):
                entries.append(RemoteEntry(name, 'invalid', mtime=info['mtime']))
                continue
            if not info['manifest']:
                # Objects without a manifest: an upload that has not finished (or was cut).
                entries.append(RemoteEntry(name, 'partial', mtime=info['mtime']))
                continue
            entry = RemoteEntry(name, 'complete', mtime=info['mtime'])
            data = self.read_small(self.key(name, MANIFEST), 'reading the manifest of %s' % name)
            entry.manifest, entry.manifest_sha256, entry.problem = parse_manifest(name, data)
            entries.append(entry)
        return entries

    def index(self, entry):
        data = self.read_small(self.key(entry.name, INDEX), 'reading the object index of %s' % entry.name)
        try:
            return json.loads(data.decode('utf-8'))['objects']
        except (ValueError, KeyError, UnicodeDecodeError) as e:
            raise RemoteError('the object index of snapshot %s on %s is unreadable: %s' % (entry.name, self.describe(), e))

    def present(self, entry):
        """Whether every object the index lists is there with its size (a cheap completeness check)."""
        objects = self.objects(self.key(entry.name))
        for obj in self.index(entry):
            if objects.get(self.key(entry.name, obj['path']), (None,))[0] != obj['size']:
                return False
        return True

    def verify(self, entry):
        """Download and hash every object of a snapshot; problems, empty when sound."""
        problems = []
        try:
            index = self.index(entry)
        except RemoteError as e:
            return [str(e)]
        expected = dict((f['path'], f['sha256']) for p in (entry.manifest.get('parts') or {}).values()
                        for f in p.get('files') or [])
        for obj in index:
            if obj['path'] in expected and expected[obj['path']] != obj['sha256']:
                problems.append('%s: the index and the manifest disagree' % obj['path'])
                continue
            try:
                size, digest = self._hash_object(self.key(entry.name, obj['path']))
            except RemoteError as e:
                problems.append('%s: %s' % (obj['path'], e))
                continue
            if size != obj['size'] or digest != obj['sha256']:
                problems.append('%s: sha256 %s (%d bytes), expected %s (%d bytes)'
                                % (obj['path'], digest, size, obj['sha256'], obj['size']))
        missing = set(expected) - set(o['path'] for o in index)
        problems.extend('%s: not in the object index' % p for p in sorted(missing))
        return problems

    def _hash_object(self, key):
        body = self.call('downloading %s' % key, 'get_object', Key=key)['Body']
        h = hashlib.sha256()
        size = 0
        try:
            for chunk in body.iter_chunks(CHUNK):
                h.update(chunk)
                size += len(chunk)
        except (botocore.exceptions.BotoCoreError, OSError) as e:
            raise RemoteError('download of %s broke off: %s' % (key, e))
        finally:
            body.close()
        return size, h.hexdigest()

    # -- writing -------------------------------------------------------------------------------
    def push(self, snapshot, links):  # pylint: disable=unused-argument
        """Upload every object (skipping ones already there intact from an interrupted push), then the index,
        then the manifest."""
        sid = snapshot.id
        self._abort_uploads(self.key(sid))
        there = self.objects(self.key(sid))
        index = []
        for part in snapshot.manifest['parts'].values():
            for f in part.get('files') or []:
                key = self.key(sid, f['path'])
                if there.get(key, (None,))[0] == f['size'] and self._stored_sha256(key) == f['sha256']:
                    self.record('s3 skip %s (already uploaded, sha256 matches)' % key)
                else:
                    path = snapshot.file_path(f)
                    with open(path, 'rb') as src:
                        up = Upload(self, key, {'sha256': f['sha256']})
                        _pump(src, up)
                        up.finish(expect_sha256=f['sha256'])
                index.append(dict(path=f['path'], size=f['size'], sha256=f['sha256'], kind='file'))
            for tree in part.get('trees') or []:
                if tree.get('missing'):
                    continue
                rel = tree['dir'] + '.tar'
                up = Upload(self, self.key(sid, rel), {})
                tar = Step([find_tool('tar')] + list(TAR_FLAGS) + ['-C', snapshot.file_path({'path': tree['dir']}),
                                                                   '-cf', '-', '.'], name='tar')
                self.record('%s | s3 upload %s' % (tar.display(), self.key(sid, rel)))
                try:
                    run_pipeline([tar], sink=up)
                except BaseException:
                    up.abort()
                    raise
                up.finish()
                index.append(dict(path=rel, size=up.size, sha256=up.sha256, kind='tree', dir=tree['dir']))
        data = json.dumps({'snapshot': sid, 'objects': index}, indent=1, sort_keys=True).encode('utf-8')
        self._put_small(self.key(sid, INDEX), data)
        with open(os.path.join(snapshot.path, MANIFEST), 'rb') as f:
            self._put_small(self.key(sid, MANIFEST), f.read())

    def _stored_sha256(self, key):
        head = self.call('checking %s' % key, 'head_object', Key=key)
        return (head.get('Metadata') or {}).get('sha256')

    def _put_small(self, key, data):
        up = Upload(self, key, {'sha256': hashlib.sha256(data).hexdigest()})
        up.write(data)
        up.finish()

    def _abort_uploads(self, prefix):
        """Multipart uploads left by an interrupted push hold storage without being objects: abort them."""
        page = self.call('listing unfinished uploads', 'list_multipart_uploads', Prefix=prefix)
        for u in page.get('Uploads') or []:
            self.call('aborting an unfinished upload', 'abort_multipart_upload', Key=u['Key'], UploadId=u['UploadId'])

    def pull(self, entry, store, links):  # pylint: disable=unused-argument
        store.ensure()
        partial = store.partial_path(entry.name)
        if os.path.isdir(partial):
            remove_tree(partial)  # an earlier pull cut short: objects are re-downloaded and re-verified
        os.mkdir(partial, 0o700)
        index = self.index(entry)
        for obj in index:
            key = self.key(entry.name, obj['path'])
            if obj.get('kind') == 'tree':
                tarball = os.path.join(partial, '.%s.tar' % os.path.basename(obj['dir']))
                self._download(key, tarball, obj)
                dest = os.path.join(partial, obj['dir'])
                os.makedirs(dest, 0o700)
                step = Step([find_tool('tar'), '--numeric-owner', '-xpf', tarball, '-C', dest], name='tar')
                self.record(step.display())
                run_pipeline([step])
                os.unlink(tarball)
            else:
                dest = os.path.join(partial, obj['path'])
                if not os.path.isdir(os.path.dirname(dest)):
                    os.makedirs(os.path.dirname(dest), 0o700)
                self._download(key, dest, obj)
        manifest = os.path.join(partial, MANIFEST)
        fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'wb') as f:
            f.write(self.read_small(self.key(entry.name, MANIFEST), 'reading the manifest of %s' % entry.name))
        return finish_pull(store, entry, partial)

    def _download(self, key, path, obj):
        body = self.call('downloading %s' % key, 'get_object', Key=key)['Body']
        hf = HashingFile(path)
        try:
            for chunk in body.iter_chunks(CHUNK):
                hf.write(chunk)
            hf.close()
        except (botocore.exceptions.BotoCoreError, OSError) as e:
            hf.discard()
            raise RemoteError('download of %s broke off: %s' % (key, e))
        finally:
            body.close()
        if hf.size != obj['size'] or hf.sha256 != obj['sha256']:
            raise RemoteError('object %s on %s is corrupted: sha256 %s (%d bytes), the snapshot recorded %s (%d '
                              'bytes); refusing to use it' % (key, self.describe(), hf.sha256, hf.size, obj['sha256'],
                                                              obj['size']))

    def delete(self, entry):
        """Manifest first: from that moment the snapshot is incomplete to every reader, whatever follows."""
        prefix = self.key(entry.name)
        keys = sorted(self.objects(prefix))
        manifest = self.key(entry.name, MANIFEST)
        if manifest in keys:
            self.call('deleting %s' % manifest, 'delete_object', Key=manifest)
            keys.remove(manifest)
        for i in range(0, len(keys), 1000):
            batch = [{'Key': k} for k in keys[i:i + 1000]]
            res = self.call('deleting snapshot %s' % entry.name, 'delete_objects',
                            Delete={'Objects': batch, 'Quiet': True})
            if res.get('Errors'):
                raise RemoteError('could not delete %d object(s) of %s: %s'
                                  % (len(res['Errors']), entry.name, res['Errors'][0]))
        self._abort_uploads(prefix)


def _pump(src, sink):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = src.readinto(buf)
        if not n:
            return
        sink.write(view[:n])


class Upload(object):
    """A sink that uploads what is written to it: one PUT for a single part, else a multipart upload. Holds
    at most one part in memory; MD5 per part (sent as Content-MD5) and sha256 of the whole are computed
    as it goes."""

    def __init__(self, store, key, metadata):
        self.store = store
        self.key = key
        self.metadata = metadata
        self.buf = bytearray()
        self.upload_id = None
        self.parts = []
        self.part_md5s = []
        self.size = 0
        self._sha = hashlib.sha256()
        self.sha256 = None

    def write(self, chunk):
        self.buf += chunk
        self._sha.update(chunk)
        self.size += len(chunk)
        while len(self.buf) >= self.store.part_size:
            self._send_part(bytes(self.buf[:self.store.part_size]))
            del self.buf[:self.store.part_size]

    def _send_part(self, data):
        if self.upload_id is None:
            res = self.store.call('starting the upload of %s' % self.key, 'create_multipart_upload', Key=self.key,
                                  Metadata=self.metadata)
            self.upload_id = res['UploadId']
        md5 = hashlib.md5(data)
        number = len(self.parts) + 1
        res = self.store.call('uploading part %d of %s' % (number, self.key), 'upload_part', Key=self.key,
                              UploadId=self.upload_id, PartNumber=number, Body=data,
                              ContentMD5=base64.b64encode(md5.digest()).decode('ascii'))
        self.parts.append({'PartNumber': number, 'ETag': res['ETag']})
        self.part_md5s.append(md5.digest())

    def finish(self, expect_sha256=None):
        self.sha256 = self._sha.hexdigest()
        if expect_sha256 and self.sha256 != expect_sha256:
            self.abort()
            raise RemoteError('%s changed while it was uploaded (sha256 %s, the manifest says %s); the local snapshot '
                              'is damaged or being modified' % (self.key, self.sha256, expect_sha256))
        if self.upload_id is None:
            data = bytes(self.buf)
            md5 = hashlib.md5(data)
            res = self.store.call('uploading %s' % self.key, 'put_object', Key=self.key, Body=data,
                                  Metadata=self.metadata, ContentMD5=base64.b64encode(md5.digest()).decode('ascii'))
            expected = md5.hexdigest()
        else:
            if self.buf:
                self._send_part(bytes(self.buf))
            self.buf = bytearray()
            res = self.store.call('completing the upload of %s' % self.key, 'complete_multipart_upload', Key=self.key,
                                  UploadId=self.upload_id, MultipartUpload={'Parts': self.parts})
            expected = '%s-%d' % (hashlib.md5(b''.join(self.part_md5s)).hexdigest(), len(self.parts))
        etag = (res.get('ETag') or '').strip('"')
        if _MD5_ETAG.match(etag) and etag != expected:
            raise RemoteError('%s stored %s with ETag %s, but the bytes sent have %s: the object is corrupted in the '
                              'store; push again' % (self.store.describe(), self.key, etag, expected))
        if not _MD5_ETAG.match(etag):
            self.store.record('s3 %s: ETag %r is not an MD5 (server-side encryption?); verified by sha256 only'
                              % (self.key, etag))

    def abort(self):
        if self.upload_id is not None:
            try:
                self.store.call('aborting the upload of %s' % self.key, 'abort_multipart_upload', Key=self.key,
                                UploadId=self.upload_id)
            except RemoteError:
                pass  # the next push aborts leftovers
            self.upload_id = None
