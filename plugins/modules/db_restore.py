#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: db_restore
short_description: Restore a database exactly as a djangoops.maintenance snapshot recorded it
version_added: 0.1.0
description:
  - Restores the database part of a snapshot written by M(djangoops.maintenance.db_snapshot) into the original
    database or another one.
  - Before touching the target, re-reads every file of the part and compares its size and sha256 with the
    manifest; a missing, truncated or altered file refuses the restore and the target is left as it was
    (with O(verify_checksums=false) the sizes only, for a caller that has just verified the snapshot in full).
  - The target's contents are replaced completely; afterwards it holds exactly the snapshot's schema and rows,
    and nothing created after the snapshot (a table, a column, an index a migration added) survives.
    PostgreSQL - with O(pg_clean=recreate) the snapshot is restored into a new scratch database (created from
    C(template0) with the recorded encoding and locale) and only when that succeeded is the target dropped
    and the scratch database renamed to it, so a failed restore leaves the target as it was; with
    O(pg_clean=schemas) the target is emptied and restored in one C(psql) transaction, so a failure rolls
    the emptying back too. Custom and directory dumps are restored with C(pg_restore --no-owner --exit-on-error)
    and O(jobs) workers, plain dumps with C(psql -v ON_ERROR_STOP=1 --single-transaction); then C(ANALYZE).
    A compressed custom dump loads every table the dump creates frozen (the new database's, or in place in
    the one transaction that created it again) - the module rewrites its C(COPY) statement, as the stream
    passes, into C(TRUNCATE ONLY) and a C(COPY) with the C(FREEZE) option, in one transaction - so no later
    pass (index builds, foreign-key checks, C(ANALYZE), the application's first queries) rewrites every page
    to set hint bits (see docs/engines/postgresql.md).
    MySQL/MariaDB - the database is dropped and re-created with its recorded character
    set and collation and the dump is streamed into the client, stopping at the first error; MySQL cannot roll back
    DDL, so a failure part-way leaves the target partly restored, and the error says so (run the restore again).
    Definers are handled as O(mysql_definers) says. SQLite - the file is
    rebuilt beside the target, checked, fsynced and renamed over it, with the target's mode, owner and group.
    Only root can give the new file another user's ownership, so a restore run as any other user is refused
    before anything changes unless that user owns the file and belongs to its group.
  - Afterwards, per-table row counts (and content checksums when the snapshot recorded them) are compared with
    the manifest and returned; a difference fails the task unless O(fail_on_mismatch=false).
extends_documentation_fragment:
  - djangoops.maintenance.connection
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.snapshot.read
options:
  database:
    description:
      - Target database (SQLite - file path). Defaults to the database the snapshot was taken from.
    type: str
    aliases: [db]
  part:
    description:
      - Name of the database part to restore; needed only when the snapshot holds several.
    type: str
  create:
    description:
      - Create the target database (SQLite - its directory) when it does not exist.
    type: bool
    default: false
  jobs:
    description:
      - Parallel C(pg_restore) workers (PostgreSQL custom and directory formats, O(pg_clean=recreate)).
      - C(pg_restore) reads a pipe only with one worker, so a compressed custom dump is first decompressed into
        a private temporary file under O(snapshot_root) (removed afterwards); this costs one fast C(zstd -d)
        pass and the uncompressed size in free space (see docs/engines/postgresql.md). That file is given the
        data offsets C(pg_dump) cannot write into a pipe, so the workers seek straight to each table and start
        the largest first. Without room for it, or with O(jobs=1), the dump is streamed into a single
        C(pg_restore).
      - Not used for loading by O(pg_clean=schemas) or plain dumps, which restore in one transaction.
      - MySQL and MariaDB - the rows of a table whose dump holds more than one C(INSERT) statement, which is
        any table of more than about 1 MiB, are loaded by this many more clients at once, each with the dump's
        session settings; the main client creates the table first and goes on, for example to the table's
        triggers, only when they are done. The server parses and inserts on several threads instead of one.
        With O(jobs=1) one client loads everything, as C(mysql < dump) would.
      - After loading, PostgreSQL runs C(ANALYZE) and reads the table statistics O(verify_tables) compares on
        this many connections at once, whatever the format.
    type: int
    default: 2
  pg_clean:
    description:
      - How PostgreSQL empties the target. V(recreate) restores into a new database, then swaps it in, in one
        transaction (the target renamed aside, the new database renamed to the target's name), and drops the
        old one; so there is no moment without a database of that name. It needs C(CREATEDB), ownership of the
        target (or membership in its owner role), room on the server for a second copy while restoring, and no
        other sessions at the swap (O(terminate_connections) ends them).
      - V(schemas) drops every non-system schema (C(public) is emptied and kept with its owner and privileges),
        extension, large object, event trigger, publication and foreign-data wrapper of the target, gives the
        default privileges set for every schema (C(ALTER DEFAULT PRIVILEGES) without C(IN SCHEMA)) back their
        built-in values, and restores, all in one transaction; for users who may not create databases.
        Single-threaded.
      - Either way, nothing created after the snapshot (a table, column, index, sequence or schema) survives.
        Database-level settings (C(ALTER DATABASE ... SET), C(GRANT ... ON DATABASE)) are not part of a
        snapshot, as with C(pg_dump) without C(--create); V(recreate) does not carry them over.
    type: str
    choices: [recreate, schemas]
    default: recreate
  terminate_connections:
    description:
      - Terminate other sessions connected to the target database (PostgreSQL). With O(pg_clean=recreate), right
        before the swap, after new connections to the target were shut out (C(ALLOW_CONNECTIONS false), undone if
        the swap fails); with V(schemas), before the restore transaction starts.
      - Without it, a target with other sessions is refused before anything is restored. Autovacuum workers do not
        count - PostgreSQL stops them itself.
    type: bool
    default: false
  mysql_definers:
    description:
      - What a MySQL/MariaDB restore does with the C(DEFINER) of views, routines, triggers and events.
      - V(keep) restores them as recorded. Before the target is touched, every recorded definer other than
        O(login_user) must exist on the target server (checked in C(mysql.user), which needs C(SELECT) on it);
        otherwise the restore is refused, because the server would create the objects and they would fail only
        when used. Creating objects for another definer needs C(SUPER) or C(SET USER) (MySQL C(SET_ANY_DEFINER)).
      - V(current_user) rewrites every C(DEFINER) clause of the dump to C(CURRENT_USER) while it streams into the
        client, so O(login_user) owns them all; for restoring into another server, or as a user without those
        privileges. C(SQL SECURITY DEFINER) objects then run with O(login_user)'s privileges.
    type: str
    choices: [keep, current_user]
    default: keep
  verify_checksums:
    description:
      - Re-read every file of the part and compare its sha256 with the manifest before the target is touched.
      - V(false) checks only that every file is there with its recorded size, and reads none. For a caller that
        has just verified the same snapshot in full, as the P(djangoops.maintenance.restore#role) role does with
        M(djangoops.maintenance.snapshot_info) and O(djangoops.maintenance.snapshot_info#module:verify=true) first,
        so that a large snapshot is not read twice. A file altered between that check and the restore then goes
        unnoticed by this module (a compressed or encrypted dump still fails on its own frame checks).
    type: bool
    default: true
  verify_tables:
    description:
      - What to compare after the restore. V(auto) compares content checksums when the snapshot has them,
        else row counts.
      - PostgreSQL reads them from the restored database while it runs C(ANALYZE), on O(jobs) connections
        together. V(checksums) for a snapshot that recorded only row counts is refused before the target
        is touched.
    type: str
    choices: [auto, counts, checksums, none]
    default: auto
  fail_on_mismatch:
    description:
      - Fail the task when the restored tables differ from the manifest.
    type: bool
    default: true
  timeout:
    description:
      - Seconds after which the restore is stopped and the task fails. No limit when omitted.
      - A deadline, whatever the restore waits on (a lock another session holds, a server that stopped
        answering) - every tool and client still running is killed, and the message names what was still
        running. A PostgreSQL target is then as it was; a MySQL/MariaDB one is partly restored.
      - It bounds the whole restore from the moment the snapshot was verified - each step (a wait for a lock,
        a pipeline) gets what is left of it, not a timeout of its own. Statements the module sends itself
        (creating, renaming and dropping PostgreSQL databases, C(ANALYZE), the table statistics) are not
        stopped by it.
      - PostgreSQL and MySQL/MariaDB only; a SQLite restore is not stopped by it.
    type: int
  decrypt_identity:
    description:
      - Path, on the host, of an age identity file (C(AGE-SECRET-KEY-1...), as written by C(age-keygen)) or an SSH
        private key without passphrase, to decrypt a snapshot taken with C(encrypt_recipients) (M(djangoops.maintenance.db_snapshot)).
      - Before the target is touched, the first chunk of the dump is decrypted with it; a missing or wrong key fails
        the task with nothing changed.
      - Mutually exclusive with O(decrypt_identity_content).
    type: path
  decrypt_identity_content:
    description:
      - The identity itself (for example from Ansible Vault). It is written to a private 0600 file in a 0700
        directory that is removed when the task ends, and never logged.
    type: str
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Verifies the snapshot's checksums and that the target server answers; restores nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details:
      - The target's tables before and after the restore; in check mode, after is the tables the snapshot recorded
        (none known when it was taken with O(djangoops.maintenance.db_snapshot#module:table_stats=none)). A table
        added since the snapshot (by a migration) shows as removed, one dropped since as added back.
notes:
  - PostgreSQL - what the restore creates belongs to the target database's owner (or, for a new database,
    the recorded owner when the login user may act as that role); when the login user is someone else,
    C(pg_restore --role=<owner>) (in the one C(psql) transaction of plain dumps and O(pg_clean=schemas),
    C(SET ROLE)) creates it as the owner, as a Django application expects. A superuser restores as itself what
    the owner may not (the schemas first, as the owner, since an extension may live in one) - the snapshot's
    extensions and their comments, the data of their configuration tables (PostGIS's C(spatial_ref_sys)), and the
    privileges (C(GRANT), C(REVOKE), default privileges, which PostgreSQL then applies as though the object's owner
    gave them, so the owner's objects get exactly theirs and an extension's functions keep what a superuser
    granted or revoked) - so extensions only a superuser may create (PostGIS, dblink) work in every format; for a
    login user who is not a superuser such an extension makes the restore fail (and leaves the target as it was).
  - PostgreSQL - C(pg_dump) writes large objects between a C(BEGIN) and a C(COMMIT) of its own (C(pg_restore) too,
    writing a script for O(pg_clean=schemas)); the module leaves these two statements out of the SQL on its way into
    the one C(psql) transaction, so that the restore stays all or nothing.
  - An encrypted PostgreSQL custom dump is restored by one C(pg_restore) worker reading the decrypting stream;
    O(jobs) does not apply, because a parallel restore needs the plaintext dump as a file on disk.
  - PostgreSQL - C(pg_restore) must be at least as new as the C(pg_dump) that wrote the snapshot; this is
    checked before the target is touched.
seealso:
  - module: djangoops.maintenance.db_snapshot
  - module: djangoops.maintenance.snapshot_info
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Put the database back as it was before the window
  djangoops.maintenance.db_restore:
    engine: postgresql
    database: shop
    login_host: db1.internal
    login_user: shop_owner
    login_password: "{{ vault_shop_owner_password }}"
    snapshot_root: /var/backups/django
    snapshot_id: "{{ snap.snapshot_id }}"
    terminate_connections: true

- name: Restore the latest snapshot into a scratch database to test it
  djangoops.maintenance.db_restore:
    engine: mysql
    database: shop_restore_test
    create: true
    login_unix_socket: /run/mysqld/mysqld.sock
    snapshot_root: /var/backups/django
    snapshot_id: latest

- name: Restore an encrypted snapshot with the key from the vault
  djangoops.maintenance.db_restore:
    engine: postgresql
    database: shop
    snapshot_root: /var/backups/django
    snapshot_id: "{{ snap.snapshot_id }}"
    decrypt_identity_content: "{{ vault_backup_age_identity }}"

- name: SQLite back in place (stop the application first)
  djangoops.maintenance.db_restore:
    engine: sqlite
    database: /srv/shop/db.sqlite3
    snapshot_root: /var/backups/django
    snapshot_id: 20261124T040512Z-k3j9q2
'''

RETURN = r'''
snapshot_id:
  description: Id of the snapshot restored.
  returned: always
  type: str
part:
  description: Name of the part restored.
  returned: always
  type: str
database:
  description: The target database (SQLite - file path).
  returned: always
  type: str
target_changed:
  description:
    - Whether the restore changed the target database, or may have. Set at the first step that touches it -
      PostgreSQL, the swap that puts the restored copy in its place (O(pg_clean=recreate)) or the transaction
      that empties and restores it (O(pg_clean=schemas)); SQLite, the rename over it; MySQL/MariaDB, the
      C(DROP DATABASE), unless the server refuses it before it drops anything (a lock not granted, a privilege
      missing).
    - V(false) on a failure means the target is exactly as it was - the snapshot's checksums, the decryption
      key, the login, the client tools, the definers or the dump itself were refused before the target was
      touched, or the one transaction was rolled back. A caller that stopped the application for the restore
      can start it again. V(true) on a failure means the target may be partly restored - restore it again.
    - V(true) after a restore, V(false) in check mode. The task's C(changed) is the same, except in check mode,
      where it predicts the change.
  returned: always
  type: bool
verified_files:
  description: Files whose size - and, with RV(checksums_verified), sha256 - were checked against the manifest
    before the restore.
  returned: always
  type: list
  elements: str
checksums_verified:
  description: Whether the sha256 of every file was checked here (O(verify_checksums)).
  returned: always
  type: bool
encrypted:
  description: Whether the part was encrypted (and the identity given could decrypt it).
  returned: success
  type: bool
seconds:
  description: Wall time of the restore, in seconds.
  returned: success and not check mode
  type: float
tables:
  description: Per-table row counts (and checksums) after the restore.
  returned: success and not check mode
  type: dict
tables_compared:
  description: What was compared with the manifest (V(counts), V(checksums) or V(none)).
  returned: success and not check mode
  type: str
tables_match:
  description:
    - Whether every table equals what the manifest recorded.
    - V(null) when nothing was compared (RV(tables_compared=none) - the snapshot recorded no table statistics, or
      O(verify_tables=none)), so that no caller reads a match that was never checked.
  returned: success and not check mode
  type: bool
table_mismatches:
  description: The tables that differ, with what was expected and found.
  returned: when tables differ
  type: list
  elements: dict
commands:
  description: Commands run, shell-quoted for reading (they never contain a password).
  returned: always
  type: list
  elements: str
'''

import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._age import (
    check_identity, identity_file, part_encryption)
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import compare_tables, start_clock
from ansible_collections.djangoops.maintenance.plugins.module_utils._engines import (
    connection_argument_spec, connection_params, get_engine)
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    KNOWN_ERRORS, Manager, ModuleFailure, load_source_snapshot, pick_part, run_manager, snapshot_source_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotStore


class DbRestoreManager(Manager):
    def run(self):
        p = self.p
        # Until the engine touches the target, a failure leaves it as it was (and changed nothing).
        self.partial_result = dict(changed=False, target_changed=False)
        store = SnapshotStore(p['snapshot_root'])
        snap = load_source_snapshot(store, p)
        part_name, part_meta = pick_part(snap, 'database', p['part'])
        if part_meta.get('engine') != p['engine']:
            raise ModuleFailure('snapshot %s part %r holds a %s database, not %s'
                                % (snap.id, part_name, part_meta.get('engine'), p['engine']))
        target = p['database'] or part_meta.get('database')
        result = dict(changed=False, target_changed=False, snapshot_id=snap.id, part=part_name, database=target,
                      verified_files=[f['path'] for f in part_meta.get('files', [])],
                      checksums_verified=p['verify_checksums'])
        self.partial_result = result
        snap.require_sound([part_name], contents=p['verify_checksums'])  # before the target is touched
        with private_dir() as secrets:
            identity = None
            if part_encryption(part_meta):
                identity = identity_file(p, secrets)
                check_identity(snap.file_path(part_meta['files'][0]), identity,
                               'snapshot %s part %r' % (snap.id, part_name))
            result['encrypted'] = identity is not None
            engine = get_engine(p['engine'], connection_params(p), secrets)
            result['commands'] = engine.commands
            probe = engine.probe_restore_target(target)
            if probe.get('unreadable'):
                self.module.warn('target %s could not be read (%s); the restore replaces it'
                                 % (target, probe['unreadable']))
            if not probe['database_exists'] and not p['create']:
                raise ModuleFailure('target database %s does not exist on the %s server (set create: true to '
                                    'create it)' % (target, p['engine']))
            engine.check_client(probe, part_meta)  # can the tools read the snapshot and restore into this server
            mode = self.verify_mode(part_meta, result)  # refused before the target is touched
            before = None
            if self.module._diff:
                before = engine.table_names(target) if probe['database_exists'] and not probe.get('unreadable') else []
            if self.module.check_mode:
                result['changed'] = True  # the prediction: a restore replaces the target's contents
                if before is not None:
                    recorded = part_meta.get('tables')
                    result['diff'] = self.diff(target, snap.id, before, sorted(recorded) if recorded else None)
                return result
            started = time.monotonic()
            details = self.restore(engine, snap, part_meta, result, start_clock(dict(
                database=target, create=p['create'], jobs=p['jobs'], pg_clean=p['pg_clean'],
                terminate_connections=p['terminate_connections'], mysql_definers=p['mysql_definers'],
                timeout=p['timeout'], identity=identity, verify_tables=mode)))
            for warning in details.pop('warnings', []):
                self.module.warn(warning)  # Ansible shows it, and returns it in the result's warnings
            result.update(details)
            result['seconds'] = round(time.monotonic() - started, 3)
            if before is not None:
                result['diff'] = self.diff(target, snap.id, before, engine.table_names(target))
            self.compare(engine, target, part_meta, result, mode)
        return result

    @staticmethod
    def restore(engine, snap, part_meta, result, opts):
        """The engine's restore; whatever happens, ``result`` (also the failure's) says whether it touched the
        target - an error no engine foresaw too, which Ansible would otherwise report without any result."""
        try:
            details = engine.restore(snap, part_meta, opts)
        except Exception as e:  # pylint: disable=broad-except
            result['target_changed'] = result['changed'] = bool(engine.target_changed)
            if isinstance(e, KNOWN_ERRORS):
                raise
            raise ModuleFailure('%s: %s' % (type(e).__name__, e), exception=traceback.format_exc())
        result['target_changed'] = result['changed'] = True  # the target holds the snapshot now
        return details

    @staticmethod
    def diff(target, snapshot_id, before, after):
        """Ansible's diff of the target's table names; ``after`` None: not known (check mode, no table list)."""
        if after is None:
            text = '(snapshot %s recorded no table statistics: its tables are known only after the restore)\n' % (
                snapshot_id)
        else:
            text = ''.join(name + '\n' for name in after)
        return dict(before_header='%s: tables now' % target, after_header='%s: tables of snapshot %s'
                    % (target, snapshot_id), before=''.join(name + '\n' for name in before), after=text)

    def verify_mode(self, part_meta, result):
        """What verify_tables means for this snapshot: counts, checksums or none."""
        recorded = part_meta.get('tables') or {}
        mode = self.p['verify_tables']
        has_sums = any(t.get('checksum') for t in recorded.values())
        if mode == 'auto':
            mode = 'checksums' if has_sums else ('counts' if recorded else 'none')
        if mode == 'checksums' and recorded and not has_sums:
            raise ModuleFailure('verify_tables=checksums, but snapshot %s recorded only row counts (take it with '
                                'table_stats: checksums)' % result['snapshot_id'], **result)
        return mode

    def compare(self, engine, target, part_meta, result, mode):
        recorded = part_meta.get('tables') or {}
        result['tables_compared'] = mode
        if mode == 'none':
            result['tables'] = {}
            result['tables_match'] = None  # nothing compared: neither a match nor a mismatch
            return
        # Read from the restored rows during the restore (PostgreSQL, alongside ANALYZE), else now.
        actual = engine.restored_stats(mode)
        if actual is None:
            actual = engine.table_stats(mode, database=target)
        result['tables'] = actual
        match, mismatches = compare_tables(recorded, actual)
        result['tables_match'] = match
        if mismatches:
            result['table_mismatches'] = mismatches
            if self.p['fail_on_mismatch']:
                raise ModuleFailure('restored database %s differs from snapshot %s in %d table(s): %s'
                                    % (target, result['snapshot_id'], len(mismatches),
                                       ', '.join('%s (%s)' % (m['table'], m['problem']) for m in mismatches[:10])),
                                    **result)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(snapshot_source_argument_spec())
    argument_spec.update(
        create=dict(type='bool', default=False),
        jobs=dict(type='int', default=2),
        pg_clean=dict(type='str', default='recreate', choices=['recreate', 'schemas']),
        terminate_connections=dict(type='bool', default=False),
        mysql_definers=dict(type='str', default='keep', choices=['keep', 'current_user']),
        verify_checksums=dict(type='bool', default=True),
        verify_tables=dict(type='str', default='auto', choices=['auto', 'counts', 'checksums', 'none']),
        fail_on_mismatch=dict(type='bool', default=True),
        timeout=dict(type='int'),
        decrypt_identity=dict(type='path'),
        decrypt_identity_content=dict(type='str', no_log=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('snapshot_id', 'snapshot_path'),
                                               ('decrypt_identity', 'decrypt_identity_content')])
    run_manager(module, DbRestoreManager)


if __name__ == '__main__':
    main()
