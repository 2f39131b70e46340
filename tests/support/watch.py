# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watch every process a module starts: ``run_module_traced`` runs a module under
``strace -f -e trace=execve`` and returns, with the result, the argv of every exec in the tree.
Nothing is sampled, so a short-lived child cannot slip past."""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from support.modules import run_module

_EXEC_RE = re.compile(r'execve\("(?P<path>(?:[^"\\]|\\.)*)", \[(?P<args>.*?)\](?:\.\.\.)?, ')
_STR_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _unescape(s):
    """strace -xx prints every byte as \\xNN; decode to text."""
    return bytes(s, 'ascii').decode('unicode_escape').encode('latin-1').decode('utf-8', 'replace')


def run_module_traced(name, args, **kw):
    """Returns (result, execs) where execs is a list of argv lists of every process exec'd."""
    strace = shutil.which('strace')
    if not strace:
        raise RuntimeError('strace is not installed (make test installs it)')
    fd, log = tempfile.mkstemp(prefix='djangoops-strace-')
    os.close(fd)
    try:
        result = run_module(name, args, wrapper=[strace, '-f', '-qq', '-xx', '-s', '1048576', '-e', 'trace=execve',
                                                 '-o', log], **kw)
        with open(log, encoding='ascii', errors='replace') as f:
            text = f.read()
    finally:
        os.unlink(log)
    execs = []
    for m in _EXEC_RE.finditer(text):
        execs.append([_unescape(a) for a in _STR_RE.findall(m.group('args'))])
    if not execs:
        raise AssertionError('strace saw no exec at all; the trace is broken')
    return result, execs


def secret_forms(secret):
    """The secret and the encodings a careless tool might print it in."""
    forms = {secret, secret.encode('utf-8').hex()}
    for q in ("'", '"'):
        forms.add(secret.replace(q, '\\' + q))
    return [f for f in forms if len(f) >= 4]


def assert_secret_absent(secret, *haystacks):
    """Fail if the secret (or an obvious encoding of it) appears in any haystack (str, list, dict)."""
    text = repr(haystacks)
    plain = ' '.join(str(h) for h in haystacks)
    for form in secret_forms(secret):
        assert form not in plain and form not in text, 'secret found in output: %r' % form


def process_argvs():
    """``(pid, argv)`` of every process visible now (argv as bytes); one that ends meanwhile is skipped."""
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                yield int(pid), f.read().split(b'\0')
        except OSError:
            continue
