# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_snapshot / db_restore / snapshot_info on real SQLite files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from support.disk import assert_full_disk_fails_cleanly, small_tmpfs
from support.modules import assert_exclusions_refused, run_module
from support.sqlite_data import content_digest, make_shop, mutate, schema


@pytest.fixture
def shop(tmp_path):
    path = str(tmp_path / 'app' / 'db.sqlite3')
    os.makedirs(os.path.dirname(path))
    make_shop(path)
    return path


def snap(db, root, **kw):
    args = dict(engine='sqlite', database=db, snapshot_root=root)
    args.update(kw)
    return run_module('db_snapshot', args)


def restore(db, root, **kw):
    args = dict(engine='sqlite', database=db, snapshot_root=root)
    args.update(kw)
    return run_module('db_restore', args)


@pytest.mark.parametrize('compression', ['none', 'gzip', 'zstd'])
def test_round_trip_is_exact(shop, snapshot_root, compression):
    before_schema, before_rows = schema(shop), content_digest(shop)
    os.chmod(shop, 0o640)
    r = snap(shop, snapshot_root, compression=compression, table_stats='checksums')
    assert not r.failed, r
    assert r['changed'] is True and r['finalized'] is True
    assert r['compression'] == compression
    assert r['tables']['customer']['rows'] == 200 and r['tables']['customer']['checksum']
    snapdir = os.path.join(snapshot_root, r['snapshot_id'])
    assert os.path.isfile(os.path.join(snapdir, 'manifest.json'))
    # 0700 directories, 0600 files, everywhere.
    for dirpath, dirs, files in os.walk(snapshot_root):
        assert os.stat(dirpath).st_mode & 0o777 == 0o700, dirpath
        for f in files:
            assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600, f
        del dirs

    mutate(shop)
    assert schema(shop) != before_schema

    r2 = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert not r2.failed, r2
    assert r2['changed'] is True
    assert r2['tables_compared'] == 'checksums' and r2['tables_match'] is True
    assert schema(shop) == before_schema
    assert content_digest(shop) == before_rows
    assert os.stat(shop).st_mode & 0o777 == 0o640, 'restore keeps the target file mode'
    assert not [f for f in os.listdir(os.path.dirname(shop)) if '.restore-' in f]


def test_check_mode_writes_nothing(shop, snapshot_root):
    r = snap(shop, snapshot_root)
    assert not r.failed
    before = content_digest(shop)
    mutate(shop)
    mutated = content_digest(shop)
    r_check = run_module('db_snapshot', dict(engine='sqlite', database=shop, snapshot_root=snapshot_root + '2'),
                         check=True)
    assert not r_check.failed and r_check['changed'] is True
    assert not os.path.exists(snapshot_root + '2')
    r_restore = run_module('db_restore', dict(engine='sqlite', database=shop, snapshot_root=snapshot_root,
                                              snapshot_id=r['snapshot_id']), check=True, diff=True)
    assert not r_restore.failed, r_restore
    assert content_digest(shop) == mutated != before
    # the diff: tables now (shipment added, product dropped by mutate) against those of the snapshot
    now, then = r_restore['diff']['before'].splitlines(), r_restore['diff']['after'].splitlines()
    assert now == sorted(t for t in content_digest(shop) if t != 'sqlite_sequence') and then == sorted(r['tables']), r_restore['diff']
    assert 'shipment' in now and 'shipment' not in then and 'product' in then and 'product' not in now
    # a target that does not exist yet has no tables; a snapshot without statistics lists none before
    bare = snap(shop, snapshot_root + '-bare', table_stats='none')
    other = os.path.join(os.path.dirname(shop), 'new.sqlite3')
    r_new = run_module('db_restore', dict(engine='sqlite', database=other, snapshot_root=snapshot_root + '-bare',
                                          create=True), check=True, diff=True)
    assert r_new['diff']['before'] == '' and 'recorded no table statistics' in r_new['diff']['after'], r_new
    assert not os.path.exists(other) and bare['tables'] == {}


def test_restore_latest_into_another_file(shop, snapshot_root, tmp_path):
    snap(shop, snapshot_root, labels={'release': 'v1'})
    r2 = snap(shop, snapshot_root, labels={'release': 'v2'}, table_stats='checksums')
    other = str(tmp_path / 'elsewhere' / 'copy.sqlite3')
    r = restore(other, snapshot_root, snapshot_id='latest')
    assert r.failed and 'does not exist' in r['msg'] and 'create: true' in r['msg']
    r = restore(other, snapshot_root, create=True)
    assert not r.failed, r
    assert r['snapshot_id'] == r2['snapshot_id']
    assert content_digest(other) == content_digest(shop)
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root))
    assert [s['labels']['release'] for s in info['snapshots']] == ['v1', 'v2']
    assert info['latest'] == r2['snapshot_id']
    assert info['snapshots'][0]['parts']['database']['engine'] == 'sqlite'


def test_snapshot_info_reports_an_unreadable_manifest_as_damaged(shop, snapshot_root):
    good = snap(shop, snapshot_root)
    bad = snap(shop, snapshot_root)
    assert not good.failed and not bad.failed
    manifest = os.path.join(snapshot_root, bad['snapshot_id'], 'manifest.json')
    with open(manifest, 'r+b') as f:  # bit rot in the manifest itself
        f.seek(5)
        f.write(b'\x00\xff')
    before = sorted(os.listdir(snapshot_root)), open(manifest, 'rb').read()
    for check in (False, True):  # read-only: check mode runs the same
        info = run_module('snapshot_info', dict(snapshot_root=snapshot_root, verify=True), check=check)
        assert not info.failed and info['changed'] is False, info
        assert [x['id'] for x in info['snapshots']] == [good['snapshot_id']]
        assert info['snapshots'][0]['status'] == 'verified'
        assert info['damaged'] == [bad['snapshot_id']], info
        assert [i['name'] for i in info['incomplete']] == [bad['snapshot_id']]
    assert (sorted(os.listdir(snapshot_root)), open(manifest, 'rb').read()) == before
    # without verify nothing is re-read: the entry is listed as incomplete only
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root))
    assert info['damaged'] == [] and [i['name'] for i in info['incomplete']] == [bad['snapshot_id']]


def test_a_symlinked_target_is_restored_through_its_link(shop, snapshot_root, tmp_path):
    # A deploy keeps the database in a shared directory and links it into each release.
    shared = str(tmp_path / 'shared' / 'db.sqlite3')
    os.makedirs(os.path.dirname(shared))
    os.rename(shop, shared)
    os.symlink(shared, shop)
    r = snap(shop, snapshot_root)
    assert not r.failed, r
    original = content_digest(shared)
    mutate(shop)
    res = restore(shop, snapshot_root)
    assert not res.failed and res['tables_match'] is True, res
    assert os.path.islink(shop) and os.readlink(shop) == shared, 'the link is kept'
    assert content_digest(shared) == original, 'the file it points to is restored'
    assert any('is a symbolic link' in c for c in res['commands']), res['commands']


def test_a_restore_as_another_user_keeps_the_owner_or_refuses(world_dir):
    app, root = os.path.join(world_dir, 'app'), os.path.join(world_dir, 'snaps')
    os.mkdir(app)
    os.mkdir(root)
    db = os.path.join(app, 'db.sqlite3')
    make_shop(db)
    os.chmod(db, 0o640)
    for path in (app, root, db):
        shutil.chown(path, 'nobody', 'nogroup')
    r = run_module('db_snapshot', dict(engine='sqlite', database=db, snapshot_root=root), user='nobody')
    assert not r.failed, r
    original = content_digest(db)
    mutate(db)
    res = run_module('db_restore', dict(engine='sqlite', database=db, snapshot_root=root), user='nobody')
    assert not res.failed and res['tables_match'] is True, res
    st = os.stat(db)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o640)
    assert content_digest(db) == original
    # The application's user owns the file; the deploy user may write the directory, not give files away.
    mutate(db)
    shutil.chown(db, 'www-data', 'www-data')
    changed = content_digest(db)
    for check in (True, False):
        res = run_module('db_restore', dict(engine='sqlite', database=db, snapshot_root=root), user='nobody',
                         check=check)
        assert res.failed, res
        assert ('restoring %s as nobody:nogroup (65534:65534) would change its owner from www-data:www-data (33:33)'
                % db) in res['msg'], res['msg']
        st = os.stat(db)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (33, 33, 0o640), 'the target is untouched'
        assert content_digest(db) == changed
        assert sorted(os.listdir(app)) == ['db.sqlite3'], 'no temporary file is left beside it'


def test_a_damaged_target_is_replaced(shop, snapshot_root):
    r = snap(shop, snapshot_root)
    assert not r.failed, r
    original = content_digest(shop)
    with open(shop, 'wb') as f:  # no longer an SQLite database at all
        f.write(b'garbage ' * 4096)
    res = restore(shop, snapshot_root)
    assert not res.failed and res['tables_match'] is True, res
    assert content_digest(shop) == original
    warnings = [w['event']['msg'] if isinstance(w, dict) else w for w in res.get('warnings', [])]  # 2.19: objects
    assert any('could not be read' in w and 'the restore replaces it' in w for w in warnings), res
    # what a snapshot of a damaged file says (the restore's tolerance is the restore's alone)
    with open(shop, 'wb') as f:
        f.write(b'garbage ' * 4096)
    bad = snap(shop, snapshot_root + '2')
    assert bad.failed and 'cannot read SQLite database %s' % shop in bad['msg'], bad


def test_virtual_tables_are_left_to_their_shadow_tables(tmp_path, snapshot_root):
    db = str(tmp_path / 'search.sqlite3')
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE page (id INTEGER PRIMARY KEY, body TEXT)')
    con.executemany('INSERT INTO page(body) VALUES (?)', [('text %d' % i,) for i in range(50)])
    con.execute('CREATE VIRTUAL TABLE page_fts USING fts5(body)')
    con.execute('INSERT INTO page_fts(body) SELECT body FROM page')
    # a virtual table of a module this Python lacks, as SpatiaLite's SpatialIndex is without SpatiaLite
    con.execute('PRAGMA writable_schema = ON')
    con.execute("INSERT INTO sqlite_master(type, name, tbl_name, rootpage, sql) VALUES ('table', 'SpatialIndex', "
                "'SpatialIndex', 0, 'CREATE VIRTUAL TABLE SpatialIndex USING VirtualSpatialIndex()')")
    con.commit()
    con.close()
    r = snap(db, snapshot_root, table_stats='checksums')
    assert not r.failed, r
    assert 'page_fts' not in r['tables'] and 'SpatialIndex' not in r['tables'], sorted(r['tables'])
    assert r['tables']['page']['rows'] == 50 and r['tables']['page_fts_content']['rows'] == 50, r['tables']
    with sqlite3.connect(db) as con:
        con.execute('DELETE FROM page_fts')
    res = restore(db, snapshot_root)
    assert not res.failed and res['tables_match'] is True, res
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM page_fts WHERE page_fts MATCH 'text'").fetchone()[0] == 50


def flip_a_byte(path):
    """Flip one byte in the middle of the file (its size stays); returns ``path``."""
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    return path


def test_altered_snapshot_is_refused_and_target_untouched(shop, snapshot_root):
    r = snap(shop, snapshot_root, compression='none')
    mutate(shop)
    mutated = content_digest(shop)
    dump = flip_a_byte(os.path.join(snapshot_root, r['snapshot_id'], r['files'][0]['path']))
    info = run_module('snapshot_info', dict(snapshot_root=snapshot_root, verify=True))
    assert info['damaged'] == [r['snapshot_id']]
    assert 'sha256' in info['snapshots'][0]['problems'][0]
    res = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert res.failed and 'checksum verification' in res['msg'] and 'refusing' in res['msg']
    assert content_digest(shop) == mutated

    os.truncate(dump, 100)
    res = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert res.failed and 'size 100' in res['msg']
    os.unlink(dump)
    res = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert res.failed and 'missing' in res['msg']
    assert content_digest(shop) == mutated


def test_a_restore_told_the_checksums_were_verified_reads_no_file_first(shop, snapshot_root):
    """verify_checksums=false, for a caller that verified the whole snapshot just before (the restore role): the
    restore checks each file's presence and size but hashes none. A compressed copy altered in place afterwards
    still fails in the decompressor, before the target is replaced; the default still refuses it by its sha256."""
    original = content_digest(shop)
    r = snap(shop, snapshot_root, compression='zstd')
    mutate(shop)
    res = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'], verify_checksums=False)
    assert not res.failed and res['checksums_verified'] is False and res['tables_match'] is True, res
    assert content_digest(shop) == original
    assert restore(shop, snapshot_root, snapshot_id=r['snapshot_id'])['checksums_verified'] is True

    mutate(shop)
    mutated = content_digest(shop)
    dump = flip_a_byte(os.path.join(snapshot_root, r['snapshot_id'], r['files'][0]['path']))
    res = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'], verify_checksums=False)
    assert res.failed and 'zstd' in res['msg'] and res['target_changed'] is False, res
    assert content_digest(shop) == mutated
    res = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert res.failed and 'checksum verification' in res['msg'], res['msg']

    os.truncate(dump, 100)
    res = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'], verify_checksums=False)
    assert res.failed and 'size 100, manifest says' in res['msg'], res['msg']
    assert content_digest(shop) == mutated


@pytest.mark.parametrize('bad_id', ['../etc', 'a/../../b', '..', '/etc/passwd', 'x/y', 'latest.partial', ''])
def test_ids_that_escape_are_refused(shop, snapshot_root, bad_id):
    r = snap(shop, snapshot_root, snapshot_id=bad_id) if bad_id else None
    if r is not None:
        assert r.failed and 'invalid snapshot id' in r['msg'] and repr(bad_id) in r['msg']
    r = restore(shop, snapshot_root, snapshot_id=bad_id or '.')
    assert r.failed
    assert 'invalid snapshot id' in r['msg']
    assert not os.path.exists('/etc/passwd.partial')


def test_snapshot_path_outside_root_is_refused(shop, snapshot_root, tmp_path):
    r = snap(shop, snapshot_root)
    other_root = str(tmp_path / 'other')
    snap(shop, other_root)
    outside = os.path.join(other_root, os.listdir(other_root)[0])
    res = restore(shop, snapshot_root, snapshot_path=outside)
    assert res.failed and 'not a snapshot directory directly under snapshot_root' in res['msg']
    res = restore(shop, snapshot_root, snapshot_path=os.path.join(snapshot_root, r['snapshot_id']))
    assert not res.failed, res


def test_missing_database_and_bad_paths(tmp_path, snapshot_root):
    r = snap(str(tmp_path / 'nope.sqlite3'), snapshot_root)
    assert r.failed and 'nope.sqlite3 does not exist' in r['msg']
    r = snap('relative.sqlite3', snapshot_root)
    assert r.failed and "absolute path, got 'relative.sqlite3'" in r['msg']
    r = snap(str(tmp_path / 'x.sqlite3'), 'relative/root')
    assert r.failed and 'snapshot_root must be an absolute path' in r['msg']
    notdb = tmp_path / 'not-a-db.sqlite3'
    notdb.write_bytes(b'this is not a database' * 100)
    r = snap(str(notdb), snapshot_root)
    assert r.failed and 'not-a-db.sqlite3' in r['msg']
    assert not os.path.exists(snapshot_root) or not os.listdir(snapshot_root)


def test_unwritable_root_is_refused_before_writing(shop, tmp_path):
    with small_tmpfs(str(tmp_path / 'ro'), size='1m', readonly=True) as ro:
        r = snap(shop, ro)
        assert r.failed and ro in r['msg'] and 'not writable' in r['msg']


def _fill_big(path, mib):
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE blob_data (id INTEGER PRIMARY KEY, payload BLOB)')
    chunk = os.urandom(1024 * 1024)
    for i in range(mib):
        con.execute('INSERT INTO blob_data(payload) VALUES (?)', (chunk[i:] + chunk[:i],))
    con.commit()
    con.close()


def test_full_disk_leaves_nothing_that_looks_complete(tmp_path):
    db = str(tmp_path / 'big.sqlite3')
    _fill_big(db, 24)
    with small_tmpfs(str(tmp_path / 'small'), size='8m') as small:
        root = os.path.join(small, 'snaps')
        r = snap(db, root, compression='none')
        assert r.failed and 'not enough free space' in r['msg'] and r['preflight']['free_bytes'] <= 8 * 2 ** 20
        assert not os.path.exists(root) or os.listdir(root) == []
        assert_full_disk_fails_cleanly(lambda where, **kw: snap(db, where, compression='none', **kw), root,
                                       says=('No space left on device', 'full'))
    # and the next snapshot, with room, works (at the level asked for)
    r = snap(db, str(tmp_path / 'roomy'), compression='zstd', compression_level=19)
    assert not r.failed, r
    assert [c for c in r['commands'] if c.split()[0].endswith('zstd')][0].split()[1:4] == ['-q', '-c', '-19'], r


WRITER = r'''
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
con.execute('PRAGMA journal_mode=WAL')
con.execute('CREATE TABLE IF NOT EXISTS ledger_a (id INTEGER PRIMARY KEY, amount INTEGER, pad BLOB)')
con.execute('CREATE TABLE IF NOT EXISTS ledger_b (id INTEGER PRIMARY KEY, amount INTEGER)')
print('ready', flush=True)
i = 0
while True:
    # one transaction moves an amount from a to b: a consistent copy always has sum(a) + sum(b) == 0
    con.execute('BEGIN IMMEDIATE')
    con.execute('INSERT INTO ledger_a(amount, pad) VALUES (?, zeroblob(2048))', (-i,))
    con.execute('INSERT INTO ledger_b(amount) VALUES (?)', (i,))
    con.execute('COMMIT')
    i += 1
'''


def test_snapshot_while_application_keeps_writing(tmp_path, snapshot_root):
    db = str(tmp_path / 'busy.sqlite3')
    _fill_big(db, 64)
    writer = subprocess.Popen([sys.executable, '-c', WRITER, db], stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == b'ready'
        time.sleep(0.5)
        r = snap(db, snapshot_root, table_stats='checksums', compression='none')
        assert not r.failed, r
        time.sleep(0.3)
        assert writer.poll() is None, 'the application was not blocked or killed'
    finally:
        writer.kill()
        writer.wait()
    copy = os.path.join(snapshot_root, r['snapshot_id'], 'database', 'database.sqlite3')
    con = sqlite3.connect('file:%s?mode=ro&immutable=1' % copy, uri=True)
    assert con.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    a = con.execute('SELECT count(*), coalesce(sum(amount), 0) FROM ledger_a').fetchone()
    b = con.execute('SELECT count(*), coalesce(sum(amount), 0) FROM ledger_b').fetchone()
    con.close()
    assert a[0] == b[0] > 0 and a[1] + b[1] == 0, (a, b)
    assert r['tables']['ledger_a']['rows'] == a[0]


def test_manifest_records_versions_timings_and_commands(shop, snapshot_root):
    r = snap(shop, snapshot_root, labels={'release': '1.2.3', 'pinned': 'yes'})
    with open(os.path.join(snapshot_root, r['snapshot_id'], 'manifest.json'), encoding='utf-8') as f:
        m = json.load(f)
    part = m['parts']['database']
    assert m['id'] == r['snapshot_id'] and m['format_version'] == 1
    assert m['labels'] == {'release': '1.2.3', 'pinned': 'yes'}
    assert part['engine'] == 'sqlite' and part['server_version'] == sqlite3.sqlite_version
    assert part['seconds'] >= 0 and part['started_at'] and m['completed_at'] >= m['created_at']
    assert part['files'][0]['sha256'] == r['files'][0]['sha256']
    assert any('integrity_check' in c for c in part['commands'])
    assert part['tables']['order_item']['rows'] == 1200


def test_db_info_matches_the_snapshot_and_runs_read_only_queries(shop, snapshot_root):
    r = snap(shop, snapshot_root, table_stats='checksums')
    info = run_module('db_info', dict(engine='sqlite', database=shop, table_stats='checksums',
                                      queries=['SELECT count(*), sum(quantity) FROM order_item',
                                               'SELECT image FROM product WHERE id = 2']))
    assert not info.failed, info
    assert info['changed'] is False and info['database_exists'] is True
    assert info['tables'] == r['tables']
    assert info['query_results'][0] == [[1200, sum(i % 9 + 1 for i in range(1200))]]
    assert info['query_results'][1] == [[(bytes(range(256)) * 2).hex()]]
    bad = run_module('db_info', dict(engine='sqlite', database=shop, queries=['DELETE FROM order_item']))
    assert bad.failed and 'readonly' in bad['msg'] and 'DELETE FROM order_item' in bad['msg']
    con = sqlite3.connect(shop)
    assert con.execute('SELECT count(*) FROM order_item').fetchone()[0] == 1200
    con.close()
    missing = run_module('db_info', dict(engine='sqlite', database=shop + '.nope', table_stats='counts'))
    assert missing.failed and 'does not exist' in missing['msg']


SECRET = b'session-key-3f9c1e7d2b'


def _add_sessions(path, rows=500):
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE django_session (session_key TEXT PRIMARY KEY, session_data TEXT NOT NULL)')
    con.executemany('INSERT INTO django_session VALUES (?, ?)',
                    [('%s-%d' % (SECRET.decode(), i), 'x' * 300) for i in range(rows)])
    con.commit()
    con.close()


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_exclude_table_data_overwrites_the_rows_in_the_copy(shop, snapshot_root, compression):
    _add_sessions(shop)
    before_schema, before_rows = schema(shop), content_digest(shop)
    r = snap(shop, snapshot_root, compression=compression, table_stats='checksums',
             exclude_table_data=['django_session'])
    assert not r.failed, r.get('msg')
    assert r['excluded_table_data'] == ['django_session']
    assert r['tables']['django_session'] == {'rows': 0, 'checksum': '0' * 16, 'data_excluded': True}
    assert r['tables']['customer']['rows'] == 200
    # not one byte of the sessions is left in the snapshot, not even in its free pages
    data = b''
    for entry in r['files']:
        with open(os.path.join(snapshot_root, r['snapshot_id'], entry['path']), 'rb') as f:
            data = f.read()
        if compression == 'zstd':
            data = subprocess.run(['zstd', '-dc'], input=data, stdout=subprocess.PIPE, check=True).stdout
    assert len(data) > 100000 and SECRET not in data
    live = b''
    for path in (shop, shop + '-wal'):
        if os.path.exists(path):
            with open(path, 'rb') as f:
                live += f.read()
    assert SECRET in live, 'the live database keeps its rows'
    assert sorted(os.listdir(os.path.join(snapshot_root, r['snapshot_id'], 'database'))) == \
        [os.path.basename(e['path']) for e in r['files']], 'no -wal or -journal left beside the copy'

    mutate(shop)
    r2 = restore(shop, snapshot_root, snapshot_id=r['snapshot_id'])
    assert not r2.failed, r2.get('msg')
    assert r2['tables_match'] is True
    assert schema(shop) == before_schema
    after = content_digest(shop)
    assert after.pop('django_session') == hashlib.sha256(b'').hexdigest(), 'no rows'
    before_rows.pop('django_session')
    assert after == before_rows


def test_exclude_table_data_refuses_what_it_cannot_leave_out(shop, snapshot_root):
    con = sqlite3.connect(shop)
    con.executescript('CREATE TABLE note (body TEXT); '
                      'CREATE TRIGGER note_gone AFTER DELETE ON note BEGIN SELECT 1; END;')
    con.close()
    assert_exclusions_refused(dict(engine='sqlite', database=shop, snapshot_root=snapshot_root), [
        (['nosuch'], False, 'exclude_table_data: there is no table nosuch in SQLite database %s' % shop),
        (['customer'], False, 'the rows of customer are referenced by a foreign key (column customer_id) of '
                              'order, whose rows are kept'),
        (['note'], True, 'SQLite table note has the trigger note_gone, which deleting its rows from the copy '
                         'would fire'),
    ])
