# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client tools that misbehave on purpose: each wrapper runs the real tool with the same arguments and
input, then does what a broken or dying tool does. For the faults a real tool cannot be made to show
on demand (a footer it never wrote, an error it printed while exiting 0)."""

from __future__ import annotations

import os
import stat
import sys

_WRAPPER = '''#!{python}
"""Stands in for {tool}: runs the real one with the same arguments, then misbehaves ({mode})."""
import os, subprocess, sys
REAL = {real!r}
MODE = {mode!r}
LOG = {log!r}
SAYS = {says!r}
args = sys.argv[1:]
if args and args[0].startswith('--defaults-extra-file=') and LOG:
    path = args[0].split('=', 1)[1]
    with open(LOG, 'a') as f:
        f.write('%s %o %o\\n' % (path, os.stat(path).st_mode & 0o777, os.stat(os.path.dirname(path)).st_mode & 0o777))
if MODE == 'pass' or args == ['--version'] or '--help' in args:
    os.execv(REAL, [REAL] + args)
if MODE == 'error-exit-0':
    subprocess.call([REAL] + args)  # its output and input as they are
    sys.stderr.write(SAYS + '\\n')
    sys.exit(0)
p = subprocess.Popen([REAL] + args, stdout=subprocess.PIPE)
data = p.stdout.read()
p.wait()
if MODE == 'cut-footer':
    data = data[:data.rindex(b'-- Dump completed')]
sys.stdout.buffer.write(data)
sys.exit(0)
'''


def make_wrapper(bindir, tool, mode, log='', real=None, says=''):
    """An executable ``bindir/tool`` wrapping the real tool (``real``, else the first ``tool`` on PATH
    outside ``bindir``). ``mode``:

    - ``pass``: runs the real tool, only recording the path and modes of a ``--defaults-extra-file``
      given first into ``log``;
    - ``cut-footer``: drops the dump's completion footer and exits 0, like a tool that died quietly;
    - ``error-exit-0``: the real tool's whole work, then the error line ``says`` on stderr and exit
      status 0, like a tool that reports a failure only in words."""
    if real is None:
        for d in os.environ.get('PATH', '').split(os.pathsep) + ['/usr/bin']:
            if os.path.isfile(os.path.join(d, tool)) and os.path.realpath(d) != os.path.realpath(bindir):
                real = os.path.join(d, tool)
                break
    os.makedirs(bindir, exist_ok=True)
    path = os.path.join(bindir, tool)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(_WRAPPER.format(python=sys.executable, tool=tool, real=real, mode=mode, log=log, says=says))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def bin_dir_with(bindir, real_dir, wrapped):
    """``bindir`` holding every program of ``real_dir`` (symlinks), except those of ``wrapped`` (``{tool:
    (mode, says)}``), which are wrappers of the real ones. For tools that are picked from one directory
    (PostgreSQL's client_bin_dir)."""
    os.makedirs(bindir, exist_ok=True)
    for name in os.listdir(real_dir):
        if name not in wrapped:
            os.symlink(os.path.join(real_dir, name), os.path.join(bindir, name))
    for tool, (mode, says) in wrapped.items():
        make_wrapper(bindir, tool, mode, real=os.path.join(real_dir, tool), says=says)
    return bindir
