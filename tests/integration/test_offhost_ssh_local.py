# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH store against a real sshd on this host's loopback (seconds per test, no fleet rig): a copy in
flight looks fresh to a prune however old its snapshot, both ways; a copy that does not match its manifest
is never published and the next push repairs it, as it repairs a resumed copy damaged on the backup host;
long remote commands have no wall-clock limit, and a quick one that hangs is reported as a timeout.

The sshd runs every command through a wrapper (ForceCommand) that puts slowbin/ first on PATH: there,
``sha256sum`` and ``stat`` sleep for as many seconds as the file ``slow-<tool>`` says, when it exists."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _remote_ssh
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import ToolError, private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote import RemoteError, pull_lock
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotStore
from support.background import Background
from support.clock_ahead import clock_ahead, warned
from support.media_tree import make_rich_tree, write
from support.modules import run_module
from support.pulls import assert_a_second_pull_is_refused
from support.rig import SSHD_COMMON_CONFIG
from support.sqlite_data import make_shop

SSHD = '/usr/sbin/sshd'
DAY = 86400
SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

_CONFIG = """\
ListenAddress 127.0.0.1:{port}
""" + SSHD_COMMON_CONFIG + """\
ForceCommand {dir}/session
"""
_SESSION = """#!/bin/sh
PATH=$(dirname "$0")/slowbin:%s
export PATH
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
""" % SYSTEM_PATH
_SLOW_TOOL = """#!/bin/sh
d=$(dirname "$0")
n=$(basename "$0")
[ -f "$d/../slow-$n" ] && sleep "$(cat "$d/../slow-$n")"
PATH=%s
exec "$n" "$@"
""" % SYSTEM_PATH


class LoopbackSshd(object):
    def __init__(self, path):
        self.dir = path
        self.key = os.path.join(path, 'client_key')
        self.proc = None
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]

    def _script(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, 'w', encoding='ascii') as f:
            f.write(text)
        os.chmod(path, 0o755)

    def start(self):
        for key in ('host_key', 'client_key'):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', os.path.join(self.dir, key)],
                           check=True)
        shutil.copy(self.key + '.pub', os.path.join(self.dir, 'authorized_keys'))
        os.mkdir(os.path.join(self.dir, 'slowbin'))
        self._script('session', _SESSION)
        for tool in ('sha256sum', 'stat'):
            self._script(os.path.join('slowbin', tool), _SLOW_TOOL)
        with open(os.path.join(self.dir, 'sshd_config'), 'w', encoding='ascii') as f:
            f.write(_CONFIG.format(port=self.port, dir=self.dir, host_key=os.path.join(self.dir, 'host_key'),
                                   pidfile=os.path.join(self.dir, 'sshd.pid'),
                                   authorized_keys=os.path.join(self.dir, 'authorized_keys')))
        os.makedirs('/run/sshd', exist_ok=True)
        with open(os.path.join(self.dir, 'sshd.log'), 'ab') as log:
            self.proc = subprocess.Popen([SSHD, '-D', '-e', '-f', os.path.join(self.dir, 'sshd_config')],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, 'sshd exited %s' % self.proc.returncode
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1) as s:
                    if s.recv(64).startswith(b'SSH-'):
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError('sshd did not answer on 127.0.0.1:%d' % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def slow(self, tool, seconds):
        with open(os.path.join(self.dir, 'slow-' + tool), 'w', encoding='ascii') as f:
            f.write('%d\n' % seconds)

    def fast(self):
        for tool in ('sha256sum', 'stat'):
            if os.path.exists(os.path.join(self.dir, 'slow-' + tool)):
                os.unlink(os.path.join(self.dir, 'slow-' + tool))

    def remote(self, path, **kw):
        r = dict(type='ssh', host='127.0.0.1', port=self.port, user='root', path=str(path), ssh_key=self.key,
                 host_key_checking='no', known_hosts='/dev/null', io_timeout=10)
        r.update(kw)
        return r


@pytest.fixture(scope='module')
def sshd(tmp_path_factory):
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        pytest.skip('needs root and openssh-server (a loopback sshd that logs in as root)')
    server = LoopbackSshd(str(tmp_path_factory.mktemp('sshd'))).start()
    yield server
    server.stop()


@pytest.fixture
def secrets():
    with private_dir() as d:
        yield d


def take(tmp_path, age_days=0, big=1):
    """A snapshot with a database part and a media part (with SHA256SUMS and a ``big`` MiB file), its
    directory dated ``age_days`` back (a catch-up push of old snapshots)."""
    shop = str(tmp_path / 'app' / 'db.sqlite3')
    os.makedirs(os.path.dirname(shop))
    make_shop(shop)
    media = make_rich_tree(str(tmp_path / 'media'))
    write(os.path.join(media, 'video', 'big.bin'), os.urandom(big * 1024 * 1024))
    root = str(tmp_path / 'snaps')
    r = run_module('db_snapshot', dict(engine='sqlite', database=shop, snapshot_root=root, finalize=False))
    assert not r.failed, r
    m = run_module('media_snapshot', dict(src=[media], snapshot_root=root, snapshot_id=r['snapshot_id'],
                                          checksums=True))
    assert not m.failed, m
    if age_days:
        then = time.time() - age_days * DAY
        os.utime(os.path.join(root, r['snapshot_id']), (then, then))
    return root, r['snapshot_id']


def copy(root, remote, direction='push', **kw):
    return run_module('snapshot_copy', dict(snapshot_root=root, direction=direction, remote=remote, **kw))


def verified(remote, sid):
    info = run_module('snapshot_remote_info', dict(remote=remote, snapshot_id=sid, verify=True))
    assert not info.failed, info
    return info['snapshots'][0]['status'] == 'verified', info['snapshots'][0].get('problems')


def database_file(root, sid):
    with open(os.path.join(root, sid, 'manifest.json'), encoding='utf-8') as f:
        return json.load(f)['parts']['database']['files'][0]['path']


def damage(path):
    """Zeros in place of the file's bytes, with its size and mtime: what rsync's quick check cannot see."""
    st = os.stat(path)
    with open(path, 'r+b') as f:
        f.write(b'\0' * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def wait_for(what, seconds=20):
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, 'waited %ss in vain' % seconds
        time.sleep(0.1)


def age(path, days):
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_a_push_in_flight_looks_fresh_to_a_prune_however_old_its_snapshot(sshd, secrets, tmp_path):
    root, sid = take(tmp_path, age_days=2, big=5)
    backup = tmp_path / 'backup'
    store = _remote_ssh.SshStore(sshd.remote(backup, bwlimit=320), secrets, lambda c: None)
    store.activity_interval = 1
    partial = backup / (sid + '.partial')
    push = Background(lambda: store.push(SnapshotStore(root).load(sid), []))
    try:
        wait_for((partial / 'database').is_dir)
        time.sleep(1)  # rsync has dated the directory back to the snapshot's time by now
        pruned = run_module('snapshot_remote_prune', dict(keep_last=1, remote=sshd.remote(backup)))
        assert not pruned.failed, pruned
        assert pruned['partials_removed'] == [] and pruned['partials_kept'] == [sid + '.partial'], pruned
        # A copy that runs longer than partial_max_age stays fresh: its stamp is touched while it runs.
        age(str(partial / '.parts'), 3)
        wait_for(lambda: os.stat(str(partial / '.parts')).st_mtime > time.time() - 60, 10)
        pruned = run_module('snapshot_remote_prune', dict(keep_last=1, remote=sshd.remote(backup)))
        assert pruned['partials_removed'] == [] and pruned['partials_kept'] == [sid + '.partial'], pruned
        # The local modules on the backup host read the same stamp.
        local = run_module('snapshot_prune', dict(snapshot_root=str(backup), keep_last=1))
        assert not local.failed and local['partials_kept'] == [sid + '.partial'], local
        assert push.thread.is_alive(), 'the copy ended before the prunes looked at it; slow it down'
    finally:
        push.join()
    assert os.listdir(str(backup)) == [sid]
    assert not os.path.exists(str(backup / sid / '.parts')), 'the stamp is not part of the snapshot'
    assert verified(sshd.remote(backup), sid) == (True, [])


def test_a_pull_in_flight_looks_fresh_to_the_local_prune(sshd, secrets, tmp_path):
    root, sid = take(tmp_path, age_days=2, big=5)
    backup = tmp_path / 'backup'
    assert not copy(root, sshd.remote(backup)).failed
    age(str(backup / sid), 2)  # pushed two days ago, as a restore typically finds it
    here = SnapshotStore(str(tmp_path / 'here'))
    store = _remote_ssh.SshStore(sshd.remote(backup, bwlimit=320), secrets, lambda c: None)
    store.activity_interval = 1
    entry = [e for e in store.entries() if e.name == sid][0]
    partial = here.partial_path(sid)
    pull = Background(lambda: store.pull(entry, here, []))
    try:
        wait_for(lambda: os.path.isdir(os.path.join(partial, 'database')))
        time.sleep(1)
        pruned = run_module('snapshot_prune', dict(snapshot_root=here.root, keep_last=1))
        assert not pruned.failed and pruned['partials_kept'] == [sid + '.partial'], pruned
        stamp = os.path.join(partial, '.parts')
        age(stamp, 3)
        wait_for(lambda: os.stat(stamp).st_mtime > time.time() - 60, 10)
        pruned = run_module('snapshot_prune', dict(snapshot_root=here.root, keep_last=1))
        assert pruned['partials_removed'] == [] and pruned['partials_kept'] == [sid + '.partial'], pruned
        assert pull.thread.is_alive(), 'the copy ended before the prunes looked at it; slow it down'
    finally:
        pull.join()
    assert [s.id for s in here.list()] == [sid] and not os.path.exists(os.path.join(here.path_of(sid), '.parts'))
    info = run_module('snapshot_info', dict(snapshot_root=here.root, verify=True))
    assert not info.failed and info['damaged'] == [], info


def test_a_pull_checking_its_copy_keeps_it_from_the_local_prune_however_long_the_check(tmp_path):
    """After rsync, a pull checks every file of its copy before the rename - minutes for a large snapshot - and
    touches nothing meanwhile; it holds its pull lock throughout. A local prune keeps that partial whatever its
    age, without taking the lock (which would make a pull starting then fail), and removes it once the lock is
    gone."""
    root, sid = take(tmp_path)
    partial = SnapshotStore(root).partial_path(sid)
    os.rename(os.path.join(root, sid), partial)  # the copy as rsync left it, under check
    for path in (partial, os.path.join(partial, 'database'), os.path.join(partial, 'media')):
        age(path, 3)
    with pull_lock(root, sid):
        pruned = run_module('snapshot_prune', dict(snapshot_root=root, keep_last=1, partial_max_age='1h'))
        assert not pruned.failed and pruned['partials_kept'] == [sid + '.partial'], pruned
        assert pruned['partials_removed'] == [] and os.path.isdir(partial)
        # the prune looked without taking the lock: another pull of the id is still refused, this one goes on
        assert_a_second_pull_refused_by_the_lock(root, sid)
    pruned = run_module('snapshot_prune', dict(snapshot_root=root, keep_last=1, partial_max_age='1h'))
    assert not pruned.failed and [p['name'] for p in pruned['partials_removed']] == [sid + '.partial'], pruned
    assert not os.path.exists(partial)


def assert_a_second_pull_refused_by_the_lock(root, sid):
    with pytest.raises(RemoteError, match='another pull of snapshot %s into %s is running' % (sid, root)):
        with pull_lock(root, sid):
            pass


def test_a_copy_that_does_not_match_its_manifest_is_not_published_and_the_next_push_repairs_it(sshd, tmp_path):
    root, sid = take(tmp_path)
    backup = tmp_path / 'backup'
    rel = database_file(root, sid)
    local = os.path.join(root, sid, rel)
    with open(local, 'rb') as f:
        original = f.read()
    st = os.stat(local)
    damage(local)  # damaged on this host after the snapshot was taken, pushed without verify_source
    failed = copy(root, sshd.remote(backup), verify_source=False)
    assert failed.failed, failed
    assert ('the copy of snapshot %s on %s does not match its manifest, so it was not published: %s: sha256 '
            % (sid, 'ssh://root@127.0.0.1:%d%s' % (sshd.port, backup), rel)) in failed['msg'], failed['msg']
    assert 'It stays incomplete as %s.partial; push again' % sid in failed['msg']
    assert os.listdir(str(backup)) == [sid + '.partial']

    with open(local, 'wb') as f:  # the same size and mtime again: only a comparison by content sees a change
        f.write(original)
    os.utime(local, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = copy(root, sshd.remote(backup))
    assert not again.failed and again['copied'] == [sid], again
    assert os.listdir(str(backup)) == [sid]
    assert verified(sshd.remote(backup), sid) == (True, [])


def test_a_resumed_copy_damaged_on_the_backup_host_is_repaired_before_it_is_published(sshd, tmp_path):
    root, sid = take(tmp_path)
    backup = tmp_path / 'backup'
    assert not copy(root, sshd.remote(backup)).failed
    # The backup host crashed during an earlier push: files of the right size and mtime, zeros inside.
    os.rename(str(backup / sid), str(backup / (sid + '.partial')))
    damage(str(backup / (sid + '.partial') / 'media' / 'trees' / 'media' / 'video' / 'big.bin'))
    damage(str(backup / (sid + '.partial') / database_file(root, sid)))
    resumed = copy(root, sshd.remote(backup))
    assert not resumed.failed and resumed['copied'] == [sid], resumed
    assert os.listdir(str(backup)) == [sid]
    assert verified(sshd.remote(backup), sid) == (True, [])


def test_long_remote_commands_have_no_wall_clock_limit_and_a_quick_one_that_hangs_times_out(
        sshd, secrets, tmp_path, monkeypatch):
    root, sid = take(tmp_path)
    backup = tmp_path / 'backup'
    assert not copy(root, sshd.remote(backup)).failed
    # Wall-clock limits shrunk 20 times (60 s: 3 s), so that this test need not wait minutes.
    real_run = _remote_ssh.run
    monkeypatch.setattr(_remote_ssh, 'run', lambda argv, timeout=None, **kw: real_run(
        argv, timeout=None if timeout is None else timeout / 20.0, **kw))
    store = _remote_ssh.SshStore(sshd.remote(backup, io_timeout=5), secrets, lambda c: None)
    entry = [e for e in store.entries() if e.name == sid][0]
    try:
        sshd.slow('sha256sum', 4)  # hashing a large snapshot takes longer than any quick limit
        assert store.verify(entry) == []
        sshd.slow('stat', 5)  # a backup host whose file system hangs
        with pytest.raises(RemoteError) as e:
            store.entries()
    finally:
        sshd.fast()
    assert str(e.value) == ('listing the store on the backup host ssh://root@127.0.0.1:%d%s timed out after 60 s '
                            '(the limit for a quick command: 4 x remote.io_timeout, at least 60 s); the backup '
                            'host or its file system does not answer in time' % (sshd.port, backup))


def failure(store, e, step, limit):
    with pytest.raises(RemoteError) as raised:
        store._sh_failed(e, step, limit)
    return raised.value


def test_how_a_failed_remote_command_is_reported(secrets):
    store = _remote_ssh.SshStore(dict(type='ssh', host='backup1', path='/srv/b', io_timeout=30), secrets,
                                 lambda c: None)
    where = 'ssh://backup1:22/srv/b'
    lost = ToolError('ssh failed', rc=255, stderr='Timeout, server backup1 not responding.\n')
    assert str(failure(store, lost, 'hashing x', None)) == (
        'lost the connection to the backup host %s while hashing x (SSH keep-alives went unanswered for about '
        'remote.io_timeout, 30 s): Timeout, server backup1 not responding.' % where)
    login = ToolError('ssh failed', rc=255, stderr='root@backup1: Permission denied (publickey).\n')
    assert str(failure(store, login, 'listing the store', 120)) == (
        'cannot reach or log in to the backup host %s: root@backup1: Permission denied (publickey).' % where)
    closed = ToolError('ssh failed', rc=255, stderr='kex_exchange_identification: Connection closed by remote host\n')
    assert 'cannot reach or log in' in str(failure(store, closed, 'listing the store', 120))
    killed = ToolError('ssh timed out after 120s', command='ssh ...')
    assert str(failure(store, killed, 'listing the store', 120)).startswith(
        'listing the store on the backup host %s timed out after 120 s' % where)
    failed = failure(store, ToolError('sh failed', rc=1, stderr='rm: cannot remove x\n'), 'deleting x', None)
    assert isinstance(failed, _remote_ssh.RemoteCommandError)
    assert str(failed) == 'command on the backup host %s failed while deleting x: rm: cannot remove x' % where


def test_a_second_pull_of_the_same_id_fails_clearly_and_leaves_the_first_alone(sshd, tmp_path):
    """The pull lock is the module's, for every kind of store (the S3 test has its twin)."""
    root, sid = take(tmp_path)
    backup = tmp_path / 'backup'
    assert not copy(root, sshd.remote(backup)).failed
    assert_a_second_pull_is_refused(lambda other: copy(other, sshd.remote(backup), direction='pull'), sid,
                                    str(tmp_path / 'other'))


def test_a_snapshot_whose_media_holds_no_file_is_pushed_and_verifies(sshd, tmp_path):
    """An empty SHA256SUMS (a new site's empty uploads directory) is a sound one: sha256sum -c calls it
    malformed, and the check before publishing must not refuse the copy for it."""
    media = str(tmp_path / 'media')
    os.makedirs(os.path.join(media, 'uploads'))
    root = str(tmp_path / 'snaps')
    m = run_module('media_snapshot', dict(src=[media], snapshot_root=root, checksums=True))
    assert not m.failed, m
    backup = tmp_path / 'backup'
    pushed = copy(root, sshd.remote(backup))
    assert not pushed.failed and pushed['copied'] == [m['snapshot_id']], pushed
    assert os.listdir(str(backup)) == [m['snapshot_id']]
    assert verified(sshd.remote(backup), m['snapshot_id']) == (True, [])


def test_a_future_dated_snapshot_on_the_backup_host_is_never_latest_and_never_pruned(sshd, tmp_path):
    """Pushed from a host whose clock ran a month ahead: the remote latest (a pull, remote info) skips it,
    or refuses when nothing else is there, and the remote prune keeps it without counting it."""
    shop = str(tmp_path / 'app' / 'db.sqlite3')
    os.makedirs(os.path.dirname(shop))
    make_shop(shop, customers=20, products=5, orders=20)
    root = str(tmp_path / 'snaps')
    ids = {}
    for name in ('oldest', 'ahead', 'newest'):
        r = run_module('db_snapshot', dict(engine='sqlite', database=shop, snapshot_root=root))
        assert not r.failed, r
        ids[name] = r['snapshot_id']
        if name == 'ahead':
            ids['ahead'], ahead_date = clock_ahead(root, r['snapshot_id'])
    backup = tmp_path / 'backup'
    pushed = copy(root, sshd.remote(backup), snapshot_id='all')
    assert not pushed.failed and sorted(pushed['copied']) == sorted(ids.values()), pushed

    info = run_module('snapshot_remote_info', dict(remote=sshd.remote(backup)))
    assert not info.failed, info
    assert info['latest'] == ids['newest'] and info['future_dated'] == [ids['ahead']], info
    assert [s['id'] for s in info['snapshots'] if s['future_dated']] == [ids['ahead']]
    assert warned(info, ids['ahead'], ahead_date), info.get('warnings')
    one = run_module('snapshot_remote_info', dict(remote=sshd.remote(backup), snapshot_id='latest'))
    assert [s['id'] for s in one['snapshots']] == [ids['newest']], one
    assert len(warned(one, ids['ahead'], ahead_date)) == 1, one.get('warnings')

    pulled = copy(str(tmp_path / 'here'), sshd.remote(backup), direction='pull')
    assert not pulled.failed and pulled['snapshot_id'] == ids['newest'], pulled
    assert warned(pulled, ids['ahead'], ahead_date), pulled.get('warnings')

    pruned = run_module('snapshot_remote_prune', dict(keep_last=1, remote=sshd.remote(backup)))
    assert not pruned.failed, pruned
    assert [d['id'] for d in pruned['deleted']] == [ids['oldest']], pruned
    assert [f['id'] for f in pruned['future_dated']] == [ids['ahead']]
    assert sorted(os.listdir(str(backup))) == sorted([ids['ahead'], ids['newest']])
    assert warned(pruned, ids['ahead'], ahead_date), pruned.get('warnings')

    shutil.rmtree(str(backup / ids['newest']))
    refused = copy(str(tmp_path / 'elsewhere'), sshd.remote(backup), direction='pull')
    assert refused.failed and 'future-dated' in refused['msg'] and ids['ahead'] in refused['msg'], refused
    assert not os.path.exists(str(tmp_path / 'elsewhere' / ids['ahead']))
