# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every file a module (and every process it starts) opens for writing, creates or renames, recorded by
``strace -f``: the proof that a dump never passes through a plaintext file, whatever is deleted
before the test could look at it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from support.modules import run_module

_OPEN_RE = re.compile(r'^\d+ +(?:openat|open|creat)\((?:AT_FDCWD|\d+)?,? ?"((?:[^"\\]|\\.)*)", ([A-Z_|]+)')
_RENAME_RE = re.compile(r'^\d+ +rename(?:at2?)?\((?:AT_FDCWD, )?"((?:[^"\\]|\\.)*)", (?:AT_FDCWD, )?"((?:[^"\\]|\\.)*)"')
_WRITE_FLAGS = ('O_WRONLY', 'O_RDWR', 'O_CREAT', 'O_TRUNC', 'O_APPEND')


def _unescape(s):
    return bytes(s, 'ascii').decode('unicode_escape').encode('latin-1').decode('utf-8', 'replace')


def run_module_writes(name, args, **kw):
    """(result, written) where written is the sorted set of paths opened for writing or renamed to."""
    strace = shutil.which('strace')
    if not strace:
        raise RuntimeError('strace is not installed (make test installs it)')
    fd, log = tempfile.mkstemp(prefix='djangoops-writes-')
    os.close(fd)
    try:
        result = run_module(name, args, wrapper=[strace, '-f', '-qq', '-xx', '-s', '4096',
                                                 '-e', 'trace=open,openat,creat,rename,renameat,renameat2',
                                                 '-o', log], **kw)
        with open(log, encoding='ascii', errors='replace') as f:
            lines = f.read().splitlines()
    finally:
        os.unlink(log)
    written = set()
    for line in lines:
        m = _OPEN_RE.match(line)
        if m and any(flag in m.group(2).split('|') for flag in _WRITE_FLAGS):
            written.add(_unescape(m.group(1)))
            continue
        m = _RENAME_RE.match(line)
        if m:
            written.add(_unescape(m.group(2)))
    return result, sorted(written)


def unexpected_writes(written, allowed):
    """Paths not matched by any of the ``allowed`` regexes (device files and bytecode caches aside)."""
    pats = [re.compile(a) for a in allowed] + [re.compile(r'^/dev/'), re.compile(r'\.pyc(\.\d+)?$'),
                                               re.compile(r'/__pycache__/')]
    return [w for w in written if not any(p.search(w) for p in pats)]
