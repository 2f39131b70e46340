# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real media trees for tests: one with every awkward feature, a describer that is independent of
the collection's code (so a test compares against the file system, not against the module's own
census), and helpers to change a tree the way an application would."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import subprocess

NAMES = {
    'plain': 'photos/2024/cat.jpg',
    'unicode': 'photos/2024/caf\u00e9 \u00fcber \u65e5\u672c.png',
    'spaces': 'docs/annual report  final .pdf',
    'newline': 'weird/line\nbreak.txt',
    'backslash': 'weird/back\\slash.txt',
    'private': 'private/invoice-0001.pdf',
    'script': 'bin/tool.sh',
}


def write(path, data, mode=0o644, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def make_rich_tree(root, seed=1):
    """Nested dirs, unicode/space/newline/backslash names, relative, absolute and dangling symlinks,
    empty dirs, a hard-linked pair, 0600/0755/0640 files, a 0700 and a 0555 directory, old mtimes."""
    rnd = random.Random(seed)
    os.makedirs(root)
    base = 1600000000
    for i, (key, rel) in enumerate(sorted(NAMES.items())):
        mode = {'private': 0o600, 'script': 0o755}.get(key, 0o644)
        write(os.path.join(root, rel), rnd.randbytes(1000 + 97 * i), mode=mode, mtime=base + i * 3600)
    for i in range(30):
        write(os.path.join(root, 'thumbs', 'd%02d' % (i % 5), 't%03d.webp' % i), rnd.randbytes(rnd.randint(0, 5000)),
              mode=0o640, mtime=base + 100000 + i)
    os.makedirs(os.path.join(root, 'empty', 'nested-empty'))
    os.makedirs(os.path.join(root, 'cache'))
    os.symlink('../photos/2024/cat.jpg', os.path.join(root, 'docs', 'cat-link.jpg'))
    os.symlink('/etc', os.path.join(root, 'abs-link-to-etc'))
    os.symlink('does/not/exist', os.path.join(root, 'dangling'))
    os.symlink('photos', os.path.join(root, 'photos-link'))
    os.link(os.path.join(root, NAMES['plain']), os.path.join(root, 'photos', 'hardlinked-cat.jpg'))
    os.chmod(os.path.join(root, 'private'), 0o700)
    write(os.path.join(root, 'readonly', 'frozen.txt'), b'frozen\n', mode=0o444, mtime=base)
    os.chmod(os.path.join(root, 'readonly'), 0o555)
    subprocess.run(['chown', '-h', '1234:2345', os.path.join(root, NAMES['private'])], check=True)
    subprocess.run(['chown', '-h', '33:33', os.path.join(root, 'dangling')], check=True)
    for dirpath, dirs, dummy in os.walk(root, topdown=False):
        for d in dirs:
            full = os.path.join(dirpath, d)
            if not os.path.islink(full):
                os.utime(full, (base + 7, base + 7))
    os.utime(root, (base + 9, base + 9))
    return root


def describe(root, contents=True):
    """Everything that makes two trees equal: per path its type, mode, owner, size, mtime (to the
    second, as rsync compares them), link target and content digest; plus which paths are hard links
    of each other."""
    st = os.lstat(root)
    out = {'.': ('d', stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, st.st_mtime_ns // 10 ** 9, None, None)}
    inodes = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ('l', None, st.st_uid, st.st_gid, None, None, os.readlink(full), None)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ('d', mode, st.st_uid, st.st_gid, None, st.st_mtime_ns // 10 ** 9, None, None)
            else:
                digest = None
                if contents:
                    with open(full, 'rb') as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ('f', mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns // 10 ** 9, None, digest)
                inodes.setdefault(st.st_ino, []).append(rel)
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out, links


def inode(path):
    return os.stat(path, follow_symlinks=False).st_ino


def du_bytes(*paths):
    """Real disk usage per path, as du counts it: hard links counted once, for the first path that has them."""
    out = subprocess.run(['du', '-s', '-B1'] + list(paths), check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    return [int(line.split('\t')[0]) for line in out.strip().splitlines()]


def make_flat_tree(root, count, size, seed=2):
    """``count`` random files of ``size`` bytes in 10 directories."""
    rnd = random.Random(seed)
    paths = []
    for i in range(count):
        p = os.path.join(root, 'd%d' % (i % 10), 'f%05d.bin' % i)
        write(p, rnd.randbytes(size), mtime=1600000000 + i)
        paths.append(p)
    return paths
