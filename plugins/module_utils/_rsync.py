# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: local rsync runs for media snapshots and restores.

Argv building is pure (unit-tested); a run streams rsync's itemized output through a parser that
counts it and keeps at most ``keep_paths`` paths, so a tree of a million changed files costs no
memory. The flags that make a copy exact live here, once:

``-a``  recursion, symlinks as symlinks, permissions, mtimes, owner and group (owner only as root),
``-H``  hard links inside the tree stay hard links,
``--numeric-ids``  owners by number: a snapshot restored on the same host gets the same uid/gid,
``--no-devices --no-specials``  device files, FIFOs and sockets are not media (and a FIFO would block
      the fsync of the snapshot); they are skipped, and a restore removes them from the target,
``-8``  names in the output unescaped (unicode stays readable).

Never ``--inplace``, ``--keep-dirlinks`` or ``--copy-links``: the receiver writes a temporary file
and renames it, and replaces (never follows) a symlink it finds where the snapshot has a file or a
directory, so a restore cannot be steered out of the target.
"""

from __future__ import annotations

import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Step, find_tool, run, run_pipeline

BASE_FLAGS = ('-a', '-H', '--numeric-ids', '--no-devices', '--no-specials', '-8', '--stats',
              '--out-format=%i %n')
# rsync exit 24: some source files vanished during the copy (an application deleting uploads).
VANISHED = 24

# %i is 11 characters (``*deleting`` padded with two spaces), then a space, then the name.
_ITEM_RE = re.compile(rb'^(\*deleting  |[<>ch.*][fdLDSU].{9}) (.*)$', re.DOTALL)
_STAT_RE = re.compile(rb'^([A-Z][A-Za-z ]+): ([0-9][0-9,]*)(?: bytes)?\b')
_DIRS_RE = re.compile(rb'\bdir: ([0-9][0-9,]*)')
_ESCAPE_RE = re.compile(rb'\\#([0-7]{3})')
_ATTR_NAMES = {'c': 'checksum', 's': 'size', 't': 'mtime', 'p': 'mode', 'o': 'owner', 'g': 'group',
               'u': 'atime', 'a': 'acl', 'x': 'xattr'}


def _dir_arg(path):
    # The trailing slash means "the contents of": the tree itself, not a subdirectory named after it.
    return path.rstrip('/') + '/'


def snapshot_argv(rsync, src, dest, link_dest=None, dry_run=False, prefilled=False):
    """Copy ``src`` into the new directory ``dest``, hard-linking unchanged files from ``link_dest``.
    ``prefilled``: ``dest`` already holds links or copies made by ``_media_fill``: rsync leaves them
    alone and removes any whose source vanished since."""
    argv = [rsync] + list(BASE_FLAGS)
    if dry_run:
        argv.append('--dry-run')
    if prefilled:
        argv += ['--ignore-existing', '--delete']
    if link_dest:
        argv.append('--link-dest=' + link_dest)
    return argv + [_dir_arg(src), _dir_arg(dest)]


def restore_argv(rsync, src, dest, checksum=False, dry_run=False):
    """Make ``dest`` equal to ``src``: ``--delete`` removes what the snapshot lacks."""
    argv = [rsync] + list(BASE_FLAGS) + ['--delete']
    if checksum:
        argv.append('--checksum')
    if dry_run:
        argv.append('--dry-run')
    return argv + [_dir_arg(src), _dir_arg(dest)]


def _unescape(name):
    return _ESCAPE_RE.sub(lambda m: bytes([int(m.group(1), 8)]), name)


def classify(item):
    """'deleted', 'created', 'updated' or 'unchanged', plus what changed, for one itemize code."""
    if item.startswith(b'*deleting'):
        return 'deleted', []
    code = item.decode('ascii', 'replace')
    if not code[2:].strip():
        return 'unchanged', []
    if '+' in code[2:]:
        return 'created', []
    if code[0] == 'h':
        return 'created', ['hard link']
    return 'updated', [_ATTR_NAMES[c] for c in code[2:] if c in _ATTR_NAMES]


class ItemizedOutput(object):
    """A sink for rsync's stdout: counts itemized changes and parses ``--stats``."""

    def __init__(self, keep_paths=0, watch=None):
        self.keep_paths = keep_paths
        self.watch = watch
        self.counts = {'created': 0, 'deleted': 0, 'updated': 0}
        self.paths = []
        self.stats = {}
        self._rest = b''

    def write(self, chunk):
        if self.watch is not None:
            self.watch()  # may raise: the pipeline then kills rsync
        data = self._rest + bytes(chunk)
        lines = data.split(b'\n')
        self._rest = lines.pop()
        for line in lines:
            self.line(line)

    def close(self):
        if self._rest:
            self.line(self._rest)
            self._rest = b''

    def line(self, line):
        m = _ITEM_RE.match(line)
        if m:
            item, name = m.group(1), m.group(2)
            if name in (b'./', b'.'):
                name = b'.'
            what, details = classify(item)
            if what == 'unchanged':
                return
            self.counts[what] += 1
            if len(self.paths) < self.keep_paths:
                self.paths.append(dict(path=_unescape(name).decode('utf-8', 'replace'), change=what,
                                       details=details))
            return
        m = _STAT_RE.match(line)
        if m:
            key = m.group(1).decode('ascii').lower().replace(' ', '_')
            self.stats[key] = int(m.group(2).replace(b',', b''))
            if key == 'number_of_files':
                dirs = _DIRS_RE.search(line)
                self.stats['number_of_dirs'] = int(dirs.group(1).replace(b',', b'')) if dirs else 0

    @property
    def total(self):
        return sum(self.counts.values())

    def add_copies(self, created, paths, files, size):
        """Count copies made before rsync ran (``_media_fill.copy_new``) as rsync itemizes a first copy:
        ``created`` new paths (``paths``: the first of them), ``files`` regular files of ``size`` bytes."""
        self.counts['created'] += created
        self.paths = ([dict(path=p, change='created', details=[]) for p in paths] + self.paths)[:self.keep_paths]
        for key, value in (('total_transferred_file_size', size), ('number_of_regular_files_transferred', files)):
            self.stats[key] = self.stats.get(key, 0) + value


class RsyncResult(object):
    def __init__(self, argv, output, returncode, stderr):
        self.argv = argv
        self.output = output
        self.returncode = returncode
        self.stderr = stderr

    @property
    def changes(self):
        return self.output.total

    @property
    def transferred_bytes(self):
        return self.output.stats.get('total_transferred_file_size', 0)

    @property
    def vanished(self):
        return [line for line in self.stderr.splitlines() if 'vanished' in line]


def find_rsync():
    return find_tool('rsync')


def version(rsync):
    out, dummy = run([rsync, '--version'])
    m = re.search(r'rsync\s+version\s+v?(\d+\.\d+\.\d+)', out)
    return m.group(1) if m else out.splitlines()[0] if out else 'unknown'


def run_rsync(argv, keep_paths=0, allow_vanished=False, watch=None):
    """Run one rsync; raise ToolError (with rsync's own message) unless it succeeded. ``watch`` is
    called as rsync reports each file; an exception from it stops rsync."""
    output = ItemizedOutput(keep_paths, watch)
    ok = (0, VANISHED) if allow_vanished else (0,)
    res = run_pipeline([Step(argv, ok_returncodes=ok)], sink=output)
    output.close()
    return RsyncResult(argv, output, res.returncodes[0], res.stderr[0])
