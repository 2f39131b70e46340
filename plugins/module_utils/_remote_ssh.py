# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: a snapshot store on an SSH backup host, copied with rsync over SSH.

The backup host keeps a snapshot root in the local format (``<path>/<id>/manifest.json``), so the
collection's local modules also work there (delegate_to the backup host). A push rsyncs a snapshot
into ``<id>.partial`` (everything but the manifest, with ``--link-dest`` to the newest remote
snapshots so unchanged media files become hard links), then the manifest, re-hashes the copy on the
backup host against the manifest, syncs the file system and renames it to ``<id>``. A pull does the same
the other way round, verifies every checksum locally and only then renames. A copy resumed from an earlier
``<id>.partial`` compares every file by content (rsync ``--checksum``), so it repairs what a crash damaged.

rsync gives ``<id>.partial`` the old mtime of the snapshot it copies, so a copy in progress carries an
activity stamp: the mtime of its ``.parts`` directory (the local format's, which ``partial_activity`` reads
too), touched when the copy starts and every ``ACTIVITY_INTERVAL`` seconds while it runs, and removed just
before the rename. The listing reports the newer of the two times, so a prune never takes a running copy
for an abandoned one.

Quick commands (listing, preparing) must finish within ``4 x io_timeout`` (at least 60 s); long ones
(hashing, syncing, deleting) have no wall-clock limit: SSH keep-alives end them when the connection dies.

Remote commands are fixed ``sh -c`` scripts whose values arrive as positional parameters, each
shell-quoted once (an SSH command line is always parsed by the remote user's shell); remote paths
are restricted to plain characters besides.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import threading

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    ToolError, display, find_tool, run, run_pipeline, Step)
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import (
    RemoteEntry, RemoteError, classify, finish_pull, manifest_sha256, parse_manifest, require)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    MANIFEST, PARTIAL_SUFFIX, PARTS_DIR)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import SUMS_NAME

_PATH_RE = re.compile(r'^/[A-Za-z0-9_./@+-]*$')
_HOST_RE = re.compile(r'^[A-Za-z0-9_.:%-]+$')
_USER_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*$')
RSYNC_FLAGS = ('-a', '-H', '--numeric-ids', '--no-devices', '--no-specials')
DISK_FULL = re.compile(r'No space left on device|Disk quota exceeded')
SSH_FAILED = 255
RSYNC_NETWORK_CODES = (10, 12, 30, 35, 255)
# What ssh says when an established session dies (keep-alives unanswered, connection dropped).
CONNECTION_LOST = re.compile(r'^Timeout, server .* not responding|^Connection to .* closed by remote host|'
                             r'^client_loop: |^Read from remote host', re.M)
ACTIVITY_INTERVAL = 300

# One record per entry: RS name US last-activity US has-manifest US [manifest bytes]. JSON escapes control
# characters, so RS/US never occur inside a manifest. Last activity: the newer mtime of the directory and
# of its .parts (PARTS_DIR), the stamp a copy in progress keeps fresh.
_LIST_SCRIPT = r'''cd "$1" 2>/dev/null || exit 0
for d in *; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  t=$(stat -c %Y -- "$d")
  a=$(stat -c %Y -- "$d/.parts" 2>/dev/null) && [ "$a" -gt "$t" ] && t=$a
  printf '\036%s\037%s\037' "$d" "$t"
  if [ -f "$d/manifest.json" ]; then printf '1\037'; cat -- "$d/manifest.json" || exit 1; else printf '0\037'; fi
done'''
# $2 is <id>.partial; says "resume" when it was there already. Its .parts is the activity stamp.
_PREPARE_SCRIPT = r'''mkdir -p -m 0700 -- "$1" && cd "$1" || exit 1
[ -d "$2" ] && echo resume
mkdir -p -m 0700 -- "$2/.parts" && touch -- "$2/.parts"'''
_TOUCH_SCRIPT = 'cd "$1" && exec touch -c -- "$2/.parts"'
# Removing the stamp makes the directory's own mtime now, so the copy never looks old before the rename.
_FINISH_SCRIPT = r'''cd "$1" || exit 1
[ -f "$2.partial/manifest.json" ] || { echo "$2.partial has no manifest.json" >&2; exit 3; }
sync -f "$2.partial" 2>/dev/null || sync
[ -e "$2" ] && { echo "$2 already exists" >&2; exit 3; }
rm -rf -- "$2.partial/.parts" || exit 1
mv -T -- "$2.partial" "$2" || exit 1
sync -f . 2>/dev/null || sync'''
# A complete snapshot is renamed to .partial first: a deletion cut short never leaves a complete-looking
# snapshot with files missing. Only directories are opened up (files may be hard links kept elsewhere).
_DELETE_SCRIPT = r'''cd "$1" || exit 0
doomed=$2
if [ "$3" = complete ]; then
  [ -e "$2.partial" ] && { echo "$2.partial exists" >&2; exit 3; }
  mv -T -- "$2" "$2.partial" || exit 1
  doomed=$2.partial
fi
[ -e "$doomed" ] || exit 0
find "$doomed" -type d ! -perm -u=rwx -exec chmod u+rwx {} + && rm -rf -- "$doomed"'''
_DF_SCRIPT = 'exec df -Pk -- "$1"'
LOW_SPACE = 1024 * 1024
# Both report what is wrong on stdout and exit 0; a file missing or unreadable has no line of its own.
_SUMS_SCRIPT = 'cd "$1" || exit 3; shift; sha256sum -- "$@" 2>/dev/null; exit 0'
# An empty SHA256SUMS (a media part without a regular file) is sound: sha256sum -c would call it malformed.
_TREE_SCRIPT = 'cd "$1" || exit 3; [ -s SHA256SUMS ] || exit 0; sha256sum --quiet --strict -c SHA256SUMS 2>&1; exit 0'
_SHA256SUM_PREFIX = 'sha256sum: '


class RemoteCommandError(RemoteError):
    """A script on the backup host ran and failed (as opposed to the connection failing)."""


class _Heartbeat(object):
    """While the block runs, calls ``beat`` every ``interval`` seconds on a thread. Its failures are ignored:
    the copy it accompanies reports a dead connection itself."""

    def __init__(self, interval, beat):
        self.interval = interval
        self.beat = beat
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name='djangoops-activity')
        self.thread.daemon = True

    def _loop(self):
        while not self.stop.wait(self.interval):
            try:
                self.beat()
            except (RemoteError, OSError):
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        return False


class SshStore(object):
    kind = 'ssh'
    activity_interval = ACTIVITY_INTERVAL

    def __init__(self, params, secrets, record):
        require(params, 'ssh', ('host', 'path'))
        self.p = params
        self.record = record
        self.root = os.path.normpath(params['path'])
        if not _PATH_RE.match(params['path']) or '..' in params['path'].split('/') or self.root == '/':
            raise RemoteError('remote.path must be an absolute directory path of letters, digits and "_./@+-" '
                              '(not /), got %r' % (params['path'],))
        if not _HOST_RE.match(params['host']):
            raise RemoteError('invalid remote.host %r' % (params['host'],))
        if params.get('user') and not _USER_RE.match(params['user']):
            raise RemoteError('invalid remote.user %r' % (params['user'],))
        if params.get('ssh_key') and params.get('ssh_key_content'):
            raise RemoteError('give remote.ssh_key or remote.ssh_key_content, not both')
        self.key = params.get('ssh_key')
        if params.get('ssh_key_content'):
            content = params['ssh_key_content']
            self.key = secrets.write('ssh-key', content if content.endswith('\n') else content + '\n')
        self.target = ('%s@%s' % (params['user'], params['host'])) if params.get('user') else params['host']
        self.ssh = find_tool('ssh')
        self.rsync = find_tool('rsync')

    def describe(self):
        return 'ssh://%s:%s%s' % (self.target, self.p.get('port') or 22, self.root)

    # -- plumbing ------------------------------------------------------------------------------
    def io_timeout(self):
        return max(1, int(self.p.get('io_timeout') or 60))

    def quick_limit(self):
        """Seconds a quick command (listing, preparing, a stamp) may take in all."""
        return max(60, 4 * self.io_timeout())

    def ssh_argv(self):
        timeout = self.io_timeout()
        argv = [self.ssh, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=%d' % min(timeout, 30),
                '-o', 'ServerAliveInterval=%d' % max(1, timeout // 3), '-o', 'ServerAliveCountMax=3',
                '-o', 'StrictHostKeyChecking=%s' % self.p.get('host_key_checking', 'yes'),
                '-p', str(self.p.get('port') or 22)]
        if self.p.get('known_hosts'):
            argv += ['-o', 'UserKnownHostsFile=%s' % self.p['known_hosts']]
        if self.key:
            argv += ['-i', self.key, '-o', 'IdentitiesOnly=yes']
        for opt in self.p.get('ssh_options') or []:
            argv += ['-o', opt]
        return argv

    def _where(self, e):
        text = (e.stderr or str(e)).strip()
        return text.splitlines()[-1] if text else str(e)

    def sh(self, script, *args, step='running a command', quick=True):
        """Run a fixed script on the backup host; returns its stdout. ``step`` names it in errors (a gerund:
        "listing the store"). A ``quick`` one is killed after quick_limit() seconds; a long one (hashing,
        syncing, deleting a large tree) has no wall-clock limit: SSH keep-alives end it if the connection dies."""
        command = ' '.join(['sh', '-c', shlex.quote(script), 'sh'] + [shlex.quote(str(a)) for a in args])
        argv = self.ssh_argv() + [self.target, '--', command]
        self.record(display(argv))
        limit = self.quick_limit() if quick else None
        try:
            out, dummy = run(argv, timeout=limit)
        except ToolError as e:
            self._sh_failed(e, step, limit)
            raise  # not reached: _sh_failed raises
        return out

    def _sh_failed(self, e, step, limit):
        """Raise the error for a failed remote script: a timeout, a lost connection, a failed login, or the
        script's own failure."""
        if e.rc is None and limit is not None and ' timed out after ' in str(e):  # run() killed it
            raise RemoteError('%s on the backup host %s timed out after %d s (the limit for a quick command: '
                              '4 x remote.io_timeout, at least 60 s); the backup host or its file system does not '
                              'answer in time' % (step, self.describe(), limit))
        if e.rc == SSH_FAILED and CONNECTION_LOST.search(e.stderr or ''):
            raise RemoteError('lost the connection to the backup host %s while %s (SSH keep-alives went unanswered '
                              'for about remote.io_timeout, %d s): %s'
                              % (self.describe(), step, self.io_timeout(), self._where(e)))
        if e.rc == SSH_FAILED or e.rc is None:
            raise RemoteError('cannot reach or log in to the backup host %s: %s' % (self.describe(), self._where(e)))
        raise RemoteCommandError('command on the backup host %s failed while %s: %s'
                                 % (self.describe(), step, self._where(e)))

    def rsync_argv(self, src, dest, extra=()):
        argv = [self.rsync] + list(RSYNC_FLAGS) + ['--timeout=%d' % self.io_timeout()]
        if self.p.get('bwlimit'):
            argv.append('--bwlimit=%d' % self.p['bwlimit'])
        argv += list(extra) + ['-e', display(self.ssh_argv()), src, dest]
        return argv

    def _rsync(self, argv):
        self.record(display(argv))
        run_pipeline([Step(argv, name='rsync')])

    def remote_path(self, *names):
        return '%s:%s' % (self.target, os.path.join(self.root, *names))

    # -- reading -------------------------------------------------------------------------------
    def entries(self):
        out = self.sh(_LIST_SCRIPT, self.root, step='listing the store').encode('utf-8', 'surrogateescape')
        entries = []
        for rec in out.split(b'\x1e')[1:]:
            fields = rec.split(b'\x1f', 3)
            if len(fields) < 3:
                continue
            name = fields[0].decode('utf-8', 'replace')
            if name.startswith('.'):
                continue
            mtime = int(fields[1]) if fields[1].isdigit() else None
            has_manifest = fields[2] == b'1'
            kind = classify(name, has_manifest)
            entry = RemoteEntry(name, kind, mtime=mtime)
            if kind == 'complete':
                entry.manifest, entry.manifest_sha256, entry.problem = parse_manifest(name, fields[3] if len(fields) > 3
                                                                                      else b'')
            entries.append(entry)
        return entries

    def verify(self, entry):
        """Re-hash on the backup host every file the manifest lists, and every media file against the part's
        SHA256SUMS. Problems, empty when sound; a lost connection raises (it says nothing about the snapshot)."""
        return self._check(entry.name, entry.manifest)

    def _check(self, name, manifest, extra=None, trees=True):
        """Problems of the copy ``name`` against ``manifest``; ``extra``: more {path: sha256} to check; ``trees``:
        also every media file against its part's SHA256SUMS."""
        where = os.path.join(self.root, name)
        parts = manifest.get('parts') or {}
        expected = dict(extra or {})
        for part in parts.values():
            for f in part.get('files') or []:
                expected[f['path']] = f['sha256']
        problems = self._file_problems(where, expected) if expected else []
        for part_name, part in sorted(parts.items()):
            if trees and part.get('trees') and part.get('checksums'):
                problems += self._tree_problems(where, part_name)
        return problems

    def _file_problems(self, where, expected):
        try:
            out = self.sh(_SUMS_SCRIPT, where, *sorted(expected), step='hashing %s' % where, quick=False)
        except RemoteCommandError as e:
            return [str(e)]
        found = {}
        for line in out.splitlines():
            digest, dummy, path = line.partition('  ')
            found[path.lstrip('*')] = digest
        problems = []
        for path, digest in sorted(expected.items()):
            if path not in found:
                problems.append('%s: missing or unreadable' % path)
            elif found[path] != digest:
                problems.append('%s: sha256 %s, manifest says %s' % (path, found[path], digest))
        return problems

    def _tree_problems(self, where, part_name):
        part_dir = os.path.join(where, part_name)
        try:
            out = self.sh(_TREE_SCRIPT, part_dir, step='checking %s/%s' % (part_dir, SUMS_NAME), quick=False)
        except RemoteCommandError as e:
            return ['%s/%s: %s' % (part_name, SUMS_NAME, e)]
        lines = [line[len(_SHA256SUM_PREFIX):] if line.startswith(_SHA256SUM_PREFIX) else line
                 for line in out.splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith('WARNING: ')] or lines
        return ['%s/%s' % (part_name, line) for line in lines]

    # -- writing -------------------------------------------------------------------------------
    def push(self, snapshot, links):
        """Copy a complete local snapshot; the remote copy is complete only at the final rename, once every file
        on the backup host matched the manifest."""
        partial = snapshot.id + PARTIAL_SUFFIX
        resumed = self.sh(_PREPARE_SCRIPT, self.root, partial, step='preparing the copy').split() == ['resume']
        dest = self.remote_path(partial) + '/'
        again = ['--checksum'] if resumed else []
        extra = again + ['--delete', '--exclude=/' + MANIFEST, '--exclude=/%s/' % PARTS_DIR]
        extra += ['--link-dest=../%s' % name for name in links]
        try:
            with _Heartbeat(self.activity_interval, lambda: self._touch(partial)):
                self._rsync(self.rsync_argv(snapshot.path.rstrip('/') + '/', dest, extra))
                self._rsync(self.rsync_argv(os.path.join(snapshot.path, MANIFEST), dest + MANIFEST, again))
                self._require_sound_copy(snapshot)
        except ToolError as e:
            raise self._push_failed(snapshot, e)
        self.sh(_FINISH_SCRIPT, self.root, snapshot.id, step='publishing the copy', quick=False)

    def _touch(self, partial):
        self.sh(_TOUCH_SCRIPT, self.root, partial, step='refreshing the activity stamp')

    def _require_sound_copy(self, snapshot):
        """Re-hash, on the backup host, the files the manifest lists (the database dumps, archives, the media
        parts' SHA256SUMS and listings) before the copy may be published. Not the media trees' files: most are
        hard links to the previous snapshot's, checked when that one was pushed, and rsync verifies what it
        transfers by a whole-file checksum of its own; hashing them all again would read the whole media on
        the backup host at every push. ``snapshot_remote_info verify: true`` reads them all."""
        extra = {MANIFEST: manifest_sha256(snapshot)}
        problems = self._check(snapshot.id + PARTIAL_SUFFIX, snapshot.manifest, extra, trees=False)
        if problems:
            raise RemoteError('the copy of snapshot %s on %s does not match its manifest, so it was not published: '
                              '%s. It stays incomplete as %s%s; push again: a resumed copy compares every file by '
                              'content and sends again what differs (if the same files differ again, verify the '
                              'local snapshot with snapshot_info verify: true)'
                              % (snapshot.id, self.describe(), '; '.join(problems[:10]), snapshot.id,
                                 PARTIAL_SUFFIX))

    def _disk_full(self, need):
        """Whether the backup host's file system under the root is (nearly) full, or has less room than the
        snapshot's size. rsync does not always get to report the receiver's ENOSPC before the connection
        drops (and the receiver removes its temporary file), so a failed push asks."""
        try:
            out = self.sh(_DF_SCRIPT, self.root, step='checking free space')
        except RemoteError:
            return False  # unreachable: not a question of space
        lines = out.strip().splitlines()
        try:
            return int(lines[-1].split()[3]) * 1024 < max(LOW_SPACE, need)
        except (IndexError, ValueError):
            return False

    def _push_failed(self, snapshot, e):
        snapshot_id = snapshot.id
        text = e.stderr or str(e)
        if DISK_FULL.search(text) or self._disk_full(snapshot.manifest.get('bytes') or 0):
            try:
                self.sh(_DELETE_SCRIPT, self.root, snapshot_id + PARTIAL_SUFFIX, 'partial',
                        step='removing the incomplete copy', quick=False)
                cleaned = 'the incomplete copy %s%s was removed from it' % (snapshot_id, PARTIAL_SUFFIX)
            except RemoteError as err:
                cleaned = 'removing the incomplete copy %s%s failed too (%s)' % (snapshot_id, PARTIAL_SUFFIX, err)
            return RemoteError('the backup host %s is out of disk space: %s; %s. The local snapshot is unchanged; '
                               'free space or prune the remote store, then push again'
                               % (self.describe(), self._where(e), cleaned))
        return RemoteError('copying snapshot %s to %s was interrupted: %s. The backup host holds only %s%s, which '
                           'is not a snapshot; the local snapshot is unchanged. Push again to resume the copy'
                           % (snapshot_id, self.describe(), self._where(e), snapshot_id, PARTIAL_SUFFIX))

    def pull(self, entry, store, links):
        """Copy a remote snapshot into ``store`` as ``<id>.partial``, verify every checksum, then rename. The
        partial's .parts directory is its activity stamp (see partial_activity), kept fresh while rsync runs."""
        store.ensure()
        partial = store.partial_path(entry.name)
        resumed = os.path.isdir(partial)
        if not resumed:
            os.mkdir(partial, 0o700)
        stamp = os.path.join(partial, PARTS_DIR)
        if not os.path.isdir(stamp):
            os.mkdir(stamp, 0o700)
        os.utime(stamp)
        extra = (['--checksum'] if resumed else []) + ['--delete', '--exclude=/%s/' % PARTS_DIR]
        extra += ['--link-dest=%s' % p for p in links]
        try:
            with _Heartbeat(self.activity_interval, lambda: os.utime(stamp)):
                self._rsync(self.rsync_argv(self.remote_path(entry.name) + '/', partial + '/', extra))
        except ToolError as e:
            raise RemoteError('copying snapshot %s from %s failed: %s. Only %s (not a snapshot) was written; pull '
                              'again to resume' % (entry.name, self.describe(), self._where(e), partial))
        shutil.rmtree(stamp)  # the directory's own mtime becomes now: still fresh while it is verified
        return finish_pull(store, entry, partial)

    def delete(self, entry):
        self.sh(_DELETE_SCRIPT, self.root, entry.name, 'complete' if entry.kind == 'complete' else 'partial',
                step='deleting %s' % entry.name, quick=False)
