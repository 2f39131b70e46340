# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: directory trees stored verbatim inside a snapshot part (media).

A tree's files are not listed one by one in the manifest (10,000 entries would bloat it). Instead
each tree records a *census*: counts, total bytes, and ``listing_sha256``, a digest of every
entry's name, type, mode, owner, size, mtime and symlink target. With checksums on, the part also
holds a ``SHA256SUMS`` file in the format of GNU ``sha256sum`` (paths relative to the part
directory, so ``cd <snapshot>/<part> && sha256sum -c SHA256SUMS`` works), itself listed in the
manifest with its own sha256.

Everything walks trees in one fixed order (names sorted bytewise, depth first), so a census, a
SHA256SUMS file and a verification can be merged line by line without holding a tree in memory.
Nothing here follows a symlink. Standard library only: ``_snapshot`` imports this file.
"""

from __future__ import annotations

import hashlib
import os
import stat

CHUNK = 1024 * 1024
SUMS_NAME = 'SHA256SUMS'
TREES_DIR = 'trees'
MAX_PROBLEMS = 20

CENSUS_KEYS = ('files', 'bytes', 'dirs', 'symlinks', 'other')


def _sorted_entries(path, rel):
    for name in sorted(os.listdir(path)):
        full = path + b'/' + name
        yield (rel + b'/' + name if rel else name), full, os.lstat(full)


def walk(root):
    """Yield ``(relpath, abspath, lstat)`` (bytes paths) for ``root`` itself (relpath ``b'.'``) and
    everything below it, depth first with names sorted bytewise: the order of path components."""
    root_b = os.fsencode(root)
    yield b'.', root_b, os.lstat(root_b)
    stack = [_sorted_entries(root_b, b'')]
    while stack:
        try:
            rel, full, st = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        yield rel, full, st
        if stat.S_ISDIR(st.st_mode):
            stack.append(_sorted_entries(full, rel))


def sort_key(relpath):
    """The walk order as a comparable key."""
    return relpath.split(b'/')


def sha256_file(path):
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, 'rb', buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


class Census(object):
    """Counts and the listing digest of one tree, fed entry by entry in walk order."""

    def __init__(self):
        self.counts = dict((k, 0) for k in CENSUS_KEYS)
        self._listing = hashlib.sha256()

    def add(self, rel, full, st):
        mode = st.st_mode
        size = b''
        target = b''
        if stat.S_ISREG(mode):
            kind = b'f'
            self.counts['files'] += 1
            self.counts['bytes'] += st.st_size
            size = str(st.st_size).encode()
        elif stat.S_ISDIR(mode):
            kind = b'd'
            if rel != b'.':
                self.counts['dirs'] += 1
        elif stat.S_ISLNK(mode):
            kind = b'l'
            self.counts['symlinks'] += 1
            target = os.readlink(full)
        else:
            kind = b'o'
            self.counts['other'] += 1
        # NUL cannot occur in a name or link target, and every record has the same fields: unambiguous.
        # Mtimes count in whole seconds, as rsync compares them: it does not correct a nanosecond-only
        # difference, for example of a directory modified in the same second as it was copied.
        fields = (rel, kind, b'%o' % stat.S_IMODE(mode), b'%d' % st.st_uid, b'%d' % st.st_gid, size,
                  b'%d' % (st.st_mtime_ns // 1000000000), target)
        self._listing.update(b'\0'.join(fields) + b'\0')

    def result(self):
        out = dict(self.counts)
        out['listing_sha256'] = self._listing.hexdigest()
        return out


def census(root):
    c = Census()
    for rel, full, st in walk(root):
        c.add(rel, full, st)
    return c.result()


# --- SHA256SUMS, compatible with GNU sha256sum (including its escaping of "\\" and newlines) ---

def sums_line(digest, relpath):
    if b'\\' in relpath or b'\n' in relpath or b'\r' in relpath:
        escaped = relpath.replace(b'\\', b'\\\\').replace(b'\n', b'\\n').replace(b'\r', b'\\r')
        return b'\\' + digest.encode('ascii') + b'  ' + escaped + b'\n'
    return digest.encode('ascii') + b'  ' + relpath + b'\n'


def _unescape(name):
    out = bytearray()
    i = 0
    while i < len(name):
        c = name[i:i + 1]
        if c == b'\\' and i + 1 < len(name):
            nxt = name[i + 1:i + 2]
            out += {b'\\': b'\\', b'n': b'\n', b'r': b'\r'}.get(nxt, b'\\' + nxt)
            i += 2
            continue
        out += c
        i += 1
    return bytes(out)


def parse_sums_line(line):
    """(relpath, digest) of one SHA256SUMS line; ValueError when it is not one."""
    line = line.rstrip(b'\n')
    escaped = line.startswith(b'\\')
    if escaped:
        line = line[1:]
    digest, sep, name = line.partition(b'  ')
    if not sep or len(digest) != 64 or not name:
        raise ValueError('not a sha256sum line: %r' % line[:200])
    int(digest, 16)
    return (_unescape(name) if escaped else name), digest.decode('ascii')


def read_sums(path, prefix=b''):
    """Yield (relpath, digest) from a SHA256SUMS file, streaming; with ``prefix``, only entries under
    it, with the prefix removed."""
    with open(path, 'rb') as f:
        for line in f:
            rel, digest = parse_sums_line(line)
            if prefix:
                if not rel.startswith(prefix):
                    continue
                rel = rel[len(prefix):]
            yield rel, digest


class _Lookup(object):
    """Finds entries of a sorted (relpath, value) stream for keys asked in ascending order."""

    def __init__(self, pairs):
        self._it = iter(pairs)
        self._cur = None
        self._advance()

    def _advance(self):
        try:
            rel, value = next(self._it)
            self._cur = (sort_key(rel), rel, value)
        except StopIteration:
            self._cur = None

    def skipped_until(self, key):
        """Entries before ``key`` (they have no partner), then the entry at ``key`` or None."""
        skipped = []
        while self._cur is not None and self._cur[0] < key:
            skipped.append(self._cur[1])
            self._advance()
        if self._cur is not None and self._cur[0] == key:
            found = self._cur[2]
            self._advance()
            return skipped, found
        return skipped, None

    def rest(self):
        out = []
        while self._cur is not None:
            out.append(self._cur[1])
            self._advance()
        return out


def record_tree(tree_dir, sums_out=None, sums_prefix=b'', previous=None):
    """Census of a freshly copied tree and, with ``sums_out`` (a binary file), its SHA256SUMS lines.

    ``previous`` = (previous tree dir, its SHA256SUMS path, prefix of that tree in it) lets a file that
    is hard-linked to the previous snapshot (same inode) keep the digest recorded there instead of
    being read again: the bytes are the very same, and if they were damaged since, the new snapshot
    records what they were meant to be, so verification catches it. Returns (census, files hashed,
    files whose digest was reused).
    """
    c = Census()
    hashed = reused = 0
    prev = prev_dir_b = None
    if sums_out is not None and previous is not None:
        prev_dir, prev_sums, prev_prefix = previous
        if os.path.isfile(prev_sums):
            prev = _Lookup(read_sums(prev_sums, prev_prefix))
            prev_dir_b = os.fsencode(prev_dir)
    for rel, full, st in walk(tree_dir):
        c.add(rel, full, st)
        if sums_out is None or not stat.S_ISREG(st.st_mode):
            continue
        digest = None
        if prev is not None:
            dummy, recorded = prev.skipped_until(sort_key(rel))
            if recorded is not None:
                try:
                    pst = os.lstat(prev_dir_b + b'/' + rel)
                    if (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino):
                        digest = recorded
                except OSError:
                    pass
        if digest is None:
            digest = sha256_file(full)
            hashed += 1
        else:
            reused += 1
        sums_out.write(sums_line(digest, sums_prefix + rel))
    return c.result(), hashed, reused


def _describe(rel):
    return rel.decode('utf-8', 'replace')


def verify_trees(part_dir, part, label='', contents=True):
    """Problems found by comparing a part's trees with what its metadata recorded: the census of
    every tree and, when the part has SHA256SUMS, every file's sha256 (extra and missing files
    included; ``contents`` False: the names only, no file is read). An empty list means sound. ``label``
    prefixes each problem (the part's name)."""
    problems = []
    trees = [t for t in part.get('trees') or [] if not t.get('missing')]
    trees_root = os.path.join(part_dir, TREES_DIR)
    present = sorted(os.listdir(trees_root)) if os.path.isdir(trees_root) else []
    expected = sorted(t['name'] for t in trees)
    for extra in sorted(set(present) - set(expected)):
        problems.append('%s/%s: a tree the snapshot did not record' % (TREES_DIR, extra))
    sums = None
    if part.get('checksums'):
        sums_path = os.path.join(part_dir, SUMS_NAME)
        if not os.path.isfile(sums_path):
            return problems + ['%s: missing' % SUMS_NAME]
        sums = _Lookup(read_sums(sums_path))
    for tree in sorted(trees, key=lambda t: os.fsencode(t['name'])):
        tree_dir = os.path.join(trees_root, tree['name'])
        if not os.path.isdir(tree_dir) or os.path.islink(tree_dir):
            problems.append('%s/%s: missing' % (TREES_DIR, tree['name']))
            continue
        prefix = os.fsencode('%s/%s/' % (TREES_DIR, tree['name']))
        c = Census()
        for rel, full, st in walk(tree_dir):
            c.add(rel, full, st)
            if sums is None or not stat.S_ISREG(st.st_mode):
                continue
            unlisted, recorded = sums.skipped_until(sort_key(prefix + rel))
            problems.extend('%s: listed in %s but missing' % (_describe(r), SUMS_NAME) for r in unlisted)
            if recorded is None:
                problems.append('%s: not listed in %s' % (_describe(prefix + rel), SUMS_NAME))
            elif contents and sha256_file(full) != recorded:
                problems.append('%s: sha256 differs from %s' % (_describe(prefix + rel), SUMS_NAME))
        found = c.result()
        recorded_census = tree.get('census') or {}
        for key in CENSUS_KEYS:
            if key in recorded_census and found[key] != recorded_census[key]:
                problems.append('%s/%s: %s %d, recorded %d' % (TREES_DIR, tree['name'], key, found[key],
                                                               recorded_census[key]))
        if recorded_census.get('listing_sha256') and found['listing_sha256'] != recorded_census['listing_sha256']:
            problems.append('%s/%s: the listing (names, types, sizes, modes, owners, mtimes, link targets) '
                            'differs from what was recorded' % (TREES_DIR, tree['name']))
    if sums is not None:
        problems.extend('%s: listed in %s but missing' % (_describe(r), SUMS_NAME) for r in sums.rest())
    problems = [label + p for p in problems]
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + ['... and %d more problems' % (len(problems) - MAX_PROBLEMS)]
    return problems


def disk_usage(tree_dirs):
    """Apparent bytes, allocated bytes (each inode once) and exclusive bytes (inodes all of whose
    links are inside ``tree_dirs``: what deleting them would free) of a set of trees."""
    apparent = allocated = exclusive = 0
    seen = {}
    for tree_dir in tree_dirs:
        if not os.path.isdir(tree_dir):
            continue
        for dummy, dummy2, st in walk(tree_dir):
            if stat.S_ISREG(st.st_mode):
                apparent += st.st_size
            used = st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode) or st.st_nlink == 1:
                allocated += used
                exclusive += used
                continue
            key = (st.st_dev, st.st_ino)
            count = seen.get(key, 0) + 1
            seen[key] = count
            if count == 1:
                allocated += used
            if count == st.st_nlink:
                exclusive += used
    return dict(apparent_bytes=apparent, disk_bytes=allocated, exclusive_disk_bytes=exclusive)
