# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: a snapshot store on an SSH backup host, copied with rsync over SSH.

The backup host keeps a snapshot root in the local format (``<path>/<id>/manifest.json``), so the
collection's local modules also work there (delegate_to the backup host). A push rsyncs a snapshot
into ``<id>.partial`` (everything but the manifest, with ``--link-dest`` to the newest remote
snapshots so unchanged media files become hard links), then the manifest, then syncs the file
system and renames it to ``<id>``. A pull does the same the other way round, verifies every checksum
locally and only then renames.

Remote commands are fixed ``sh -c`` scripts whose values arrive as positional parameters, each
shell-quoted once (an SSH command line is always parsed by the remote user's shell); remote paths
are restricted to plain characters besides.
"""

from __future__ import annotations

import os
import re
import shlex

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    ToolError, display, find_tool, run, run_pipeline, Step)
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import (
    RemoteEntry, RemoteError, classify, finish_pull, parse_manifest, require)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import MANIFEST, PARTIAL_SUFFIX
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import SUMS_NAME

_PATH_RE = re.compile(r'^/[A-Za-z0-9_./@+-]*$')
_HOST_RE = re.compile(r'^[A-Za-z0-9_.:%-]+$')
_USER_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*$')
RSYNC_FLAGS = ('-a', '-H', '--numeric-ids', '--no-devices', '--no-specials')
DISK_FULL = re.compile(r'No space left on device|Disk quota exceeded')
SSH_FAILED = 255
RSYNC_NETWORK_CODES = (10, 12, 30, 35, 255)

# One record per entry: RS name US mtime US has-manifest US [manifest bytes]. JSON escapes control
# characters, so RS/US never occur inside a manifest.
_LIST_SCRIPT = r'''cd "$1" 2>/dev/null || exit 0
for d in *; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  printf '\036%s\037%s\037' "$d" "$(stat -c %Y -- "$d")"
  if [ -f "$d/manifest.json" ]; then printf '1\037'; cat -- "$d/manifest.json" || exit 1; else printf '0\037'; fi
done'''
_PREPARE_SCRIPT = 'mkdir -p -m 0700 -- "$1"'
_FINISH_SCRIPT = r'''cd "$1" || exit 1
[ -f "$2.partial/manifest.json" ] || { echo "$2.partial has no manifest.json" >&2; exit 3; }
sync -f "$2.partial" 2>/dev/null || sync
[ -e "$2" ] && { echo "$2 already exists" >&2; exit 3; }
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
_SUMS_SCRIPT = 'cd "$1" || exit 1; shift; exec sha256sum -- "$@"'
_TREE_SCRIPT = 'cd "$1" || exit 1; exec sha256sum --quiet --strict -c SHA256SUMS'


class SshStore(object):
    kind = 'ssh'

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
    def ssh_argv(self):
        timeout = max(1, int(self.p.get('io_timeout') or 60))
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

    def sh(self, script, *args):
        """Run a fixed script on the backup host; returns its stdout."""
        command = ' '.join(['sh', '-c', shlex.quote(script), 'sh'] + [shlex.quote(str(a)) for a in args])
        argv = self.ssh_argv() + [self.target, '--', command]
        self.record(display(argv))
        try:
            out, dummy = run(argv, timeout=max(60, 4 * int(self.p.get('io_timeout') or 60)))
        except ToolError as e:
            if e.rc == SSH_FAILED or e.rc is None:
                raise RemoteError('cannot reach or log in to the backup host %s: %s' % (self.describe(), self._where(e)))
            raise RemoteError('command on the backup host %s failed: %s' % (self.describe(), self._where(e)))
        return out

    def rsync_argv(self, src, dest, extra=()):
        argv = [self.rsync] + list(RSYNC_FLAGS) + ['--timeout=%d' % max(1, int(self.p.get('io_timeout') or 60))]
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
        out = self.sh(_LIST_SCRIPT, self.root).encode('utf-8', 'surrogateescape')
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
        SHA256SUMS. Problems, empty when sound."""
        problems = []
        expected = {}
        for part in (entry.manifest.get('parts') or {}).values():
            for f in part.get('files') or []:
                expected[f['path']] = f['sha256']
        if expected:
            try:
                out = self.sh(_SUMS_SCRIPT, os.path.join(self.root, entry.name), *sorted(expected))
            except RemoteError as e:
                return [str(e)]
            found = {}
            for line in out.splitlines():
                digest, dummy, path = line.partition('  ')
                found[path.lstrip('*')] = digest
            for path, digest in sorted(expected.items()):
                if path not in found:
                    problems.append('%s: missing' % path)
                elif found[path] != digest:
                    problems.append('%s: sha256 %s, manifest says %s' % (path, found[path], digest))
        for name, part in sorted((entry.manifest.get('parts') or {}).items()):
            if part.get('trees') and part.get('checksums'):
                try:
                    self.sh(_TREE_SCRIPT, os.path.join(self.root, entry.name, name))
                except RemoteError as e:
                    problems.append('%s/%s: %s' % (name, SUMS_NAME, e))
        return problems

    # -- writing -------------------------------------------------------------------------------
    def push(self, snapshot, links):
        """Copy a complete local snapshot; the remote copy is complete only at the final rename."""
        self.sh(_PREPARE_SCRIPT, self.root)
        dest = self.remote_path(snapshot.id + PARTIAL_SUFFIX) + '/'
        extra = ['--delete', '--exclude=/' + MANIFEST] + ['--link-dest=../%s' % name for name in links]
        try:
            self._rsync(self.rsync_argv(snapshot.path.rstrip('/') + '/', dest, extra))
            self._rsync(self.rsync_argv(os.path.join(snapshot.path, MANIFEST), dest + MANIFEST))
        except ToolError as e:
            raise self._push_failed(snapshot, e)
        self.sh(_FINISH_SCRIPT, self.root, snapshot.id)

    def _disk_full(self, need):
        """Whether the backup host's file system under the root is (nearly) full, or has less room than the
        snapshot's size. rsync does not always get to report the receiver's ENOSPC before the connection
        drops (and the receiver removes its temporary file), so a failed push asks."""
        try:
            out = self.sh(_DF_SCRIPT, self.root)
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
                self.sh(_DELETE_SCRIPT, self.root, snapshot_id + PARTIAL_SUFFIX, 'partial')
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
        """Copy a remote snapshot into ``store`` as ``<id>.partial``, verify every checksum, then rename."""
        store.ensure()
        partial = store.partial_path(entry.name)
        if not os.path.isdir(partial):
            os.mkdir(partial, 0o700)
        extra = ['--delete'] + ['--link-dest=%s' % p for p in links]
        try:
            self._rsync(self.rsync_argv(self.remote_path(entry.name) + '/', partial + '/', extra))
        except ToolError as e:
            raise RemoteError('copying snapshot %s from %s failed: %s. Only %s (not a snapshot) was written; pull '
                              'again to resume' % (entry.name, self.describe(), self._where(e), partial))
        return finish_pull(store, entry, partial)

    def delete(self, entry):
        self.sh(_DELETE_SCRIPT, self.root, entry.name, 'complete' if entry.kind == 'complete' else 'partial')
