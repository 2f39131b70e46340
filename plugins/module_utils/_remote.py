# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: off-host snapshot stores (an SSH backup host, an S3-compatible object
store), the ``remote`` option they share, and what copying does whatever the transport.

A remote store holds snapshots in the same format as a local root. A remote snapshot is complete only
once its manifest arrived, and the manifest is always sent last: an SSH copy is written as
``<id>.partial`` and renamed; an S3 copy uploads every object, then ``manifest.json``. Readers see a
snapshot only where a manifest is, so an interrupted copy is never mistaken for one; the next push
resumes it (rsync skips what arrived, S3 skips objects already there with the right size and digest)
and a prune removes it once it is older than ``partial_max_age``.

A snapshot already on the other side is skipped when its manifest is byte-for-byte the same (the
manifest holds the sha256 of every file, so equal manifests mean equal snapshots) and, for S3, every
object it lists is present with its size. Only complete local snapshots are ever pushed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os

from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    ID_RE, MANIFEST, PARTIAL_SUFFIX, Snapshot, SnapshotError, check_manifest, describe_future, format_tolerance,
    fsync_dir, hash_file, isoformat, parse_time, read_manifest, split_future, utcnow, validate_id, warn_future)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_remove import pull_lock_path

TYPES = ('ssh', 's3')


class RemoteError(SnapshotError):
    """A remote store failed or refused; the message names the store and never holds a secret."""


def remote_argument_spec():
    """The ``remote`` option (documented by the ``djangoops.maintenance.remote`` doc fragment)."""
    return dict(
        type='dict', required=True, options=dict(
            type=dict(type='str', required=True, choices=list(TYPES)),
            # ssh
            host=dict(type='str'),
            port=dict(type='int', default=22),
            user=dict(type='str'),
            path=dict(type='str'),
            ssh_key=dict(type='path', no_log=False),
            ssh_key_content=dict(type='str', no_log=True),
            known_hosts=dict(type='path'),
            host_key_checking=dict(type='str', default='yes', choices=['yes', 'accept-new', 'no']),
            ssh_options=dict(type='list', elements='str', default=[]),
            bwlimit=dict(type='int'),
            io_timeout=dict(type='int', default=60),
            # s3
            endpoint_url=dict(type='str'),
            bucket=dict(type='str'),
            prefix=dict(type='str', default=''),
            region=dict(type='str'),
            access_key=dict(type='str', no_log=True),
            secret_key=dict(type='str', no_log=True),
            session_token=dict(type='str', no_log=True),
            validate_certs=dict(type='bool', default=True),
            ca_bundle=dict(type='path'),
            part_size_mb=dict(type='int', default=16),
        ))


def open_remote(params, secrets, record):
    """The store named by the ``remote`` option. ``record`` receives each command or request, for the
    module's ``commands`` result. Imports are local: an SSH user needs no boto3."""
    kind = params.get('type')
    if kind == 'ssh':
        from ansible_collections.djangoops.maintenance.plugins.module_utils._remote_ssh import SshStore
        return SshStore(params, secrets, record)
    if kind == 's3':
        from ansible_collections.djangoops.maintenance.plugins.module_utils._remote_s3 import S3Store
        return S3Store(params, secrets, record)
    raise RemoteError('remote.type must be one of %s, got %r' % (', '.join(TYPES), kind))


def require(params, kind, names):
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise RemoteError('remote.type %s needs %s' % (kind, ', '.join('remote.' + n for n in missing)))


def classify(name, has_manifest):
    """complete | partial | invalid, as a local root's entries are."""
    if name.endswith(PARTIAL_SUFFIX):
        return 'partial'
    if ID_RE.match(name) and has_manifest:
        return 'complete'
    return 'invalid'


class RemoteEntry(object):
    """One name in a remote store: its kind, and for a complete snapshot its manifest and the sha256 of
    the manifest's bytes."""

    def __init__(self, name, kind, manifest=None, manifest_sha256=None, mtime=None, problem=None):
        self.name = name
        self.kind = kind
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256
        self.mtime = mtime
        self.problem = problem

    @property
    def id(self):
        return self.name

    def completed_at(self):
        return (self.manifest or {}).get('completed_at', '')


def parse_manifest(name, data):
    """(manifest, sha256 of its bytes, problem) of a remote manifest's bytes."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        manifest = json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as e:
        return None, digest, 'manifest.json is not JSON: %s' % e
    try:
        check_manifest(manifest, 'manifest.json of %s' % name, name, name)  # the same checks as a local one
    except SnapshotError as e:
        return None, digest, str(e)
    return manifest, digest, None


def complete(entries):
    """Complete remote snapshots with a readable manifest, oldest first (by completion time)."""
    out = [e for e in entries if e.kind == 'complete' and e.manifest is not None]
    out.sort(key=lambda e: (e.completed_at(), e.name))
    return out


def resolve_remote_id(entries, snapshot_id, host=None, one_host=False, now=None):
    """The remote entry ``snapshot_id`` names (``latest``: the newest complete one that is not future-dated by
    ``now``, default this host's clock; of ``host`` when given, as its manifest records it). ``one_host``: refuse
    ``latest`` without ``host`` on a store that holds several hosts' snapshots - for a pull, whose ``latest``
    would otherwise be whichever host backed up last."""
    done = complete(entries)
    if snapshot_id in (None, '', 'latest'):
        hosts = sorted(set(str(e.manifest.get('host')) for e in done))
        if host:
            done = [e for e in done if e.manifest.get('host') == host]
            if not done:
                raise RemoteError('the remote store holds no complete snapshot of host %s (it holds snapshots of: %s)'
                                  % (host, ', '.join(hosts) or 'no host'))
        elif one_host and len(hosts) > 1:
            raise RemoteError('the remote store holds snapshots of several hosts (%s), so latest does not say whose; '
                              'name the host (from_host) or the snapshot id' % ', '.join(hosts))
        if not done:
            raise RemoteError('the remote store holds no complete snapshot')
        now = now or utcnow()
        trusted, future = split_future(done, now)
        if not trusted:
            whose = ' of host %s' % host if host else ''
            raise RemoteError('every complete snapshot on the remote store%s is future-dated - %s - more than %s after '
                              'this host\'s clock (%s), so latest will not pick one; name the snapshot id, or see '
                              'docs/troubleshooting.md' % (whose, describe_future(future), format_tolerance(), isoformat(now)))
        warn_future(future, now, 'latest skips it')
        return trusted[-1]
    validate_id(snapshot_id)
    for e in done:
        if e.name == snapshot_id:
            return e
    for e in entries:
        if e.name == snapshot_id + PARTIAL_SUFFIX:
            raise RemoteError('snapshot %s on the remote store is incomplete (an interrupted copy); push it again '
                              'to complete it' % snapshot_id)
    raise RemoteError('snapshot %s is not on the remote store' % snapshot_id)


def manifest_sha256(snapshot):
    return hash_file(os.path.join(snapshot.path, MANIFEST))[1]


def link_candidates(snapshot, entries, limit=3):
    """Remote snapshots to hard-link unchanged media against: the newest ones, those of the same host first."""
    done = [e for e in complete(entries) if e.name != snapshot.id]
    host = snapshot.manifest.get('host')
    same = [e for e in done if e.manifest.get('host') == host]
    other = [e for e in done if e.manifest.get('host') != host]
    return [e.name for e in (list(reversed(same)) + list(reversed(other)))[:limit]]


def summary(entry):
    m = entry.manifest or {}
    parts = {}
    for name, part in (m.get('parts') or {}).items():
        parts[name] = dict((k, part[k]) for k in ('kind', 'engine', 'database', 'format', 'compression', 'bytes')
                           if part.get(k) is not None)
        parts[name]['files'] = len(part.get('files') or [])
        parts[name]['encrypted'] = bool(part.get('encryption'))
    return dict(id=entry.name, host=m.get('host'), created_at=m.get('created_at'),
                completed_at=m.get('completed_at'), labels=m.get('labels') or {}, bytes=m.get('bytes', 0),
                parts=parts, status='complete')


def snapshot_time(entry):
    m = entry.manifest or {}
    return parse_time(m.get('created_at') or m['completed_at'])


def finish_pull(store, entry, partial):
    """A pulled copy becomes a snapshot only if its manifest is the one listed and every checksum holds."""
    with open(os.path.join(partial, MANIFEST), 'rb') as f:
        data = f.read()
    manifest, digest, problem = parse_manifest(entry.name, data)
    if problem or digest != entry.manifest_sha256:
        raise RemoteError('the copy of snapshot %s has a different manifest than the remote store listed (%s); '
                          'it stays incomplete as %s' % (entry.name, problem or 'changed during the copy', partial))
    snap = Snapshot(partial, manifest)
    problems = snap.verify()
    if problems:
        raise RemoteError('the copy of snapshot %s failed its checksum verification and stays incomplete as %s: %s'
                          % (entry.name, partial, '; '.join(problems[:10])))
    final = store.path_of(entry.name)
    if os.path.lexists(final):
        raise SnapshotError('snapshot %s already exists at %s' % (entry.name, final))
    os.rename(partial, final)
    fsync_dir(store.root)
    read_manifest(final)
    return store.load(entry.name)


@contextlib.contextmanager
def pull_lock(root, snapshot_id):
    """Hold ``<root>/.<id>.pull-lock`` (flock) while a pull of ``snapshot_id`` runs: a second pull of the same id
    fails at once instead of removing the first one's ``.partial`` under it. The file is removed on release."""
    path = pull_lock_path(root, snapshot_id)
    fd = _lock_file(path, snapshot_id, root)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still held: a pull that opened this file sees it is gone and opens a new one
        os.close(fd)


def _lock_file(path, snapshot_id, root):
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RemoteError('another pull of snapshot %s into %s is running (it holds %s); let it finish, then the '
                              'snapshot is there' % (snapshot_id, root, path))
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        mine = os.fstat(fd)
        if st is not None and (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # released and removed by the pull that held it between our open and our flock: again
