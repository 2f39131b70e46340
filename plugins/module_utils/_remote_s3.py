# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: a snapshot store in an S3-compatible object store (boto3).

Layout under ``<prefix>``::

    <id>/.djangoops-partial   the marker: the first object a push writes, removed once the manifest is there
    <id>/<path>               one object per file the manifest lists (same relative path)
    <id>/<part>/trees/<name>.tar   one tar stream per media tree (files are not listed one by one)
    <id>/objects.json         every object above with its size and sha256, uploaded before ...
    <id>/manifest.json        ... the manifest, always last: without it <id> is not a snapshot

A name is ours only when it holds a manifest (complete) or the marker (partial: a push or a deletion under
way or cut short); anything else under the prefix is 'invalid' and never deleted. A deletion writes the
marker before it removes the manifest and removes the marker last, so whatever point a push or a deletion
is cut at, what is left is either complete or marked.

A partial copy is dated by its last sign of activity, which a prune compares with ``partial_max_age``: the
newest of its objects' LastModified and, for each multipart upload in flight under it, the upload's start
and the LastModified of its newest part - a large object being uploaded adds no object until its upload
completes. A push besides puts its marker again whenever it made progress (a part or an object stored) and
``ACTIVITY_INTERVAL`` has passed since it last did, so even a prune that cannot list parts sees it fresh.
Before it publishes (object index, then manifest), a push checks that its marker and every object it
uploaded are still there: a copy a prune removed meanwhile (a push that made no progress for longer than
``partial_max_age``) fails the push, marked again, instead of getting a manifest over missing objects.

Uploads stream: a file or ``tar`` output is cut into parts of ``part_size_mb`` (one part in memory at
a time); an object of one part is a single PUT, a larger one a multipart upload. Every request
carries Content-MD5, and the ETag the store returns is compared with the MD5 (of the parts) computed
while reading, so what the store kept is what was read (an object whose ETag differs is deleted); the
sha256 computed on the same read must equal the manifest's. A push skips an object already there only
when its ETag equals the one computed from the local file (and its size and recorded sha256 match).

Downloads are planned from the manifest, not from the object index (which no checksum covers): an index
entry is used only when it is a file the manifest lists (same size and sha256) or the tar of a tree it
lists, every path stays inside the ``.partial`` directory, and a tree's tar is extracted only when none of
its members could write outside the tree. Downloads hash while writing and refuse an object whose sha256
differs: a corrupted object is never restored.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import tarfile
import time

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Step, find_tool, run_pipeline
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import (
    RemoteEntry, RemoteError, finish_pull, parse_manifest, require)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    CHUNK, HashingFile, MANIFEST, ID_RE, SnapshotError, remove_tree)

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    HAS_BOTO3 = True
except ImportError:  # pragma: no cover - reported when the store is opened
    HAS_BOTO3 = False

INDEX = 'objects.json'
MARKER = '.djangoops-partial'  # the first object of a push, the last one a deletion removes
MIN_PART = 5 * 1024 * 1024  # S3's smallest multipart part (but the last)
_MD5_ETAG = re.compile(r'^[0-9a-f]{32}(-\d+)?$')
_SHA256 = re.compile(r'^[0-9a-f]{64}$')
_AUTH_CODES = ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken',
               'AuthorizationHeaderMalformed', '403')
TAR_FLAGS = ('--numeric-owner', '--sort=name', '--format=gnu')
# Seconds: a push puts its marker again at most this often, and only after progress. partial_max_age (any
# duration is accepted) must stay well above it - as for the SSH store's activity stamp (300 s too).
ACTIVITY_INTERVAL = 300
UNMARKED = ('no manifest.json and no %s marker: not a copy made by this collection (or one an older version '
            'left unfinished); it is never deleted' % MARKER)


class RequestError(RemoteError):
    """The store answered a request with an error; ``code`` is its S3 error code."""

    def __init__(self, message, code=''):
        super().__init__(message)
        self.code = code


class CopyRemovedError(RemoteError):
    """A push found its copy removed under it (by a prune that took it for abandoned)."""


class S3Store(object):
    kind = 's3'
    activity_interval = ACTIVITY_INTERVAL

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
        self._pushing = None  # the id of the push under way, whose marker progress() refreshes
        self._marked_at = 0.0

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
                raise RequestError('%s refused the credentials while %s (%s: %s); check remote.access_key and '
                                   'remote.secret_key and the bucket policy. Nothing was changed there by this '
                                   'request' % (self.describe(), what, code, msg), code)
            if code == 'NoSuchBucket':
                raise RequestError('bucket %r does not exist at %s' % (self.bucket, self.describe()), code)
            raise RequestError('%s failed while %s: %s: %s' % (self.describe(), what, code, msg), code)
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

    def uploads(self, prefix):
        """Every unfinished multipart upload under ``prefix``: [(key, upload id, Initiated epoch)]."""
        out = []
        kw = dict(Prefix=prefix)
        while True:
            page = self.call('listing unfinished uploads', 'list_multipart_uploads', **kw)
            for u in page.get('Uploads') or []:
                out.append((u['Key'], u['UploadId'], _epoch(u.get('Initiated'))))
            if not page.get('IsTruncated') or not page.get('NextKeyMarker'):
                return out
            kw = dict(Prefix=prefix, KeyMarker=page['NextKeyMarker'], UploadIdMarker=page.get('NextUploadIdMarker') or '')

    def read_small(self, key, what):
        body = self.call(what, 'get_object', Key=key)['Body']
        try:
            return body.read()
        finally:
            body.close()

    # -- reading -------------------------------------------------------------------------------
    def entries(self):
        names = {}
        for key, (dummy, mtime) in self.objects(self.prefix).items():
            name, sep, rest = key[len(self.prefix):].partition('/')
            if not sep:
                continue
            info = names.setdefault(name, {'mtime': 0, 'manifest': False, 'marker': False})
            info['mtime'] = max(info['mtime'], mtime)
            info['manifest'] = info['manifest'] or rest == MANIFEST
            info['marker'] = info['marker'] or rest == MARKER
        partials = dict((name, info) for name, info in names.items() if info['marker'] and not info['manifest'])
        if partials:
            self._upload_activity(partials)
        return [self._entry(name, info) for name, info in sorted(names.items())]

    def _upload_activity(self, partials):
        """Date partial copies by their multipart uploads in flight too (the upload's start, its newest part): a push
        uploading a large object adds no object to a listing until the upload completes - also one by an older
        version of the collection, which does not refresh its marker. A key that may not list uploads (one made to
        pull) leaves the dates as they are: the marker a push refreshes still counts."""
        try:
            uploads = self.uploads(self.prefix)
        except RequestError as e:
            if e.code not in _AUTH_CODES:
                raise
            self.record('s3 %s: cannot list unfinished uploads (%s); incomplete copies are dated by their objects'
                        % (self.bucket, e.code))
            return
        for key, upload_id, initiated in uploads:
            name, sep, dummy = key[len(self.prefix):].partition('/')
            info = partials.get(name) if sep else None
            if info is not None:
                info['mtime'] = max(info['mtime'], initiated, self._last_part(key, upload_id))

    def _last_part(self, key, upload_id):
        """When the newest part of an upload was stored. Now when the upload ended since it was listed (completed:
        its object is newer than the listing; or aborted); 0 when the key may not list parts."""
        newest = 0
        kw = dict(Key=key, UploadId=upload_id)
        while True:
            try:
                page = self.call('listing the parts uploaded to %s' % key, 'list_parts', **kw)
            except RequestError as e:
                if e.code == 'NoSuchUpload':
                    return int(time.time())
                if e.code in _AUTH_CODES:
                    self.record('s3 %s: cannot list the parts of its unfinished upload (%s); dated by the upload\'s '
                                'start and the copy\'s objects' % (key, e.code))
                    return 0
                raise
            for part in page.get('Parts') or []:
                newest = max(newest, _epoch(part.get('LastModified')))
            if not page.get('IsTruncated') or not page.get('NextPartNumberMarker'):
                return newest
            kw = dict(Key=key, UploadId=upload_id, PartNumberMarker=page['NextPartNumberMarker'])

    def _entry(self, name, info):
        """complete (a manifest), partial (our marker, no manifest) or invalid (anything else: never deleted)."""
        if not ID_RE.match(name):
            return RemoteEntry(name, 'invalid', mtime=info['mtime'])
        if info['manifest']:
            entry = RemoteEntry(name, 'complete', mtime=info['mtime'])
            data = self.read_small(self.key(name, MANIFEST), 'reading the manifest of %s' % name)
            entry.manifest, entry.manifest_sha256, entry.problem = parse_manifest(name, data)
            return entry
        if info['marker']:
            return RemoteEntry(name, 'partial', mtime=info['mtime'])
        return RemoteEntry(name, 'invalid', mtime=info['mtime'], problem=UNMARKED)

    def index(self, entry):
        """The object index of a snapshot, every entry checked for its form (not yet against the manifest)."""
        key = self.key(entry.name, INDEX)
        data = self.read_small(key, 'reading the object index of %s' % entry.name)
        try:
            doc = json.loads(data.decode('utf-8'))
            problem = None if isinstance(doc, dict) and isinstance(doc.get('objects'), list) else 'no list of objects'
        except (ValueError, UnicodeDecodeError) as e:
            problem = e
        if problem:
            raise RemoteError('the object index of snapshot %s on %s is unreadable: %s'
                              % (entry.name, self.describe(), problem))
        objects = doc['objects']
        for number, obj in enumerate(objects, 1):
            problem = _malformed(obj)
            if problem:
                raise RemoteError('the object index %s on %s is malformed: its entry %d %s'
                                  % (key, self.describe(), number, problem))
        return objects

    def plan(self, entry):
        """[(index entry, tree directory or None)] for the objects of a snapshot its manifest accounts for, and the
        problems: entries it does not list, that disagree with it, or that are missing."""
        files, trees = self._expected(entry)
        plan, problems, seen = [], [], set()
        for obj in self.index(entry):
            path = obj['path']
            if path in seen:
                problems.append('%s: listed twice in the object index' % path)
                continue
            seen.add(path)
            if obj.get('kind') == 'tree':
                if path not in trees or obj.get('dir', trees[path]) != trees[path]:
                    problems.append('%s: a tree the manifest does not list' % path)
                    continue
                plan.append((obj, trees[path]))
                continue
            known = files.get(path)
            if known is None:
                problems.append('%s: an object the manifest does not list' % path)
            elif (known.get('size'), known.get('sha256')) != (obj['size'], obj['sha256']):
                problems.append('%s: the index and the manifest disagree' % path)
            else:
                plan.append((obj, None))
        problems.extend('%s: not in the object index' % p for p in sorted((set(files) | set(trees)) - seen))
        return plan, problems

    def _expected(self, entry):
        """The manifest's files {path: file entry} and media tree tars {<dir>.tar: dir}, as the push names them."""
        files, trees = {}, {}
        try:
            for part in entry.manifest['parts'].values():
                for f in part.get('files') or []:
                    files[f['path']] = f
                for tree in part.get('trees') or []:
                    if not tree.get('missing'):
                        trees[tree['dir'] + '.tar'] = tree['dir']
        except (AttributeError, KeyError, TypeError) as e:
            raise RemoteError('the manifest of snapshot %s on %s does not list its files in a form this collection '
                              'reads (%s: %s)' % (entry.name, self.describe(), type(e).__name__, e))
        return files, trees

    def present(self, entry):
        """Whether every object the index lists is there with its size (a cheap completeness check)."""
        objects = self.objects(self.key(entry.name))
        for obj in self.index(entry):
            if objects.get(self.key(entry.name, obj['path']), (None,))[0] != obj['size']:
                return False
        return True

    def verify(self, entry):
        """Download and hash every object of a snapshot; problems, empty when sound."""
        try:
            plan, problems = self.plan(entry)
        except RemoteError as e:
            return [str(e)]
        for obj, dummy in plan:
            try:
                size, digest = self._hash_object(self.key(entry.name, obj['path']))
            except RemoteError as e:
                problems.append('%s: %s' % (obj['path'], e))
                continue
            if size != obj['size'] or digest != obj['sha256']:
                problems.append('%s: sha256 %s (%d bytes), expected %s (%d bytes)'
                                % (obj['path'], digest, size, obj['sha256'], obj['size']))
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
        """The marker first, then every object (skipping ones already there intact from an interrupted push; the
        marker is put again as they go, see progress), then - once the marker and every object are seen still
        there - the index, then the manifest; the marker goes last."""
        sid = snapshot.id
        self._put_marker(sid, 'push')
        self._pushing = sid
        try:
            index = self._push_objects(snapshot)
            self._check_still_there(sid, index)
        except CopyRemovedError:
            raise
        except RemoteError:
            self._check_marker(sid)  # a prune that aborted the upload under way fails it: say so
            raise
        finally:
            self._pushing = None
        data = json.dumps({'snapshot': sid, 'objects': index}, indent=1, sort_keys=True).encode('utf-8')
        self._put_small(self.key(sid, INDEX), data)
        with open(os.path.join(snapshot.path, MANIFEST), 'rb') as f:
            self._put_small(self.key(sid, MANIFEST), f.read())
        try:
            self.call('removing the marker of %s' % sid, 'delete_object', Key=self.key(sid, MARKER))
        except RemoteError as e:  # the manifest is there: the snapshot is complete, the marker is only clutter
            self.record('s3 %s stays (%s); harmless: the manifest makes %s complete' % (MARKER, e, sid))

    def _push_objects(self, snapshot):
        sid = snapshot.id
        self._abort_uploads(self.key(sid))
        there = self.objects(self.key(sid))
        index = []
        for part in snapshot.manifest['parts'].values():
            for f in part.get('files') or []:
                index.append(self._push_file(snapshot, f, there))
                self.progress()
            for tree in part.get('trees') or []:
                if not tree.get('missing'):
                    index.append(self._push_tree(snapshot, tree))
                    self.progress()
        return index

    def _put_marker(self, snapshot_id, what):
        data = json.dumps({'snapshot': snapshot_id, 'by': 'djangoops.maintenance', 'what': what,
                           'at': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')})
        self._put_small(self.key(snapshot_id, MARKER), data.encode('utf-8'))
        self._marked_at = time.monotonic()

    def progress(self):
        """The push under way stored a part or an object: put its marker again (its LastModified is the copy's
        activity to a prune) when ACTIVITY_INTERVAL has passed since it last did - unless the copy was removed."""
        sid = self._pushing
        if sid is None or time.monotonic() - self._marked_at < self.activity_interval:
            return
        marker = self.key(sid, MARKER)
        if marker not in self.objects(marker):
            self._removed(sid, 'its marker %s is gone' % MARKER)
        self._put_marker(sid, 'push')

    def _check_marker(self, sid):
        """After a request failed: fail as removed when the marker is gone (else the failure speaks for itself)."""
        try:
            there = self.objects(self.key(sid, MARKER))
        except RemoteError:
            return
        if self.key(sid, MARKER) not in there:
            self._removed(sid, 'its marker %s is gone' % MARKER)

    def _check_still_there(self, sid, index):
        """Fail unless the marker of the push under way and every object of ``index`` are there with their size."""
        there = self.objects(self.key(sid))
        if self.key(sid, MARKER) not in there:
            self._removed(sid, 'its marker %s is gone' % MARKER)
        gone = [obj['path'] for obj in index if there.get(self.key(sid, obj['path']), (None,))[0] != obj['size']]
        if gone:
            self._removed(sid, '%d object(s) it uploaded are gone: %s' % (len(gone), ', '.join(gone[:5])))

    def _removed(self, sid, why):
        """A prune (or someone) removed the copy this push writes: mark what the push left as its own again (the
        next push resumes it, a prune removes it once it is stale) and fail; nothing was published."""
        try:
            self._put_marker(sid, 'push')
        except RemoteError as e:
            self.record('s3 %s could not be put back (%s)' % (self.key(sid, MARKER), e))
        raise CopyRemovedError('the incomplete copy of snapshot %s on %s was removed while this push ran (%s), so '
                               'nothing was published: snapshot_remote_prune took it for abandoned - it made no '
                               'progress for longer than partial_max_age - or someone deleted it. Push again'
                               % (sid, self.describe(), why))

    def _push_file(self, snapshot, f, there):
        key = self.key(snapshot.id, f['path'])
        path = snapshot.file_path(f)
        if there.get(key, (None,))[0] == f['size'] and self._intact(key, path, f):
            self.record('s3 skip %s (already uploaded; its ETag and sha256 match the local file)' % key)
        else:
            with open(path, 'rb') as src:
                up = Upload(self, key, {'sha256': f['sha256']})
                _pump(src, up)
                up.finish(expect_sha256=f['sha256'])
        return dict(path=f['path'], size=f['size'], sha256=f['sha256'], kind='file')

    def _intact(self, key, path, f):
        """Whether the object at ``key`` holds the local file: its recorded sha256 is the manifest's, and its ETag
        (the store's MD5 of what it holds) equals the one computed from the local file, whose sha256 is the
        manifest's too. Metadata alone is never trusted: it was set before the bytes were checked."""
        head = self.call('checking %s' % key, 'head_object', Key=key)
        if (head.get('Metadata') or {}).get('sha256') != f['sha256']:
            return False
        etag = (head.get('ETag') or '').strip('"')
        if not _MD5_ETAG.match(etag):
            self.record('s3 %s: ETag %r is not an MD5, so the object cannot be compared without downloading it; '
                        'uploading it again' % (key, etag))
            return False
        sha256, local = local_etag(path, self.part_size)
        return sha256 == f['sha256'] and local == etag

    def _push_tree(self, snapshot, tree):
        rel = tree['dir'] + '.tar'
        up = Upload(self, self.key(snapshot.id, rel), {})
        tar = Step([find_tool('tar')] + list(TAR_FLAGS) + ['-C', snapshot.file_path({'path': tree['dir']}),
                                                           '-cf', '-', '.'], name='tar')
        self.record('%s | s3 upload %s' % (tar.display(), self.key(snapshot.id, rel)))
        try:
            run_pipeline([tar], sink=up)
        except BaseException:
            up.abort()
            raise
        up.finish()
        return dict(path=rel, size=up.size, sha256=up.sha256, kind='tree', dir=tree['dir'])

    def _put_small(self, key, data):
        up = Upload(self, key, {'sha256': hashlib.sha256(data).hexdigest()})
        up.write(data)
        up.finish()

    def _abort_uploads(self, prefix):
        """Multipart uploads left by an interrupted push hold storage without being objects: abort them."""
        for key, upload_id, dummy in self.uploads(prefix):
            self.call('aborting an unfinished upload', 'abort_multipart_upload', Key=key, UploadId=upload_id)

    # -- pulling -------------------------------------------------------------------------------
    def pull(self, entry, store, links):  # pylint: disable=unused-argument
        """Download what the manifest accounts for into ``<id>.partial`` (one pull of an id at a time), then
        verify it and rename it."""
        store.ensure()  # snapshot_copy holds pull_lock(store.root, entry.name) around this
        final = store.path_of(entry.name)
        if os.path.lexists(final):
            raise SnapshotError('snapshot %s already exists at %s' % (entry.name, final))
        plan, problems = self.plan(entry)
        if problems:
            raise RemoteError('the object index of snapshot %s on %s does not match its manifest; refusing to '
                              'pull it: %s' % (entry.name, self.describe(), '; '.join(problems[:10])))
        partial = store.partial_path(entry.name)
        if os.path.isdir(partial):
            remove_tree(partial)  # an earlier pull cut short: objects are re-downloaded and re-verified
        os.mkdir(partial, 0o700)
        for obj, tree_dir in plan:
            try:
                self._fetch(entry, partial, obj, tree_dir)
            except OSError as e:
                raise RemoteError('writing %s of snapshot %s into %s failed: %s'
                                  % (obj['path'], entry.name, partial, e))
        manifest = os.path.join(partial, MANIFEST)
        fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, 'wb') as f:
            f.write(self.read_small(self.key(entry.name, MANIFEST), 'reading the manifest of %s' % entry.name))
        return finish_pull(store, entry, partial)

    def _fetch(self, entry, partial, obj, tree_dir):
        key = self.key(entry.name, obj['path'])
        if tree_dir is None:
            dest = inside(partial, obj['path'], key)
            os.makedirs(os.path.dirname(dest), 0o700, exist_ok=True)
            self._download(key, dest, obj)
            return
        dest = inside(partial, tree_dir, key)
        os.makedirs(dest, 0o700)  # new: a tree is extracted into a directory of its own
        tarball = os.path.join(partial, '.%s.tar' % os.path.basename(dest))
        self._download(key, tarball, obj)
        check_tar(tarball, key)
        step = Step([find_tool('tar'), '--numeric-owner', '-xpf', tarball, '-C', dest], name='tar')
        self.record(step.display())
        run_pipeline([step])
        os.unlink(tarball)

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

    # -- deleting ------------------------------------------------------------------------------
    def delete(self, entry):
        """The marker first, then the manifest: from that moment the name is a partial copy to every reader (which
        the next prune finishes removing), whatever follows. The marker goes last."""
        prefix = self.key(entry.name)
        keys = sorted(self.objects(prefix))
        marker = self.key(entry.name, MARKER)
        if marker in keys:
            keys.remove(marker)
        else:
            self._put_marker(entry.name, 'delete')
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
        self.call('deleting %s' % marker, 'delete_object', Key=marker)


def _epoch(when):
    """A time from a listing (a datetime) as whole seconds since the epoch; 0 when there is none."""
    return int(when.timestamp()) if isinstance(when, datetime.datetime) else 0


def _malformed(obj):
    """Why an object index entry cannot be used, or None."""
    if not isinstance(obj, dict):
        return 'is not a JSON object'
    if not isinstance(obj.get('path'), str) or not obj['path']:
        return 'has no path'
    if isinstance(obj.get('size'), bool) or not isinstance(obj.get('size'), int) or obj['size'] < 0:
        return '(%s) has no size' % obj['path']
    if not isinstance(obj.get('sha256'), str) or not _SHA256.match(obj['sha256']):
        return '(%s) has no sha256' % obj['path']
    if obj.get('kind', 'file') not in ('file', 'tree'):
        return '(%s) has an unknown kind %r' % (obj['path'], obj.get('kind'))
    return None


def inside(base, rel, what):
    """``base``/``rel``, refused unless ``rel`` is a plain relative path that stays in ``base`` (no absolute path,
    no "..", no symbolic link out of it on the way)."""
    parts = rel.split('/') if isinstance(rel, str) else ['']
    if '\0' in ''.join(parts) or [p for p in parts if p in ('', '.', '..')]:
        raise RemoteError('%s: %r is not a relative path inside the snapshot; refusing to write it' % (what, rel))
    path = os.path.join(base, *parts)
    real_base = os.path.realpath(base)
    if os.path.commonpath([os.path.realpath(os.path.dirname(path)), real_base]) != real_base:
        raise RemoteError('%s: %r leads outside the snapshot through a symbolic link; refusing to write it'
                          % (what, rel))
    return path


def check_tar(path, what):
    """Refuse a tar archive that could write outside the directory it is extracted into: a member with an
    absolute name or "..", one under a symbolic link it holds, a hard link to anything but a file extracted
    before, a name twice, or anything but files, directories and links."""
    kinds = {}
    try:
        with tarfile.open(path, 'r:') as archive:
            for member in archive:
                problem = _member_problem(member, kinds)
                if problem:
                    raise RemoteError('%s: the tar member %r %s; refusing to extract it' % (what, member.name, problem))
    except (tarfile.TarError, OSError) as e:
        raise RemoteError('%s is not a tar archive this collection wrote: %s' % (what, e))


def _tar_name(name):
    """A member name as a tuple of components (no "." or empty ones), or None when it leaves the directory."""
    if name.startswith('/'):
        return None
    parts = tuple(p for p in name.split('/') if p not in ('', '.'))
    return None if '..' in parts else parts


def _member_problem(member, kinds):
    name = _tar_name(member.name)
    if name is None:
        return 'is an absolute path or holds ".."'
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        return 'is not a file, directory or link'
    if name in kinds or (not name and not member.isdir()):
        return 'names something the archive already holds'
    if [i for i in range(1, len(name)) if kinds.get(name[:i]) == 'sym']:
        return 'lies under a symbolic link of the archive'
    if member.islnk():
        # A second name of a file or of a symbolic link (rsync -H keeps hard-linked symlinks too): it is what
        # its target is, and nothing may lie under it if that is a symlink.
        target = kinds.get(_tar_name(member.linkname))
        if target not in ('reg', 'sym'):
            return 'is a hard link to something other than a file or symbolic link extracted before it'
        kinds[name] = target
        return None
    kinds[name] = 'sym' if member.issym() else 'reg' if member.isreg() else 'other'
    return None


def local_etag(path, part_size):
    """(sha256, ETag) of a local file, the ETag as S3 computes it for an Upload of the file in parts of
    ``part_size``: the MD5 of the bytes for one PUT (a file smaller than a part), else the MD5 of the parts'
    MD5s and "-<number of parts>"."""
    sha = hashlib.sha256()
    parts = []
    md5 = hashlib.md5()
    filled = size = 0
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            sha.update(chunk)
            size += len(chunk)
            view = memoryview(chunk)
            while view:
                take = min(len(view), part_size - filled)
                md5.update(view[:take])
                filled += take
                view = view[take:]
                if filled == part_size:
                    parts.append(md5.digest())
                    md5, filled = hashlib.md5(), 0
    if size < part_size:
        return sha.hexdigest(), md5.hexdigest()
    if filled:
        parts.append(md5.digest())
    return sha.hexdigest(), '%s-%d' % (hashlib.md5(b''.join(parts)).hexdigest(), len(parts))


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
        self.store.progress()

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
            self._discard_stored()
            raise RemoteError('%s stored %s with ETag %s, but the bytes sent have %s: the object is corrupted in the '
                              'store (it is deleted, or replaced by the next push); push again'
                              % (self.store.describe(), self.key, etag, expected))
        if not _MD5_ETAG.match(etag):
            self.store.record('s3 %s: ETag %r is not an MD5 (server-side encryption?); verified by sha256 only'
                              % (self.key, etag))

    def _discard_stored(self):
        """Delete an object the store corrupted: its metadata records the sha256 the bytes should have had, so
        left there it would look intact. Should the delete fail, the next push still finds the ETag wrong."""
        try:
            self.store.call('deleting the corrupted %s' % self.key, 'delete_object', Key=self.key)
        except RemoteError as e:
            self.store.record('s3 %s: the corrupted object could not be deleted (%s); the next push replaces it'
                              % (self.key, e))

    def abort(self):
        if self.upload_id is not None:
            try:
                self.store.call('aborting the upload of %s' % self.key, 'abort_multipart_upload', Key=self.key,
                                UploadId=self.upload_id)
            except RemoteError:
                pass  # the next push aborts leftovers
            self.upload_id = None
