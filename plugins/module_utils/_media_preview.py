# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: what restoring an archived (encrypted) media tree would change, for check
mode, without unpacking it.

A real restore extracts the archive into a staging directory and lets rsync make the target equal to
it. Check mode must not: that would put the decrypted media on disk beside the target and need its whole
size free there. Instead the archive is decrypted and decompressed into a pipe and read as a tar stream
(nothing is written), and every member is compared with the target the way the restore's rsync would
(``-a -H --delete``: type, size and mtime - or, with ``compare: checksum``, the content -, mode, owner and
group when run as root, symlink targets, hard links); then whatever the target holds that the archive does
not is counted as deleted. The result has the shape of an rsync dry run (``ItemizedOutput`` counts and
paths), so the module reports both alike.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import threading

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import input_chain
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Step, find_tool, run_pipeline
from ansible_collections.djangoops.maintenance.plugins.module_utils._rsync import ItemizedOutput, RsyncResult

CHUNK = 1024 * 1024


class _TarStream(object):
    """A sink for run_pipeline: the bytes go through a pipe to a thread that reads them as a tar stream
    (tarfile's ``r|`` mode) and calls ``visit(member, fileobj)`` per member. The thread reads to the end
    even after a failure, so the pipeline never blocks on it."""

    def __init__(self, visit):
        rfd, wfd = os.pipe()
        self._reader = os.fdopen(rfd, 'rb')
        self._writer = os.fdopen(wfd, 'wb')
        self.error = None
        self._thread = threading.Thread(target=self._read, args=(visit,), daemon=True)
        self._thread.start()

    def _read(self, visit):
        try:
            with tarfile.open(fileobj=self._reader, mode='r|') as archive:
                for member in archive:
                    visit(member, archive.extractfile(member) if member.isfile() else None)
        except BaseException as e:  # pylint: disable=broad-except
            self.error = e
        finally:
            try:
                while self._reader.read(CHUNK):
                    pass  # the end-of-archive padding, or what is left after an error
            finally:
                self._reader.close()

    def write(self, data):
        self._writer.write(data)

    def close(self):
        """Ends the stream; raises what reading it raised."""
        if not self._writer.closed:
            self._writer.close()
        self._thread.join()
        if self.error is not None:
            raise self.error


def _sha256_of_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            h.update(block)
    return h.hexdigest()


def _sha256_of_member(fileobj):
    h = hashlib.sha256()
    for block in iter(lambda: fileobj.read(CHUNK), b''):
        h.update(block)
    return h.hexdigest()


_KIND = (
    (lambda m: m.issym(), stat.S_ISLNK),
    (lambda m: m.isdir(), stat.S_ISDIR),
    (lambda m: m.isfile() or m.islnk(), stat.S_ISREG),
)


class TreePreview(object):
    """Compares the members of one archived tree with ``dest`` as they stream past."""

    def __init__(self, dest, checksum, keep_paths):
        self.dest = dest
        self.checksum = checksum
        self.as_root = os.geteuid() == 0
        self.output = ItemizedOutput(keep_paths)
        self.seen = set()
        self.replaced = set()  # directories of the archive that the target has as something else

    def note(self, what, rel, details=(), is_dir=False):
        """Count one change; the path as rsync names it (a directory with a trailing slash)."""
        if what == 'unchanged':
            return
        self.output.counts[what] += 1
        if len(self.output.paths) < self.output.keep_paths:
            name = rel + '/' if rel and is_dir else (rel or '.')
            self.output.paths.append(dict(path=name, change=what, details=list(details)))

    def visit(self, member, fileobj):
        rel = os.path.normpath(member.name).lstrip('/')
        rel = '' if rel == '.' else rel
        matcher = [kind for test, kind in _KIND if test(member)]
        if not matcher:
            return  # devices and FIFOs: the restore's rsync skips them (--no-devices --no-specials)
        self.seen.add(rel)
        parent = os.path.dirname(rel)
        if parent in self.replaced:
            self.replaced.add(rel)
            self.note('created', rel, is_dir=member.isdir())
            return
        what, details = self.compare(rel, member, fileobj, matcher[0])
        if member.isdir() and what == 'created':
            self.replaced.add(rel)
        self.note(what, rel, details, is_dir=member.isdir())

    def compare(self, rel, member, fileobj, is_kind):
        path = os.path.join(self.dest, rel) if rel else self.dest
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return 'created', ()
        if not is_kind(st.st_mode):
            if member.isdir():
                self.replaced.add(rel)
            return 'created', ('type',)
        if member.islnk():
            other = os.path.join(self.dest, os.path.normpath(member.linkname).lstrip('/'))
            try:
                same = os.path.samestat(st, os.lstat(other))
            except OSError:
                same = False
            return ('unchanged', ()) if same else ('created', ('hard link',))
        details = self.content_details(path, st, member, fileobj)
        if member.issym():
            if os.readlink(path) != member.linkname:
                details.append('link target')
        elif stat.S_IMODE(st.st_mode) != member.mode & 0o7777:
            details.append('mode')
        if self.as_root:
            pairs = (('owner', st.st_uid, member.uid), ('group', st.st_gid, member.gid))
            details += [name for name, mine, theirs in pairs if mine != theirs]
        return ('updated', details) if details else ('unchanged', ())

    def content_details(self, path, st, member, fileobj):
        details = []
        if member.isfile():
            if st.st_size != member.size:
                details.append('size')
            elif self.checksum and _sha256_of_file(path) != _sha256_of_member(fileobj):
                details.append('checksum')
        if int(st.st_mtime) != int(member.mtime):
            details.append('mtime')
        return details

    def count_deleted(self):
        """Whatever the target holds that the archive does not (rsync --delete removes it)."""
        if not os.path.isdir(self.dest) or os.path.islink(self.dest) or '' in self.replaced:
            return
        for dirpath, dirnames, filenames in os.walk(self.dest):  # symlinks are not followed
            base = os.path.relpath(dirpath, self.dest)
            base = '' if base == '.' else base
            for names, is_dir in ((dirnames, True), (filenames, False)):
                for name in names:
                    rel = os.path.join(base, name)
                    if rel not in self.seen:
                        self.note('deleted', rel, is_dir=is_dir)


def preview(snapshot, tree, meta, identity, dest, checksum=False, keep_paths=0):
    """(RsyncResult-like result of comparing archived ``tree`` with ``dest``, the pipeline's description)."""
    items = input_chain(meta, identity) or [Step([find_tool('cat')], name='cat')]
    source = snapshot.file_path({'path': tree['archive']})
    comparison = TreePreview(dest, checksum, keep_paths)
    sink = _TarStream(comparison.visit)
    try:
        res = run_pipeline(items, stdin_path=source, sink=sink)
    finally:
        sink.close()
    comparison.count_deleted()
    described = ' | '.join(s.display() for s in items) + ' < %s, read as tar and compared with %s' % (
        tree['archive'], dest)
    return RsyncResult([], comparison.output, res.returncodes[-1], b''), described
