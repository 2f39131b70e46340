# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the SQLite engine.

Snapshot: the online backup API copying every page in ONE step. A stepped backup (and the sqlite3
CLI's ``.backup``) restarts whenever the application writes and may never finish under a steady
writer; one step holds a read transaction for the copy, which in WAL mode does not block writers,
so the copy is a consistent state and the application keeps running. The copy then has to pass
``PRAGMA integrity_check`` before it counts. The check (and the table statistics) run while a
second thread hashes or compresses the copy: both only read it, and on two cores that takes the
file pass out of the wall time.

Restore: the file is rebuilt beside the target, checked, fsynced, given the target's owner and
mode, and renamed over it; stale ``-wal``/``-shm`` files are removed so they can never be replayed
onto the restored database.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sqlite3
import struct
import tempfile
from urllib.parse import quote

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (
    Engine, EngineError, RowDigest, alongside, check_compression, encryption_record, input_chain, json_value,
    output_chain, resolve_excluded_tables)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import run_pipeline

DUMP_NAME = 'database.sqlite3'
# Virtual tables are left out: their rows live in shadow tables, which are listed (FTS5's name_data, ...), and a
# virtual table whose module this Python lacks (SpatiaLite's SpatialIndex) cannot even be counted.
_TABLES_SQL = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
               "AND COALESCE(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name")


def _ro_uri(path, immutable=False):
    return 'file:%s?mode=ro%s' % (quote(os.path.abspath(path)), '&immutable=1' if immutable else '')


def _quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def _encode_value(v):
    """A type-tagged, unambiguous encoding of one SQLite value."""
    if v is None:
        return b'N'
    if isinstance(v, int):
        return b'I' + str(v).encode()
    if isinstance(v, float):
        return b'R' + struct.pack('>d', v)
    if isinstance(v, bytes):
        return b'B' + struct.pack('>Q', len(v)) + v
    data = v.encode('utf-8', 'surrogatepass')
    return b'T' + struct.pack('>Q', len(data)) + data


def _remove_sidecars(path, suffixes=('-wal', '-shm', '-journal')):
    """Remove the journal files SQLite may leave beside ``path`` (and ``path`` itself with suffix '')."""
    for suffix in suffixes:
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def _owner_name(uid, gid):
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return '%s:%s (%d:%d)' % (user, group, uid, gid)


def _check_ownership_kept(target):
    """The restore writes a new file and renames it over ``target``; the new file belongs to whoever runs
    the restore. Root gives it the target's owner and group; anyone else can keep only their own user and
    a group they belong to. Refuse, naming both, rather than leave the application a database it may no
    longer be allowed to write."""
    euid = os.geteuid()
    if euid == 0:
        return
    st = os.stat(target)
    if st.st_uid == euid and (st.st_gid == os.getegid() or st.st_gid in os.getgroups()):
        return
    raise EngineError('restoring %s as %s would change its owner from %s: the restore replaces the file, and only '
                      'root can give it back to its owner; run it as root (become: true) or as the file\'s owner'
                      % (target, _owner_name(euid, os.getegid()), _owner_name(st.st_uid, st.st_gid)))


def _check_integrity(path):
    con = sqlite3.connect(_ro_uri(path, immutable=True), uri=True)
    try:
        rows = [r[0] for r in con.execute('PRAGMA integrity_check')]
    except sqlite3.DatabaseError as e:  # not a database at all ("file is not a database")
        rows = [str(e)]
    finally:
        con.close()
    if rows != ['ok']:
        raise EngineError('the SQLite copy %s failed PRAGMA integrity_check: %s' % (path, '; '.join(rows[:20])))


def sqlite_table_stats(path, mode, immutable=False):
    """Row counts (and checksums) of every user table of the database file at ``path``."""
    if mode == 'none':
        return {}
    con = sqlite3.connect(_ro_uri(path, immutable=immutable), uri=True)
    con.text_factory = bytes  # never fail on text that is not valid UTF-8; hash the stored bytes
    try:
        names = [r[0].decode('utf-8', 'replace') for r in con.execute(_TABLES_SQL)]
        stats = {}
        for name in names:
            if mode == 'counts':
                rows = con.execute('SELECT count(*) FROM %s' % _quote_ident(name)).fetchone()[0]
                stats[name] = {'rows': rows, 'checksum': None}
                continue
            digest = RowDigest()
            cur = con.execute('SELECT * FROM %s' % _quote_ident(name))
            while True:
                batch = cur.fetchmany(2000)
                if not batch:
                    break
                for row in batch:
                    digest.add(b'\x1f'.join(_encode_value(v) for v in row))
            stats[name] = {'rows': digest.rows, 'checksum': digest.hexdigest()}
        return stats
    finally:
        con.close()


class SQLiteEngine(Engine):
    name = 'sqlite'
    formats = ('sqlite3',)
    default_format = 'sqlite3'

    def _path(self, database=None):
        path = database or self.conn.get('database')
        if not path:
            raise EngineError('engine sqlite needs database: the path of the SQLite file')
        if not os.path.isabs(path):
            raise EngineError('SQLite database must be an absolute path, got %r' % path)
        return path

    def _file_facts(self, database):
        """What the file alone tells, without opening it as a database."""
        path = self._path(database)
        version = sqlite3.sqlite_version
        return {'server_version': version, 'client_version': version, 'database': path,
                'database_exists': os.path.isfile(path), 'database_bytes': 0}

    def probe(self, database=None):
        facts = self._file_facts(database)
        path = facts['database']
        if not facts['database_exists']:
            return facts
        try:
            con = sqlite3.connect(_ro_uri(path), uri=True, timeout=self.conn.get('connect_timeout') or 10)
            try:
                facts['journal_mode'] = con.execute('PRAGMA journal_mode').fetchone()[0]
                page_size = con.execute('PRAGMA page_size').fetchone()[0]
                page_count = con.execute('PRAGMA page_count').fetchone()[0]
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            raise EngineError('cannot read SQLite database %s: %s' % (path, e))
        facts['database_bytes'] = page_size * page_count
        return facts

    def probe_restore_target(self, database=None):
        """As probe, but a file that is no readable SQLite database is a target like any other: replacing a
        damaged database is what a restore is for (``unreadable`` says why it could not be read). Refuses a
        target whose owner or group the restore could not keep (before anything is touched)."""
        try:
            facts = self.probe(database)
        except EngineError as e:
            facts = self._file_facts(database)
            if not facts['database_exists']:
                raise
            facts = dict(facts, database_bytes=os.path.getsize(facts['database']), unreadable=str(e))
        if facts['database_exists']:
            _check_ownership_kept(os.path.realpath(facts['database']))
        return facts

    def estimate_dump_bytes(self, probe, opts):
        size = probe.get('database_bytes') or 0
        # The uncompressed copy exists in full before it is compressed.
        return int(size * (1.6 if opts.get('compression', 'none') != 'none' else 1.05))

    def table_stats(self, mode, database=None):
        return sqlite_table_stats(self._path(database), mode)

    def table_names(self, database=None):
        path = self._path(database)
        con = sqlite3.connect(_ro_uri(path), uri=True, timeout=self.conn.get('connect_timeout') or 10)
        try:
            return sorted(r[0] for r in con.execute(_TABLES_SQL))
        except sqlite3.DatabaseError as e:
            raise EngineError('cannot read the table names of SQLite database %s: %s' % (path, e))
        finally:
            con.close()

    def exclusions(self, names, database=None):
        path = self._path(database)
        con = sqlite3.connect(_ro_uri(path), uri=True, timeout=self.conn.get('connect_timeout') or 10)
        try:
            tables = [r[0] for r in con.execute(_TABLES_SQL)]
            by_lower = dict((t.lower(), t) for t in tables)  # SQLite matches names without regard to case
            keys = []
            for table in tables:
                for row in con.execute('PRAGMA foreign_key_list(%s)' % _quote_ident(table)):
                    keys.append((table, 'a foreign key (column %s)' % row[3], by_lower.get(row[2].lower(), row[2])))
            triggers = con.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' ORDER BY 1").fetchall()
        except sqlite3.DatabaseError as e:
            raise EngineError('cannot read the tables of SQLite database %s for exclude_table_data: %s' % (path, e))
        finally:
            con.close()
        chosen = resolve_excluded_tables(names, dict((t, (t,)) for t in tables), keys, 'SQLite database %s' % path)
        for trigger, table in triggers:
            if by_lower.get(table.lower()) in chosen:
                raise EngineError('exclude_table_data: SQLite table %s has the trigger %s, which deleting its rows from '
                                  'the copy would fire; keep the rows of %s' % (table, trigger, table))
        return chosen

    def run_queries(self, queries, database=None):
        path = self._path(database)
        # mode=ro: the file cannot be changed through this connection, whatever the SQL says.
        con = sqlite3.connect(_ro_uri(path), uri=True, timeout=self.conn.get('connect_timeout') or 10)
        try:
            out = []
            for sql in queries:
                try:
                    rows = con.execute(sql).fetchall()
                except sqlite3.Error as e:
                    raise EngineError('query failed on %s: %s: %s' % (path, e, sql))
                out.append([[json_value(v) for v in row] for row in rows])
            return out
        finally:
            con.close()

    def dump(self, part, opts):
        src_path = self._path()
        if not os.path.isfile(src_path):
            raise EngineError('SQLite database %s does not exist' % src_path)
        compression = opts.get('compression', 'none')
        level = check_compression(compression, opts.get('compression_level'))
        st = os.stat(src_path)
        chain, suffix = output_chain(opts)
        if opts.get('encryption'):
            # The backup API needs a file. Under the snapshot root it would be plaintext where only
            # ciphertext may be; beside the live database (0600) it exposes nothing the database does not.
            fd, copy_path = tempfile.mkstemp(prefix='.%s.djangoops-copy-' % os.path.basename(src_path),
                                             dir=os.path.dirname(src_path))
            os.close(fd)
        else:
            copy_path = part.path_of(DUMP_NAME if not chain else '.copy.sqlite3')
            os.close(os.open(copy_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

        def file_pass():
            if not chain:
                part.add_existing(DUMP_NAME)
                return
            hf = part.create(DUMP_NAME + suffix)
            try:
                run_pipeline(chain, stdin_path=copy_path, sink=hf)
            except BaseException:
                hf.discard()
                raise
            hf.close()
            part.add_hashed(hf)

        try:
            journal_mode = self._copy(src_path, copy_path)
            excluded = list(opts.get('exclude_table_data') or ())
            if excluded:
                self._leave_out_rows(copy_path, excluded)
            if chain:
                self.record(' | '.join(s.display() for s in chain))
            tables = alongside(lambda: self._check_copy(copy_path, opts), file_pass)[0]
            for table in excluded:
                if table in tables:
                    tables[table]['data_excluded'] = True
        finally:
            if chain:
                _remove_sidecars(copy_path, ('', '-wal', '-shm', '-journal'))
        meta = {
            'kind': 'database',
            'engine': self.name,
            'database': src_path,
            'format': 'sqlite3',
            'compression': compression,
            'compression_level': level,
            'server_version': sqlite3.sqlite_version,
            'client_version': sqlite3.sqlite_version,
            'journal_mode': journal_mode,
            'source_mode': '%04o' % (st.st_mode & 0o7777),
            'source_uid': st.st_uid,
            'source_gid': st.st_gid,
            'tables': tables,
        }
        encryption = encryption_record(opts, part.files)
        if encryption:
            meta['encryption'] = encryption
        return meta

    def _copy(self, src_path, copy_path):
        """The consistent copy; returns the source's journal mode."""
        src = dst = None
        try:
            src = sqlite3.connect(_ro_uri(src_path), uri=True, timeout=self.conn.get('connect_timeout') or 10)
            dst = sqlite3.connect(copy_path)
            src.backup(dst)  # pages=-1: every page in one step, see the module docstring
            journal_mode = src.execute('PRAGMA journal_mode').fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise EngineError('SQLite online backup of %s failed: %s' % (src_path, e))
        finally:
            for c in (dst, src):
                if c is not None:
                    c.close()
        self.record('sqlite3 backup API: %s -> %s (one step)' % (src_path, copy_path))
        _remove_sidecars(copy_path)
        return journal_mode

    def _leave_out_rows(self, copy_path, tables):
        """exclude_table_data: delete the rows from the copy, in one transaction, with secure_delete on so their
        bytes are overwritten with zeros and cannot be read back from the snapshot's free pages."""
        con = sqlite3.connect(copy_path, isolation_level=None)
        try:
            con.execute('PRAGMA secure_delete = ON')
            con.execute('BEGIN IMMEDIATE')
            for table in tables:
                con.execute('DELETE FROM %s' % _quote_ident(table))
            con.execute('COMMIT')
            # A copy in WAL mode has the change in its -wal file: fold it into the copy before that file goes.
            con.execute('PRAGMA wal_checkpoint(TRUNCATE)')
        except sqlite3.DatabaseError as e:
            raise EngineError('leaving out the rows of %s from the SQLite copy failed: %s' % (', '.join(tables), e))
        finally:
            con.close()
        self.record('DELETE FROM %s in the copy (PRAGMA secure_delete = ON)' % ', '.join(tables))
        _remove_sidecars(copy_path)

    def _check_copy(self, copy_path, opts):
        """The copy must pass the integrity check before it counts; returns its table stats."""
        _check_integrity(copy_path)
        self.record('PRAGMA integrity_check on the copy')
        return sqlite_table_stats(copy_path, opts.get('table_stats', 'counts'), immutable=True)

    def restore(self, snapshot, part_meta, opts):
        given = self._path(opts.get('database') or part_meta.get('database'))
        target = given
        if os.path.islink(given):
            # The file the link points to is restored (a deploy's shared/db.sqlite3 linked into each release);
            # replacing the link by a file would leave the real one as it was, for the next release to link to.
            target = os.path.realpath(given)
            self.record('%s is a symbolic link: restoring the file it points to, %s' % (given, target))
        target_dir = os.path.dirname(target)
        if not os.path.isdir(target_dir):
            if not opts.get('create'):
                raise EngineError('directory %s of the target SQLite database does not exist (set create: true '
                                  'to create it)' % target_dir)
            os.makedirs(target_dir, 0o755)
        if not os.access(target_dir, os.W_OK | os.X_OK):
            raise EngineError('cannot write the SQLite database beside %s: directory %s is not writable'
                              % (target, target_dir))
        if not os.path.exists(target) and not opts.get('create'):
            raise EngineError('SQLite database %s does not exist (set create: true to create it)' % target)
        entry = part_meta['files'][0]
        src = snapshot.file_path(entry)
        fd, tmp = tempfile.mkstemp(prefix='.%s.restore-' % os.path.basename(target), dir=target_dir)
        os.close(fd)
        try:
            chain = input_chain(part_meta, opts.get('identity'))
            if not chain:
                shutil.copyfile(src, tmp)
                self.record('copy %s -> %s' % (src, tmp))
            else:
                self.record(' | '.join(s.display() for s in chain))
                run_pipeline(chain, stdin_path=src, stdout_path=tmp)
            with open(tmp, 'rb') as f:
                os.fsync(f.fileno())
            _check_integrity(tmp)
            if os.path.exists(target):
                st = os.stat(target)
                mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
            else:
                mode = int(part_meta.get('source_mode', '0600'), 8)
                uid, gid = part_meta.get('source_uid', -1), part_meta.get('source_gid', -1)
            if os.geteuid() == 0:
                os.chown(tmp, uid, gid)
            elif os.path.exists(target):
                _check_ownership_kept(target)
                os.chown(tmp, -1, gid)  # a group the user belongs to (checked)
            os.chmod(tmp, mode)
            self._release_target(target)
            os.rename(tmp, target)
            # One atomic rename: until it, the target was as it was; from it on, it is the restored database.
            self.target_changed = True
            _remove_sidecars(target)
            fd = os.open(target_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return {'database': given}

    def _release_target(self, target):
        """Fold the target's WAL back and make sure nobody is reading it, so that removing the
        -wal/-shm files after the rename cannot lose a commit or confuse a live reader."""
        if not os.path.exists(target):
            return
        try:
            con = sqlite3.connect(target, timeout=5)
            try:
                busy, _log, _done = con.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            # A damaged target is exactly what a restore is for; nothing to fold back.
            self.record('target %s could not be checkpointed (%s); replacing it anyway' % (target, e))
            return
        if busy:
            raise EngineError('SQLite database %s is in use by another process (a checkpoint could not finish); '
                              'stop the application before restoring' % target)
