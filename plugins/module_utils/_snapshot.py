# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the on-disk snapshot format. This file alone owns it.

A snapshot root holds one directory per snapshot::

    <root>/<id>.partial/          while being written (never mistaken for a snapshot)
        .parts/<part>.json        a finished part's metadata, written when the part is done
        <part>/...                the part's files (database dump, media tree, ...)
    <root>/<id>/                  once complete
        manifest.json             written last, atomically; lists every part and file with
                                  size and sha256

A part may also hold directory trees copied verbatim (media); they are recorded by a census and an
optional SHA256SUMS file rather than file by file (see ``_snapshot_tree``), and ``verify`` checks them.

A snapshot may hold several parts written by different modules (database, media, Django
migration state, code release) under one id; ``finalize`` folds the part files into the manifest,
fsyncs, and renames ``<id>.partial`` to ``<id>``. A directory without manifest.json, or named
``*.partial``, is incomplete. Directories are 0700 and files 0600.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import time

from ansible.module_utils.common.warnings import warn

from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import verify_trees

FORMAT = 'djangoops.maintenance.snapshot'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
PARTIAL_SUFFIX = '.partial'
PARTS_DIR = '.parts'
BEGUN_FILE = 'BEGUN'
CHUNK = 1024 * 1024
# Snapshots are ranked (latest, retention) by the dates they carry, which are the clock of the host that took
# them. One taken while that clock ran ahead (a VM with a bad RTC, corrected later by NTP) would rank newest
# until real time caught up - latest would restore it instead of newer snapshots, and retention would keep it
# and drop newer ones. A snapshot dated more than this after the reading host's clock is "future-dated":
# latest skips it and retention keeps it without counting it. Minutes, not seconds: clocks that NTP keeps in
# step differ by far less, and a snapshot pulled from another host right after it was taken stays believable.
FUTURE_TOLERANCE = datetime.timedelta(minutes=5)

ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$')
PART_RE = re.compile(r'^[a-z0-9][a-z0-9_.-]{0,63}$')
LABEL_KEY_RE = re.compile(r'^[A-Za-z0-9_.:/-]{1,128}$')
_ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'


class SnapshotError(Exception):
    """Bad snapshot input or a damaged snapshot; the message names the bad value."""


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def isoformat(dt):
    return dt.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def parse_time(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)


def manifest_dates(manifest):
    """The dates a manifest records (created_at, completed_at) that can be read."""
    out = []
    for key in ('created_at', 'completed_at'):
        try:
            out.append(parse_time(manifest[key]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def future_date(manifest, now=None):
    """The latest date ``manifest`` records when that is more than FUTURE_TOLERANCE after ``now`` (default this
    host's clock): the snapshot is future-dated. None for a believable (or unreadable) date."""
    dates = manifest_dates(manifest or {})
    if dates and max(dates) > (now or utcnow()) + FUTURE_TOLERANCE:
        return max(dates)
    return None


def split_future(snapshots, now=None):
    """``snapshots`` (anything with ``id`` and ``manifest``, order kept) as (the believable ones, (id, date) of
    the future-dated ones)."""
    trusted, future = [], []
    for snap in snapshots:
        when = future_date(snap.manifest, now)
        if when is None:
            trusted.append(snap)
        else:
            future.append((snap.id, when))
    return trusted, future


def describe_future(future):
    """``<id> (dated <date>)`` of each (id, date) of a future-dated snapshot, for messages."""
    return ', '.join('%s (dated %s)' % (snapshot_id, isoformat(when)) for snapshot_id, when in future)


def format_tolerance():
    return '%dm' % (FUTURE_TOLERANCE.total_seconds() // 60)


def warn_future(future, now, consequence):
    """One Ansible warning (shown with the task, and in its result's ``warnings``) per (id, date) of a
    future-dated snapshot."""
    for snapshot_id, when in future:
        warn('snapshot %s is future-dated - dated %s, more than %s after this host\'s clock (%s) - so %s; '
             'a clock ran ahead when it was taken (see docs/troubleshooting.md)'
             % (snapshot_id, isoformat(when), format_tolerance(), isoformat(now), consequence))


def new_id(now=None):
    """UTC timestamp plus a random suffix: sorts by time, never collides in practice."""
    now = now or utcnow()
    suffix = ''.join(secrets.choice(_ID_ALPHABET) for dummy in range(6))
    return now.strftime('%Y%m%dT%H%M%SZ') + '-' + suffix


def validate_id(snapshot_id):
    if not isinstance(snapshot_id, str) or not ID_RE.match(snapshot_id) or '..' in snapshot_id \
            or snapshot_id.endswith(PARTIAL_SUFFIX) or snapshot_id == 'latest':
        raise SnapshotError('invalid snapshot id %r: use letters, digits, ".", "_" and "-" (at most 128, '
                            'not starting with a separator, no "..", not ending in %s)'
                            % (snapshot_id, PARTIAL_SUFFIX))
    return snapshot_id


def validate_part(name):
    if not isinstance(name, str) or not PART_RE.match(name):
        raise SnapshotError('invalid snapshot part name %r: use lower-case letters, digits, ".", "_" and "-"'
                            % (name,))
    return name


def validate_labels(labels):
    out = {}
    for k, v in (labels or {}).items():
        if not LABEL_KEY_RE.match(str(k)):
            raise SnapshotError('invalid label key %r' % (k,))
        out[str(k)] = '' if v is None else str(v)
    return out


def _mkdir_private(path):
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)  # umask must not widen or narrow it


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path):
    """syncfs(2) the file system holding ``path``; False where the call does not exist (not Linux)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, 'syncfs of %s failed: %s' % (path, os.strerror(err)))
    finally:
        os.close(fd)
    return True


# A part (other than a database's) with more files than this is made durable with one syncfs(2).
SYNCFS_ABOVE_FILES = 256


def fsync_tree(path, syncfs_above=SYNCFS_ABOVE_FILES):
    """Make every regular file and directory below ``path`` durable (files written by other tools).

    A tree of a few files, and any database part (``syncfs_above=None``: a directory-format dump has a
    file per table), is fsynced file by file: syncfs(2) would also write back whatever else is dirty on
    that file system, and on a database host that is the server's own data files and WAL. A large tree
    (media) gets one syncfs(2) on Linux: each fsync(2) costs a disk cache flush even for a file that is
    already clean, and a media tree has thousands of files (hard-linked ones among them), so fsyncing
    them one by one took longer than copying them."""
    files, dirs, tried = [], [], False
    for dirpath, dummy, names in os.walk(path):
        dirs.append(dirpath)
        files.extend(os.path.join(dirpath, name) for name in names)
        if syncfs_above is not None and len(files) > syncfs_above and not tried:
            if _syncfs(path):
                return
            tried = True  # no syncfs(2) here: every file is fsynced
    for p in files:
        if os.path.islink(p):
            continue
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for dirpath in dirs:
        fsync_dir(dirpath)


def hash_file(path):
    """(size, sha256 hex) of a file, read once in chunks."""
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, 'rb', buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def write_json_atomic(path, data):
    """Write JSON to ``path`` via a temp file + fsync + rename, 0600."""
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=2, sort_keys=True, ensure_ascii=False)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path))


class HashingFile(object):
    """A new 0600 file whose size and sha256 are computed while it is written (no second read)."""

    def __init__(self, path):
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        self._f = os.fdopen(fd, 'wb', buffering=0)
        self._h = hashlib.sha256()
        self.size = 0
        self.sha256 = None

    def write(self, data):
        self._h.update(data)
        view = memoryview(data)
        try:
            while view:
                n = self._f.write(view)
                view = view[n:]
        except OSError as e:  # a full disk, a quota, an I/O error
            raise SnapshotError('writing %s failed after %d bytes: %s'
                                % (self.path, self.size + len(data) - len(view), e.strerror or e))
        self.size += len(data)

    def close(self):
        if self._f is None:
            return
        try:
            os.fsync(self._f.fileno())
        except OSError as e:
            raise SnapshotError('writing %s failed after %d bytes: %s' % (self.path, self.size, e.strerror or e))
        finally:
            self._f.close()
            self._f = None
        self.sha256 = self._h.hexdigest()

    def discard(self):
        if self._f is not None:
            self._f.close()
            self._f = None
        if os.path.exists(self.path):
            os.unlink(self.path)


class PartWriter(object):
    """Writes one part of a partial snapshot: files under ``<partial>/<name>/`` and, at commit,
    the part's metadata. Files are recorded as paths relative to the snapshot directory."""

    def __init__(self, builder, name):
        self.builder = builder
        self.name = validate_part(name)
        self.dir = os.path.join(builder.path, name)
        if os.path.exists(self.dir) or os.path.exists(builder.part_meta_path(name)):
            raise SnapshotError('snapshot %s already has a part named %r' % (builder.id, name))
        _mkdir_private(self.dir)
        self.files = []
        self.started = time.monotonic()
        self.started_at = utcnow()

    def path_of(self, relpath):
        return os.path.join(self.dir, relpath)

    def create(self, relpath):
        """A HashingFile for ``<part>/<relpath>``; call ``add_hashed`` after closing it."""
        return HashingFile(self.path_of(relpath))

    def add_hashed(self, hf):
        self.files.append({'path': os.path.relpath(hf.path, self.builder.path), 'size': hf.size,
                           'sha256': hf.sha256})

    def add_existing(self, relpath):
        """Record a file another tool wrote (reads it once to hash it)."""
        path = self.path_of(relpath)
        os.chmod(path, 0o600)
        size, digest = hash_file(path)
        self.files.append({'path': os.path.relpath(path, self.builder.path), 'size': size, 'sha256': digest})

    def mkdir(self, relpath):
        _mkdir_private(self.path_of(relpath))

    def commit(self, meta):
        """Seal the part: fsync its files and write its metadata. ``meta`` must say ``kind``."""
        if 'kind' not in meta:
            raise ValueError('part metadata needs a kind')
        fsync_tree(self.dir, syncfs_above=None if meta['kind'] == 'database' else SYNCFS_ABOVE_FILES)
        record = dict(meta)
        record['files'] = sorted(self.files, key=lambda f: f['path'])
        # A part may state its own size (a media tree is not listed file by file in the manifest).
        record.setdefault('bytes', sum(f['size'] for f in self.files))
        record['started_at'] = isoformat(self.started_at)
        record['seconds'] = round(time.monotonic() - self.started, 3)
        write_json_atomic(self.builder.part_meta_path(self.name), record)
        return record


def _let_me_in(path):
    # Media trees keep their modes, so a directory may be read-only (0555) for a non-root user.
    # Only directories are opened up: files may be hard links shared with a snapshot that is kept.
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o700) != 0o700:
        os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)


def remove_tree(path):
    """Remove a directory tree without following symlinks, opening up read-only directories."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    _let_me_in(path)
    for dirpath, dirnames, dummy in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                _let_me_in(full)
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isdir(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


def discard_tree(path):
    """remove_tree for the clean-up after a failure: what cannot be removed stays (the snapshot stays
    ``.partial``, which no reader takes for complete, and a prune removes it later), and the error being
    handled is the one that is reported."""
    try:
        remove_tree(path)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


class SnapshotBuilder(object):
    """A snapshot being written: ``<root>/<id>.partial``. Open an existing one to add parts."""

    def __init__(self, store, snapshot_id, path, created):
        self.store = store
        self.id = snapshot_id
        self.path = path
        self.created = created

    def part_meta_path(self, name):
        return os.path.join(self.path, PARTS_DIR, name + '.json')

    def part(self, name):
        return PartWriter(self, name)

    def parts(self):
        out = {}
        d = os.path.join(self.path, PARTS_DIR)
        for fn in sorted(os.listdir(d)):
            if fn.endswith('.json'):
                with open(os.path.join(d, fn), encoding='utf-8') as f:
                    out[fn[:-5]] = json.load(f)
        return out

    def discard_part(self, name):
        """Remove a part that failed midway so the partial snapshot can still be finished or dropped."""
        discard_tree(os.path.join(self.path, validate_part(name)))
        if os.path.exists(self.part_meta_path(name)):
            os.unlink(self.part_meta_path(name))

    def finalize(self, labels=None, extra=None, require_parts=()):
        """Write manifest.json last, then rename ``<id>.partial`` to ``<id>``. Returns the manifest."""
        parts = self.parts()
        if not parts:
            raise SnapshotError('snapshot %s has no finished part; nothing to finalize' % self.id)
        missing = [p for p in require_parts if p not in parts]
        if missing:
            raise SnapshotError('snapshot %s lacks the part(s) %s' % (self.id, ', '.join(missing)))
        # A part directory without metadata is a part that failed midway: it must not ship.
        for entry in os.listdir(self.path):
            if entry not in (PARTS_DIR,) and entry not in parts:
                raise SnapshotError('snapshot %s holds %r, a part that never finished; refusing to finalize'
                                    % (self.id, entry))
        completed = utcnow()
        manifest = {
            'format': FORMAT,
            'format_version': FORMAT_VERSION,
            'id': self.id,
            'host': socket.gethostname(),
            'created_at': isoformat(self.created),
            'completed_at': isoformat(completed),
            'labels': validate_labels(labels),
            'parts': parts,
            'bytes': sum(p.get('bytes', 0) for p in parts.values()),
            'seconds': round((completed - self.created).total_seconds(), 3),
        }
        if extra:
            manifest.update(extra)
        shutil.rmtree(os.path.join(self.path, PARTS_DIR))
        write_json_atomic(os.path.join(self.path, MANIFEST), manifest)
        final = self.store.path_of(self.id)
        if os.path.lexists(final):
            raise SnapshotError('snapshot %s already exists at %s' % (self.id, final))
        os.rename(self.path, final)
        fsync_dir(self.store.root)
        self.path = final
        return manifest

    def abort(self):
        discard_tree(self.path)


class Snapshot(object):
    """A complete snapshot on disk and its manifest."""

    def __init__(self, path, manifest):
        self.path = path
        self.manifest = manifest
        self.id = manifest['id']

    def part(self, name):
        try:
            return self.manifest['parts'][name]
        except KeyError:
            raise SnapshotError('snapshot %s has no part %r (it has: %s)'
                                % (self.id, name, ', '.join(sorted(self.manifest['parts'])) or 'none'))

    def parts_of_kind(self, kind):
        return dict((n, p) for n, p in self.manifest['parts'].items() if p.get('kind') == kind)

    def file_path(self, entry):
        """Absolute path of a manifest file entry, refusing entries that leave the snapshot."""
        rel = entry['path']
        if os.path.isabs(rel) or '..' in rel.split('/'):
            raise SnapshotError('snapshot %s: manifest names a file outside the snapshot: %r' % (self.id, rel))
        path = os.path.join(self.path, rel)
        real_base = os.path.realpath(self.path)
        if os.path.commonpath([os.path.realpath(path), real_base]) != real_base:
            raise SnapshotError('snapshot %s: %r leads outside the snapshot' % (self.id, rel))
        return path

    def verify(self, parts=None, contents=True):
        """Re-hash every file of the given parts (default all). Returns a list of problems, empty if sound.
        ``contents`` False: every file there with its recorded size, every tree with its recorded listing, and no
        file read - for a caller that has just verified the same snapshot in full."""
        problems = []
        names = parts if parts is not None else sorted(self.manifest['parts'])
        for name in names:
            part = self.part(name)
            for entry in part.get('files', []):
                try:
                    path = self.file_path(entry)
                except SnapshotError as e:
                    problems.append(str(e))
                    continue
                if not os.path.isfile(path) or os.path.islink(path):
                    problems.append('%s: missing' % entry['path'])
                    continue
                actual = os.path.getsize(path)
                if actual != entry['size']:
                    problems.append('%s: size %d, manifest says %d' % (entry['path'], actual, entry['size']))
                    continue
                if not contents:
                    continue
                _size, digest = hash_file(path)
                if digest != entry['sha256']:
                    problems.append('%s: sha256 %s, manifest says %s' % (entry['path'], digest, entry['sha256']))
            if part.get('trees'):
                try:
                    part_dir = self.file_path({'path': name})
                except SnapshotError as e:
                    problems.append(str(e))
                    continue
                problems.extend(verify_trees(part_dir, part, label=name + '/', contents=contents))
        return problems

    def require_sound(self, parts=None, contents=True):
        problems = self.verify(parts, contents)
        if problems:
            raise SnapshotError('snapshot %s failed its checksum verification; refusing to use it: %s'
                                % (self.id, '; '.join(problems)))


class SnapshotStore(object):
    """A snapshot root directory."""

    def __init__(self, root):
        if not root or not os.path.isabs(root):
            raise SnapshotError('snapshot_root must be an absolute path, got %r' % (root,))
        self.root = os.path.normpath(root)

    def ensure(self):
        """Create the root (0700) if missing; refuse one that is not a writable directory."""
        if not os.path.exists(self.root):
            parent = os.path.dirname(self.root)
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            _mkdir_private(self.root)
        if not os.path.isdir(self.root):
            raise SnapshotError('snapshot_root %s is not a directory' % self.root)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise SnapshotError('snapshot_root %s is not writable by this user' % self.root)

    def path_of(self, snapshot_id):
        return os.path.join(self.root, validate_id(snapshot_id))

    def partial_path(self, snapshot_id):
        return self.path_of(snapshot_id) + PARTIAL_SUFFIX

    def begin(self, snapshot_id=None):
        """Start a new partial snapshot (fresh id when none is given)."""
        self.ensure()
        snapshot_id = validate_id(snapshot_id) if snapshot_id else new_id()
        if os.path.lexists(self.path_of(snapshot_id)):
            raise SnapshotError('snapshot %s already exists in %s' % (snapshot_id, self.root))
        path = self.partial_path(snapshot_id)
        _mkdir_private(path)
        _mkdir_private(os.path.join(path, PARTS_DIR))
        created = utcnow()
        fd = os.open(os.path.join(path, PARTS_DIR, BEGUN_FILE), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(isoformat(created) + '\n')
        return SnapshotBuilder(self, snapshot_id, path, created)

    def open_partial(self, snapshot_id, create=False):
        """Reopen ``<id>.partial`` to add a part (or begin it when ``create``)."""
        path = self.partial_path(snapshot_id)
        if not os.path.isdir(path):
            if create:
                return self.begin(snapshot_id)
            raise SnapshotError('no snapshot %s is being written in %s' % (snapshot_id, self.root))
        try:
            with open(os.path.join(path, PARTS_DIR, BEGUN_FILE), encoding='utf-8') as f:
                created = parse_time(f.read().strip())
        except (OSError, ValueError):
            raise SnapshotError('%s is not a snapshot being written by this collection' % path)
        return SnapshotBuilder(self, snapshot_id, path, created)

    def write_part(self, snapshot_id, part_name, fill, finalize=True, labels=None, begun=None):
        """Write one part the format's way: into ``<id>.partial`` (a new snapshot when ``snapshot_id`` is
        None or not begun yet), ``fill(part)`` writing and committing it. A part that fails is removed; a
        snapshot begun here is removed if anything fails, so nothing that looks complete is left. With
        ``finalize`` the manifest is written last. ``begun(builder)`` runs once the directory exists (to
        report the id of a snapshot that may then fail). Returns (builder, what fill returned, manifest
        or None)."""
        created_here = not (snapshot_id and os.path.isdir(self.partial_path(snapshot_id)))
        builder = self.open_partial(snapshot_id, create=True) if snapshot_id else self.begin()
        if begun is not None:
            begun(builder)
        try:
            try:
                filled = fill(builder.part(part_name))
            except BaseException:
                builder.discard_part(part_name)
                raise
            manifest = builder.finalize(labels=labels) if finalize else None
        except BaseException:
            if created_here:
                builder.abort()
            raise
        return builder, filled, manifest

    def resolve_path(self, path):
        """A user-given snapshot path, accepted only inside the root."""
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path if os.path.isabs(path) else os.path.join(self.root, path))
        if os.path.dirname(real) != real_root:
            raise SnapshotError('snapshot path %r is not a snapshot directory directly under snapshot_root %s'
                                % (path, self.root))
        return self.load(os.path.basename(real))

    def load(self, snapshot_id):
        if snapshot_id == 'latest':
            return self.latest()
        path = self.path_of(snapshot_id)
        if not os.path.isdir(path):
            if os.path.isdir(path + PARTIAL_SUFFIX):
                raise SnapshotError('snapshot %s in %s is incomplete (still %s%s); it cannot be used'
                                    % (snapshot_id, self.root, snapshot_id, PARTIAL_SUFFIX))
            raise SnapshotError('snapshot %s does not exist in %s' % (snapshot_id, self.root))
        return Snapshot(path, read_manifest(path))

    def latest(self, now=None):
        """The most recently completed snapshot whose date is believable; warns about each future-dated one it
        skips, and fails naming them when there is no other."""
        now = now or utcnow()
        snaps = self.list()
        if not snaps:
            raise SnapshotError('there is no complete snapshot in %s' % self.root)
        trusted, future = split_future(snaps, now)
        if not trusted:
            raise SnapshotError('every complete snapshot in %s is future-dated - %s - more than %s after this host\'s '
                                'clock (%s), so latest will not pick one; name the snapshot id, or see '
                                'docs/troubleshooting.md'
                                % (self.root, describe_future(future), format_tolerance(), isoformat(now)))
        warn_future(future, now, 'latest skips it')
        return trusted[-1]

    def entries(self):
        """Everything under the root: (name, kind) with kind complete | partial | invalid."""
        if not os.path.isdir(self.root):
            return []
        out = []
        for name in sorted(os.listdir(self.root)):
            full = os.path.join(self.root, name)
            if name.startswith('.') or not os.path.isdir(full) or os.path.islink(full):
                continue
            if name.endswith(PARTIAL_SUFFIX):
                out.append((name, 'partial'))
            elif ID_RE.match(name) and os.path.isfile(os.path.join(full, MANIFEST)):
                out.append((name, 'complete'))
            else:
                out.append((name, 'invalid'))
        return out

    def list(self):
        """Complete snapshots, oldest first (by completion time)."""
        snaps = []
        for name, kind in self.entries():
            if kind != 'complete':
                continue
            try:
                snaps.append(Snapshot(os.path.join(self.root, name), read_manifest(os.path.join(self.root, name))))
            except SnapshotError:
                continue
        snaps.sort(key=lambda s: (s.manifest.get('completed_at', ''), s.id))
        return snaps


SUMMARY_KEYS = ('kind', 'engine', 'database', 'source', 'format', 'compression', 'bytes', 'seconds')


def summarize(snap):
    """A short description of a snapshot for listings. A part may add its own ``summary`` dict
    (media parts report apparent and on-disk sizes there)."""
    m = snap.manifest
    parts = {}
    for name, part in m.get('parts', {}).items():
        entry = dict((k, part[k]) for k in SUMMARY_KEYS if part.get(k) is not None)
        entry['files'] = len(part.get('files', []))
        entry.update(part.get('summary') or {})
        parts[name] = entry
    return dict(id=snap.id, path=snap.path, host=m.get('host'), created_at=m.get('created_at'),
                completed_at=m.get('completed_at'), labels=m.get('labels', {}), bytes=m.get('bytes', 0),
                parts=parts, status='complete')


def read_manifest(path):
    mpath = os.path.join(path, MANIFEST)
    try:
        with open(mpath, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise SnapshotError('cannot read %s: %s' % (mpath, e))
    return check_manifest(manifest, mpath, os.path.basename(os.path.normpath(path)), path)


def check_manifest(manifest, where, name, lives_in):
    """``manifest`` (parsed JSON, read from ``where``), if it is a manifest this collection can read and
    describes snapshot ``name`` (the directory ``lives_in``, local or remote); else SnapshotError. Local and
    remote snapshots are checked alike."""
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise SnapshotError('%s is not a djangoops.maintenance snapshot manifest' % where)
    if manifest.get('format_version', 0) > FORMAT_VERSION:
        raise SnapshotError('%s has format version %s; this collection reads up to %s'
                            % (where, manifest.get('format_version'), FORMAT_VERSION))
    if manifest.get('id') != name:
        raise SnapshotError('%s names snapshot %r, but lives in %s' % (where, manifest.get('id'), lives_in))
    return manifest


def free_bytes(path):
    """Free bytes for an unprivileged writer on the filesystem holding ``path`` (or its nearest parent)."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
