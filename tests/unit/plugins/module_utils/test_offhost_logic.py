# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of encryption and off-host copies: recipients, the stage chains' order, remote names,
manifest parsing, which snapshot a name resolves to, link-dest candidates, SSH argv and path checks."""

from __future__ import annotations

import datetime
import hashlib
import json

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _age, _remote
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import input_chain, output_chain
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._remote_ssh import SshStore
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import Snapshot, isoformat

AGE_KEY = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'
SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd0d1u2cRkF0p8sVn1d4oG9a8a3m8c1JYkYhB2n8N3h ops@example'


def test_recipients_are_public_keys_only():
    assert _age.validate_recipients([AGE_KEY, ' %s ' % AGE_KEY, SSH_KEY]) == [AGE_KEY, SSH_KEY]
    assert _age.validate_recipients([]) == [] and _age.encryption_options([]) is None
    with pytest.raises(_age.EncryptionError, match="invalid recipient 'age1short'"):
        _age.validate_recipients(['age1short'])
    with pytest.raises(_age.EncryptionError, match='PRIVATE key') as e:
        _age.validate_recipients(['AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ'])
    assert 'AGE-SECRET-KEY-1QQQ' not in str(e.value)


def test_output_chain_compresses_then_encrypts_and_input_chain_reverses_it():
    enc = _age.encryption_options([AGE_KEY])
    steps, suffix = output_chain(dict(compression='zstd', compression_level=3, encryption=enc))
    assert [s.name for s in steps] == ['zstd', 'age'] and suffix == '.zst.age'
    assert steps[1].argv[1:] == ['-r', AGE_KEY]
    steps, suffix = output_chain(dict(compression='none', encryption=enc))
    assert [s.name for s in steps] == ['age'] and suffix == '.age'
    assert output_chain(dict(compression='gzip', compression_level=1))[1] == '.gz'
    meta = dict(compression='zstd', encryption=dict(method='age', recipients=[AGE_KEY]))
    steps = input_chain(meta, '/run/key')
    assert [s.name for s in steps] == ['age', 'zstd'] and steps[0].argv[1:] == ['-d', '-i', '/run/key']
    assert input_chain(dict(compression='none')) == []
    with pytest.raises(Exception, match='identity'):
        input_chain(meta, None)
    with pytest.raises(_age.EncryptionError, match="encrypted with 'gpg'"):
        input_chain(dict(compression='none', encryption=dict(method='gpg')), '/k')


def manifest(sid, host='h1', completed='2026-11-01T00:00:00.000000Z'):
    return dict(format='djangoops.maintenance.snapshot', id=sid, host=host, created_at=completed,
                completed_at=completed, parts={}, bytes=0)


def entry(sid, host='h1', completed='2026-11-01T00:00:00.000000Z', kind='complete'):
    data = json.dumps(manifest(sid, host, completed)).encode()
    e = _remote.RemoteEntry(sid, kind)
    if kind == 'complete':
        e.manifest, e.manifest_sha256, e.problem = _remote.parse_manifest(sid, data)
    return e


def test_names_and_manifests():
    assert _remote.classify('20261101T000000Z-abc123', True) == 'complete'
    assert _remote.classify('20261101T000000Z-abc123', False) == 'invalid'
    assert _remote.classify('20261101T000000Z-abc123.partial', True) == 'partial'
    assert _remote.classify('lost+found', True) == 'invalid'
    data = json.dumps(manifest('a1')).encode()
    m, digest, problem = _remote.parse_manifest('a1', data)
    assert problem is None and m['id'] == 'a1' and digest == hashlib.sha256(data).hexdigest()
    assert _remote.parse_manifest('b2', data)[2] == "manifest.json of b2 names snapshot 'a1', but lives in b2"
    assert 'not JSON' in _remote.parse_manifest('a1', b'{oops')[2]
    # the checks of a local manifest: its format, and a format version this collection reads
    newer = json.dumps(dict(manifest('a1'), format_version=99)).encode()
    assert _remote.parse_manifest('a1', newer)[2] == ('manifest.json of a1 has format version 99; this collection '
                                                      'reads up to 1')
    other = json.dumps(dict(manifest('a1'), format='something.else')).encode()
    assert _remote.parse_manifest('a1', other)[2] == ('manifest.json of a1 is not a djangoops.maintenance snapshot '
                                                      'manifest')


def test_resolving_remote_ids():
    entries = [entry('s2', completed='2026-11-02T00:00:00.000000Z'), entry('s1'),
               _remote.RemoteEntry('s3.partial', 'partial')]
    assert _remote.resolve_remote_id(entries, 'latest').name == 's2'
    assert _remote.resolve_remote_id(entries, 's1').name == 's1'
    with pytest.raises(_remote.RemoteError, match='incomplete'):
        _remote.resolve_remote_id(entries, 's3')
    with pytest.raises(_remote.RemoteError, match='is not on the remote store'):
        _remote.resolve_remote_id(entries, 's4')
    with pytest.raises(_remote.RemoteError, match='no complete snapshot'):
        _remote.resolve_remote_id([_remote.RemoteEntry('x.partial', 'partial')], 'latest')


def test_latest_of_a_store_shared_by_hosts():
    entries = [entry('a1', host='web1', completed='2026-11-01T00:00:00.000000Z'),
               entry('a2', host='web1', completed='2026-11-02T00:00:00.000000Z'),
               entry('b1', host='web2', completed='2026-11-03T00:00:00.000000Z')]
    # a pull: latest alone would be web2's newest for any host that asks
    with pytest.raises(_remote.RemoteError) as e:
        _remote.resolve_remote_id(entries, 'latest', one_host=True)
    assert str(e.value) == ('the remote store holds snapshots of several hosts (web1, web2), so latest does not say '
                            'whose; name the host (from_host) or the snapshot id')
    assert _remote.resolve_remote_id(entries, 'latest', host='web1', one_host=True).name == 'a2'
    assert _remote.resolve_remote_id(entries, 'latest', host='web2').name == 'b1'
    with pytest.raises(_remote.RemoteError) as e:
        _remote.resolve_remote_id(entries, 'latest', host='web9', one_host=True)
    assert str(e.value) == ('the remote store holds no complete snapshot of host web9 (it holds snapshots of: web1, '
                            'web2)')
    assert _remote.resolve_remote_id(entries, 'b1', host='web1', one_host=True).name == 'b1', 'an id is an id'
    assert _remote.resolve_remote_id(entries, 'latest').name == 'b1', 'listing: the newest of all'
    assert _remote.resolve_remote_id(entries[:2], 'latest', one_host=True).name == 'a2', 'one host: unambiguous'


def test_link_candidates_prefer_the_same_host_and_stop_at_three():
    entries = [entry('a%d' % i, host='h1', completed='2026-11-0%dT00:00:00.000000Z' % i) for i in range(1, 6)]
    entries += [entry('b1', host='h2', completed='2026-11-09T00:00:00.000000Z')]
    snap = Snapshot('/x/new', manifest('new', host='h1'))
    assert _remote.link_candidates(snap, entries) == ['a5', 'a4', 'a3']
    other = Snapshot('/x/new', manifest('new', host='h2'))
    assert _remote.link_candidates(other, entries) == ['b1', 'a5', 'a4']


def test_ssh_store_argv_and_refusals():
    base = dict(type='ssh', host='backup1.internal', port=2222, user='bk', path='/srv/backups/web1',
                host_key_checking='yes', known_hosts='/etc/ssh/kh', ssh_options=['ProxyJump=bastion'],
                io_timeout=30, bwlimit=500)
    with private_dir() as secrets:
        store = SshStore(dict(base, ssh_key_content='-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n'), secrets,
                         lambda c: None)
        argv = store.ssh_argv()
        assert argv[argv.index('-p') + 1] == '2222' and 'StrictHostKeyChecking=yes' in argv
        assert 'UserKnownHostsFile=/etc/ssh/kh' in argv and 'ProxyJump=bastion' in argv
        assert store.key.startswith(secrets.path) and not any('secret' in a for a in argv)
        rs = store.rsync_argv('/a/', store.remote_path('s1.partial') + '/')
        assert '--timeout=30' in rs and '--bwlimit=500' in rs
        assert rs[-1] == 'bk@backup1.internal:/srv/backups/web1/s1.partial/'
        assert rs[rs.index('-e') + 1].startswith(argv[0] + ' -o BatchMode=yes')
        assert store.describe() == 'ssh://bk@backup1.internal:2222/srv/backups/web1'
        for bad in ('relative/path', '/srv/../etc', '/', '/srv/back ups', "/srv/x';rm"):
            with pytest.raises(_remote.RemoteError, match='remote.path'):
                SshStore(dict(base, path=bad), secrets, lambda c: None)
        with pytest.raises(_remote.RemoteError, match='invalid remote.host'):
            SshStore(dict(base, host='a b'), secrets, lambda c: None)
        with pytest.raises(_remote.RemoteError, match='needs remote.host'):
            SshStore(dict(base, host=None), secrets, lambda c: None)


def test_latest_on_a_remote_store_skips_future_dated_snapshots():
    # by this host's clock: a2 is a day old, ahead was written by web1 while its clock ran a month ahead
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    entries = [entry('a1', host='web1', completed=isoformat(now - 2 * day)),
               entry('a2', host='web1', completed=isoformat(now - day)),
               entry('ahead', host='web1', completed=isoformat(now + 30 * day)),
               entry('b1', host='web2', completed=isoformat(now + 40 * day))]
    assert _remote.resolve_remote_id(entries, 'latest', host='web1').name == 'a2'
    assert _remote.resolve_remote_id(entries, 'latest').name == 'a2'
    assert _remote.resolve_remote_id(entries, 'ahead').name == 'ahead', 'an id is an id'
    with pytest.raises(_remote.RemoteError) as e:
        _remote.resolve_remote_id(entries, 'latest', host='web2')
    assert str(e.value).startswith('every complete snapshot on the remote store of host web2 is future-dated - b1 '
                                   '(dated %s) - more than 5m after this host\'s clock (' % isoformat(now + 40 * day))
    assert str(e.value).endswith("), so latest will not pick one; name the snapshot id, or see docs/troubleshooting.md")
