# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network and bookkeeping half of the fleet rig (see rig.py): names, subnet allocation,
bridge/veth/netns plumbing, and finding and removing whatever a rig left behind.

Everything a rig creates carries its six-hex-digit id:

- state directory ``/tmp/djangoops-rig-<id>/`` with a ``lock`` file the owner holds with flock(2)
  for the rig's whole life (the kernel drops the lock when the owner dies, however it dies, so a free
  lock means "owner gone" without trusting a pid that may have been reused);
- network namespaces ``djr<id>-h<N>``; bridge ``djr<id>b``; outer veth ends ``djr<id>h<N>``
  (at most 15 characters, the kernel's limit for interface names);
- processes whose namespace is one of those, or whose command line names the state directory.

Several rigs (several developers, several pytest sessions) run at once on one machine, so a rig
only ever removes its own things, or those of a rig whose lock is free.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import time

STATE_ROOT = '/tmp'
STATE_PREFIX = 'djangoops-rig-'
NAME_PREFIX = 'djr'
# Serialises "sweep leftovers, pick an id and a subnet, claim them" between rigs.
GLOBAL_LOCK = os.path.join(STATE_ROOT, 'djangoops-rig.lock')
SUBNET_SUPERNET = ipaddress.ip_network('10.213.0.0/16')

_ID_RE = r'[0-9a-f]{6}'
_NAME_RE = re.compile(r'^%s(%s)(?:b|h\d+|-h\d+)$' % (NAME_PREFIX, _ID_RE))
_STATE_RE = re.compile(r'^%s(%s)$' % (re.escape(STATE_PREFIX), _ID_RE))


class RigError(RuntimeError):
    pass


def ip(*args, check=True):
    """One `ip` command; returns stdout. Failures carry ip's own message."""
    p = subprocess.run(['ip'] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, check=False)
    if check and p.returncode != 0:
        raise RigError('ip %s failed: %s' % (' '.join(str(a) for a in args), p.stderr.strip()))
    return p.stdout


def bridge_name(rig_id):
    return '%s%sb' % (NAME_PREFIX, rig_id)


def veth_name(rig_id, index):
    return '%s%sh%d' % (NAME_PREFIX, rig_id, index)


def netns_name(rig_id, index):
    return '%s%s-h%d' % (NAME_PREFIX, rig_id, index)


def state_dir(rig_id):
    return os.path.join(STATE_ROOT, STATE_PREFIX + rig_id)


class FileLock(object):
    """An flock(2) on a file; ``acquire(block=False)`` returns False if another holder has it."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self, block=True):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        self.fd = fd
        return True

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def owner_alive(rig_id):
    """True while the process that made rig ``rig_id`` holds its lock."""
    lock_path = os.path.join(state_dir(rig_id), 'lock')
    if not os.path.exists(lock_path):
        return False
    probe = FileLock(lock_path)
    try:
        if probe.acquire(block=False):
            return False
        return True
    except OSError:
        return False
    finally:
        probe.release()


# ---------------------------------------------------------------- what exists

def netns_list():
    # Lines are "name" or "name (id: N)".
    return [line.split()[0] for line in ip('netns', 'list', check=False).splitlines() if line.strip()]


def link_list():
    return sorted(os.listdir('/sys/class/net'))


def netns_pids(name):
    out = ip('netns', 'pids', name, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def pids_naming(path):
    """Processes whose command line mentions ``path`` (sshd -f <dir>/..., postgres -D <dir>/...)."""
    needle = path.encode() + b'/'
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def rig_ids_present():
    """Ids of every rig with a state directory or a namespace/interface on this machine."""
    ids = set()
    for name in netns_list() + link_list():
        m = _NAME_RE.match(name)
        if m:
            ids.add(m.group(1))
    for entry in os.listdir(STATE_ROOT):
        m = _STATE_RE.match(entry)
        if m:
            ids.add(m.group(1))
    return ids


def remnants(rig_id):
    """Everything of rig ``rig_id`` that still exists; empty once it is fully gone."""
    found = {}
    namespaces = [n for n in netns_list() if _owned(n, rig_id)]
    links = [n for n in link_list() if _owned(n, rig_id)]
    pids = set(pids_naming(state_dir(rig_id)))
    for ns in namespaces:
        pids.update(netns_pids(ns))
    mounts = []
    with open('/proc/self/mountinfo', encoding='utf-8', errors='replace') as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(state_dir(rig_id) + '/') or (
                    point.startswith('/run/netns/') and _owned(os.path.basename(point), rig_id)):
                mounts.append(point)
    for key, value in (('netns', namespaces), ('links', links), ('pids', sorted(pids)), ('mounts', mounts)):
        if value:
            found[key] = value
    if os.path.exists(state_dir(rig_id)):
        found['state_dir'] = state_dir(rig_id)
    return found


def _owned(name, rig_id):
    m = _NAME_RE.match(name)
    return bool(m) and m.group(1) == rig_id


# ---------------------------------------------------------------- removal

def kill_pids(pids, grace=2.0):
    """SIGTERM, then SIGKILL what is left after ``grace`` seconds; waits until they are gone."""
    pids = [p for p in pids if p != os.getpid()]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _running(p)]
            if alive:
                time.sleep(0.02)
        pids = alive
        if not pids:
            return []
    return pids


def _running(pid):
    # A zombie still answers kill(0) but has released its namespaces and files: count it as gone.
    try:
        with open('/proc/%d/stat' % pid, encoding='ascii', errors='replace') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def destroy(rig_id):
    """Remove every trace of rig ``rig_id``: processes, namespaces, interfaces, state directory.

    Safe to call on a half-built or already-removed rig. Returns a list of problems (empty if clean).
    """
    problems = []
    namespaces = [n for n in netns_list() if _owned(n, rig_id)]
    pids = set(pids_naming(state_dir(rig_id)))
    for ns in namespaces:
        pids.update(netns_pids(ns))
    left = kill_pids(sorted(pids))
    if left:
        problems.append('processes would not die: %s' % left)
    for ns in namespaces:
        try:
            ip('netns', 'delete', ns)
        except RigError as e:
            problems.append(str(e))
    # Deleting a namespace deletes the veth ends inside it and so their peers; the bridge stays.
    for name in link_list():
        if _owned(name, rig_id):
            try:
                ip('link', 'delete', name)
            except RigError as e:
                if os.path.exists('/sys/class/net/' + name):
                    problems.append(str(e))
    if os.path.isdir(state_dir(rig_id)):
        shutil.rmtree(state_dir(rig_id), ignore_errors=True)
        if os.path.exists(state_dir(rig_id)):
            problems.append('could not remove %s' % state_dir(rig_id))
    return problems


def sweep_stale():
    """Destroy the leftovers of rigs whose owner is gone. Call with GLOBAL_LOCK held.
    Returns the ids it removed."""
    removed = []
    for rig_id in sorted(rig_ids_present()):
        if owner_alive(rig_id):
            continue
        # A rig's state directory and lock exist before any of its namespaces or links (both made
        # under GLOBAL_LOCK), so an id with a free lock is not one being born right now.
        destroy(rig_id)
        removed.append(rig_id)
    return removed


# ---------------------------------------------------------------- allocation

def subnets_in_use():
    """/24s of 10.213.0.0/16 that any address or route of this network namespace touches."""
    used = set()
    text = ip('-4', '-o', 'addr', 'show', check=False) + ip('-4', 'route', 'show', 'table', 'all', check=False)
    for m in re.finditer(r'\b(10\.213\.\d{1,3}\.\d{1,3})(?:/(\d{1,2}))?\b', text):
        net = ipaddress.ip_network('%s/%s' % (m.group(1), m.group(2) or '32'), strict=False)
        for sub in SUBNET_SUPERNET.subnets(new_prefix=24):
            if sub.overlaps(net):
                used.add(sub)
    return used


def pick_subnet(rng=random):
    """A free 10.213.X.0/24. X=0 is left out: it is the example subnet of TESTBED.md that hand-made
    rigs use."""
    used = subnets_in_use()
    candidates = [s for s in SUBNET_SUPERNET.subnets(new_prefix=24) if s not in used and s.network_address.packed[2]]
    if not candidates:
        raise RigError('no free /24 left in %s' % SUBNET_SUPERNET)
    return rng.choice(candidates)
