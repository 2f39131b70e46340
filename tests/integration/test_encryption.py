# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption at rest with age, per engine, on real servers: no plaintext is ever written under the
snapshot root (every file the dump writes is recorded by strace), the snapshot verifies without the
key, restores exactly with it, and a wrong or missing key is refused before the target is touched."""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from support import mysql_data, pg_data, sqlite_data
from support.file_writes import run_module_writes, unexpected_writes
from support.media_tree import NAMES, describe, make_rich_tree, write
from support.django_project import django_venvs, shop_factory  # noqa: F401  pylint: disable=unused-import
from support.modules import run_module

MARKER = 'PLAINTEXT-MARKER-7f3a9c'
AGE_HEADER = b'age-encryption.org/v1\n'


@pytest.fixture(scope='module')
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp('keys')
    out = {}
    for name in ('backup', 'stranger'):
        path = str(d / name)
        subprocess.run(['age-keygen', '-o', path], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(path, encoding='ascii') as f:
            text = f.read()
        out[name] = dict(path=path, content=text,
                         public=[x.split(': ')[1] for x in text.splitlines() if x.startswith('# public key:')][0])
    return out


def snapshot_writes_only_ciphertext(args, root):
    """Take the snapshot under strace and check every file written: only the age file and the snapshot's own
    metadata. Returns the result."""
    r, written = run_module_writes('db_snapshot', args)
    assert not r.failed, r
    assert r['encrypted'] is True
    allowed = [r'%s/[^/]+\.partial/\.parts/(BEGUN|[a-z0-9_.-]+\.json(\.tmp)?)$' % root,
               r'%s/[^/]+\.partial/manifest\.json(\.tmp)?$' % root, r'%s/[^/]+$' % root,
               r'%s/[^/]+\.partial/database/database\.[a-z0-9.]+\.age$' % root]
    if args['engine'] == 'sqlite':
        # The backup API's consistent copy, beside the live database (docs/encryption.md).
        # The live database's own WAL index is written by any reader of a WAL database.
        allowed.append(r'^%s/\.db\.sqlite3\.djangoops-copy-[^/]+(-journal|-wal|-shm)?$'
                       % os.path.dirname(args['database']))
        allowed.append(r'^%s(-wal|-shm)$' % args['database'])
    # Credential files (libpq passfile, MySQL option file) in the call's private directory.
    allowed.append(r'^%s/djangoops-[^/]+/(pgpass|my-[a-z]+-[0-9]+\.cnf)$' % tempfile.gettempdir())
    # Python's tempfile probes its directory with an 8-character file holding b"blat".
    allowed.append(r'^%s/[a-z0-9_]{8}$' % tempfile.gettempdir())
    assert unexpected_writes(written, allowed) == [], unexpected_writes(written, allowed)
    assert [w for w in written if w.endswith('.age')], written
    path = os.path.join(root, r['snapshot_id'], r['files'][0]['path'])
    with open(path, 'rb') as f:
        data = f.read()
    assert data.startswith(AGE_HEADER) and MARKER.encode() not in data
    for dirpath, dummy, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), 'rb') as f:
                assert MARKER.encode() not in f.read(), name
    return r


def verify_without_key(root, sid):
    info = run_module('snapshot_info', dict(snapshot_root=root, snapshot_id=sid, verify=True))
    assert not info.failed and info['damaged'] == [] and info['snapshots'][0]['status'] == 'verified', info


def refuses(result, words):
    assert result.failed and words in result['msg'], result


# -- SQLite -------------------------------------------------------------------------------------

def test_sqlite(tmp_path, keys):
    db = str(tmp_path / 'app' / 'db.sqlite3')
    os.makedirs(os.path.dirname(db))
    sqlite_data.make_shop(db)
    con = __import__('sqlite3').connect(db)
    con.execute("UPDATE customer SET name = ? WHERE id = 1", (MARKER,))
    con.commit()
    con.close()
    root = str(tmp_path / 'snaps')
    expected = sqlite_data.content_digest(db)
    r = snapshot_writes_only_ciphertext(dict(engine='sqlite', database=db, snapshot_root=root, compression='none',
                                             table_stats='checksums', encrypt_recipients=[keys['backup']['public']]),
                                        root)
    assert not [f for f in os.listdir(os.path.dirname(db)) if 'djangoops-copy' in f], 'the copy is removed'
    verify_without_key(root, r['snapshot_id'])
    sqlite_data.mutate(db)
    mutated = sqlite_data.content_digest(db)
    base = dict(engine='sqlite', database=db, snapshot_root=root)
    refuses(run_module('db_restore', base), 'is encrypted with age; give decrypt_identity')
    refuses(run_module('db_restore', dict(base, decrypt_identity=keys['stranger']['path'])),
            'no identity matched any of the recipients')
    assert sqlite_data.content_digest(db) == mutated, 'a refused key must not touch the target'
    ok = run_module('db_restore', dict(base, decrypt_identity_content=keys['backup']['content']))
    assert not ok.failed and ok['tables_match'] is True and ok['encrypted'] is True, ok
    assert sqlite_data.content_digest(db) == expected
    assert keys['backup']['content'].splitlines()[-1] not in ok.stdout + ok.stderr


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.mark.parametrize('fmt, compression', [('custom', 'none'), ('plain', 'zstd')])
def test_postgresql(pg_server, pg_db, tmp_path, keys, fmt, compression):
    pg_data.make_shop(pg_server, pg_db)
    pg_server.sql("UPDATE public.customer SET name = %s WHERE id = 1", database=pg_db, params=(MARKER,))
    expected = pg_data.content_digest(pg_server, pg_db)
    root = str(tmp_path / 'snaps')
    args = dict(pg_server.conn_args(pg_db), snapshot_root=root, format=fmt, compression=compression,
                table_stats='checksums', encrypt_recipients=[keys['backup']['public'], keys['stranger']['public']])
    r = snapshot_writes_only_ciphertext(args, root)
    verify_without_key(root, r['snapshot_id'])
    pg_data.mutate(pg_server, pg_db)
    mutated = pg_data.content_digest(pg_server, pg_db)
    base = dict(pg_server.conn_args(pg_db), snapshot_root=root, terminate_connections=True)
    wrong = str(tmp_path / 'wrong')
    subprocess.run(['age-keygen', '-o', wrong], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    refuses(run_module('db_restore', dict(base, decrypt_identity=wrong)), 'cannot decrypt')
    refuses(run_module('db_restore', base), 'give decrypt_identity')
    assert pg_data.content_digest(pg_server, pg_db) == mutated, 'a refused key must not touch the target'
    # Either recipient's key decrypts.
    ok = run_module('db_restore', dict(base, decrypt_identity=keys['stranger']['path'], jobs=2))
    assert not ok.failed and ok['tables_match'] is True, ok
    assert pg_data.content_digest(pg_server, pg_db) == expected


def test_postgresql_directory_format_refuses_encryption(pg_server, pg_db, tmp_path, keys):
    r = run_module('db_snapshot', dict(pg_server.conn_args(pg_db), snapshot_root=str(tmp_path / 's'),
                                       format='directory', encrypt_recipients=[keys['backup']['public']]))
    refuses(r, 'format directory cannot be encrypted')
    assert not os.path.exists(str(tmp_path / 's')) or not os.listdir(str(tmp_path / 's'))


# -- MySQL/MariaDB ------------------------------------------------------------------------------

def test_mysql(mariadb_server, mysql_db, tmp_path, keys):
    mysql_data.make_shop(mariadb_server, mysql_db)
    mariadb_server.sql("UPDATE customer SET name = %s WHERE id = 1", database=mysql_db, params=(MARKER,))
    expected = mysql_data.content_digest(mariadb_server, mysql_db)
    root = str(tmp_path / 'snaps')
    args = dict(mariadb_server.conn_args(mysql_db), snapshot_root=root, compression='none', table_stats='checksums',
                encrypt_recipients=[keys['backup']['public']])
    r = snapshot_writes_only_ciphertext(args, root)
    verify_without_key(root, r['snapshot_id'])
    mysql_data.mutate(mariadb_server, mysql_db)
    mutated = mysql_data.content_digest(mariadb_server, mysql_db)
    base = dict(mariadb_server.conn_args(mysql_db), snapshot_root=root)
    refuses(run_module('db_restore', dict(base, decrypt_identity_content=keys['stranger']['content'])),
            'cannot decrypt')
    assert mysql_data.content_digest(mariadb_server, mysql_db) == mutated, 'a refused key must not touch the target'
    ok = run_module('db_restore', dict(base, decrypt_identity=keys['backup']['path']))
    assert not ok.failed and ok['tables_match'] is True, ok
    assert mysql_data.content_digest(mariadb_server, mysql_db) == expected


def test_bad_recipients_are_named(tmp_path, keys):
    db = str(tmp_path / 'db.sqlite3')
    sqlite_data.make_shop(db)
    root = str(tmp_path / 'snaps')
    r = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=root,
                                       encrypt_recipients=['age1notakey']))
    refuses(r, "invalid recipient 'age1notakey'")
    secret = [x for x in keys['backup']['content'].splitlines() if x.startswith('AGE-SECRET-KEY-')][0]
    r = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=root, encrypt_recipients=[secret]))
    refuses(r, 'holds a PRIVATE key')
    assert secret not in r['msg']
    assert not os.path.exists(root) or not os.listdir(root)


# -- media --------------------------------------------------------------------------------------

def test_media_archive(tmp_path, keys):
    media = make_rich_tree(str(tmp_path / 'media'))
    write(os.path.join(media, 'private', 'contract.txt'), (MARKER + '\n').encode() * 1000, mode=0o600)
    before = describe(media)
    root = str(tmp_path / 'snaps')
    r, written = run_module_writes('media_snapshot', dict(src=[media], snapshot_root=root,
                                                          encrypt_recipients=[keys['backup']['public']]))
    assert not r.failed and r['encrypted'] is True, r
    allowed = [r'%s/[^/]+\.partial/\.parts/(BEGUN|[a-z0-9_.-]+\.json(\.tmp)?)$' % root,
               r'%s/[^/]+\.partial/manifest\.json(\.tmp)?$' % root, r'%s/[^/]+$' % root,
               r'%s/[^/]+\.partial/media/archives/media\.tar\.(zst|gz)\.age$' % root,
               r'^%s/[a-z0-9_]{8}$' % tempfile.gettempdir()]
    assert unexpected_writes(written, allowed) == [], unexpected_writes(written, allowed)
    for dirpath, dummy, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), 'rb') as f:
                assert MARKER.encode() not in f.read(), name
    sid = r['snapshot_id']
    verify_without_key(root, sid)

    write(os.path.join(media, 'private', 'contract.txt'), b'tampered', mode=0o600)
    os.unlink(os.path.join(media, 'photos', '2024', 'cat.jpg'))
    changed = describe(media)
    base = dict(snapshot_root=root, snapshot_id=sid)
    refuses(run_module('media_restore', dict(base, decrypt_identity=keys['stranger']['path'])), 'cannot decrypt')
    refuses(run_module('media_restore', base), 'give decrypt_identity')
    assert describe(media) == changed, 'a refused key must not touch the target'
    ok = run_module('media_restore', dict(base, decrypt_identity=keys['backup']['path']))
    assert not ok.failed and ok['changed'] is True, ok
    assert ok['trees'][0]['target_verified'] is True
    assert describe(media) == before
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('.djangoops-restore-')], 'staging removed'


def _alter_every_way(media):
    """What a restore must undo, one of each kind."""
    cat = os.path.join(media, NAMES['plain'])
    st = os.stat(cat)
    with open(cat, 'r+b') as f:  # same size, same mtime: only a checksum comparison sees it
        f.write(b'X')
    os.utime(cat, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.unlink(os.path.join(media, NAMES['spaces']))
    write(os.path.join(media, 'new', 'upload.bin'), b'new' * 100)
    os.chmod(os.path.join(media, NAMES['script']), 0o700)
    os.utime(os.path.join(media, NAMES['unicode']), (1700000000, 1700000000))
    os.unlink(os.path.join(media, 'dangling'))
    os.symlink('elsewhere', os.path.join(media, 'dangling'))
    os.rmdir(os.path.join(media, 'empty', 'nested-empty'))
    write(os.path.join(media, 'empty', 'nested-empty'), b'a file where a directory was')
    os.chown(os.path.join(media, NAMES['backslash']), 4321, 4321)


def test_media_check_mode_unpacks_nothing_and_says_what_rsync_would(tmp_path, keys):
    """Check mode of an encrypted media part reads the decrypted stream as a tar archive (nothing written, no
    room needed beside the target) and reports what the restore would change - the same paths, in the same
    way, as the rsync dry run of the same tree snapshotted unencrypted."""
    media = make_rich_tree(str(tmp_path / 'media'))
    enc_root, plain_root = str(tmp_path / 'snaps'), str(tmp_path / 'plain')
    enc = run_module('media_snapshot', dict(src=[media], snapshot_root=enc_root,
                                            encrypt_recipients=[keys['backup']['public']]))
    plain = run_module('media_snapshot', dict(src=[media], snapshot_root=plain_root))
    assert not enc.failed and not plain.failed, (enc, plain)
    untouched = run_module('media_restore', dict(snapshot_root=enc_root, snapshot_id=enc['snapshot_id'],
                                                 decrypt_identity=keys['backup']['path']), check=True)
    assert not untouched.failed and untouched['changed'] is False, untouched
    _alter_every_way(media)
    altered = describe(media)
    for compare in ('quick', 'checksum'):
        expected = run_module('media_restore', dict(snapshot_root=plain_root, snapshot_id=plain['snapshot_id'],
                                                    compare=compare), check=True, diff=True)
        r, written = run_module_writes('media_restore', dict(
            snapshot_root=enc_root, snapshot_id=enc['snapshot_id'], decrypt_identity=keys['backup']['path'],
            compare=compare), check=True, diff=True)
        assert not r.failed and not expected.failed, (r, expected)
        assert unexpected_writes(written, [r'^%s/[a-z0-9_]{8}$' % tempfile.gettempdir()]) == [], written
        mine, theirs = r['trees'][0], expected['trees'][0]
        assert (mine["created"], mine["updated"], mine["deleted"]) == (
            theirs['created'], theirs['updated'], theirs['deleted']), (mine, theirs)
        assert r['changed'] is True
        # cat.jpg and photos/hardlinked-cat.jpg are one file (hard links): rsync names the group by its last
        # path, the tar stream by its first.
        paths = sorted(line.split(' (')[0] for line in r['diff']['prepared'].splitlines())
        rsync_paths = sorted(line.split(' (')[0].replace('photos/hardlinked-cat.jpg', NAMES['plain'])
                             for line in expected['diff']['prepared'].splitlines())
        assert paths == rsync_paths
        sees_content = '~ %s/%s' % (media, NAMES['plain'])
        assert any(line.startswith(sees_content) for line in r['diff']['prepared'].splitlines()) == (
            compare == 'checksum'), r['diff']['prepared']
    assert describe(media) == altered, 'check mode changes nothing'
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('.djangoops-restore-')]


# -- Django fixtures ----------------------------------------------------------------------------

def test_django_fixture(shop_factory, tmp_path, keys):  # noqa: F811
    shop = shop_factory('5.2', 'sqlite')
    assert not shop.run('django_migrate').failed
    shop.manage('seed_demo', '--products', '20', '--orders', '5', '--customers', '2')
    before = shop.digest()
    root = str(tmp_path / 'snaps')
    r = shop.run('django_dumpdata', snapshot_root=root, encrypt_recipients=[keys['backup']['public']])
    assert not r.failed, r
    path = os.path.join(root, r['snapshot_id'], r['files'][0]['path'])
    assert path.endswith('.zst.age') or path.endswith('.gz.age'), path
    with open(path, 'rb') as f:
        assert f.read(22) == AGE_HEADER
    verify_without_key(root, r['snapshot_id'])
    shop.manage('seed_demo', '--products', '30', '--orders', '7', '--seed', '7')
    drifted = shop.digest()
    refuses(shop.run('django_loaddata', snapshot_root=root, flush=True,
                     decrypt_identity=keys['stranger']['path']), 'cannot decrypt')
    assert shop.digest() == drifted, 'a refused key must not touch the database'
    ok = shop.run('django_loaddata', snapshot_root=root, flush=True, decrypt_identity=keys['backup']['path'])
    assert not ok.failed and ok['counts_match'] is True, ok
    assert shop.digest() == before
