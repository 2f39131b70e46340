#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: db_snapshot
short_description: Take a verified snapshot of a PostgreSQL, MySQL/MariaDB or SQLite database
version_added: 0.1.0
description:
  - Dumps one database into a snapshot directory under O(snapshot_root), computing each file's size and
    sha256 while it streams, and records server and client versions, per-table row counts (and optionally
    content checksums), timings and the commands run in the snapshot's C(manifest.json).
  - Before writing a byte it checks that the server answers, that the client tools can dump this server
    version, and that the snapshot root has room for the estimated size plus O(space_margin).
  - PostgreSQL is dumped with C(pg_dump) (custom, directory or plain format) reading a snapshot that a
    REPEATABLE READ transaction exported (C(pg_dump --snapshot)); the same transaction counts (and checksums)
    the tables while the dump runs, so the recorded figures describe exactly the dumped rows even while the
    application keeps writing. The client tools are taken from O(client_bin_dir), else from
    C(/usr/lib/postgresql/<N>/bin) of the server's own major version, else of the closest newer one, else from
    E(PATH); C(pg_dump) 17 or later is refused for a server before 17, whose snapshot it could not restore.
    MySQL/MariaDB with C(mariadb-dump)/C(mysqldump) in one consistent transaction (C(--single-transaction))
    including routines, triggers, events and binary data as hex; the dump must end with its completion footer.
    SQLite with the online backup API in one step, so the copy completes while the application keeps writing, then
    C(PRAGMA integrity_check) on the copy.
  - Everything runs as argument lists without a shell; every process of a pipeline (dump, compressor) must
    succeed, and an error printed by a tool fails the task even when the tool exits 0.
  - A snapshot that fails midway is removed (or, when adding a part to a snapshot another task started, only
    that part is removed); nothing that looks complete is left behind.
extends_documentation_fragment:
  - djangoops.maintenance.connection
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.snapshot.write
options:
  part:
    description:
      - Name of the part the dump is stored as inside the snapshot.
    type: str
    default: database
  format:
    description:
      - PostgreSQL dump format. V(custom) (default) is one file that C(pg_restore) restores in parallel;
        V(directory) is dumped and restored with O(jobs) workers; V(plain) is SQL (written with C(--no-owner))
        restored with C(psql) in one transaction.
      - MySQL always writes SQL (V(sql)), SQLite a database file (V(sqlite3)); leave this unset for them.
    type: str
    choices: [custom, directory, plain, sql, sqlite3]
  compression:
    description:
      - V(auto) uses zstd when C(zstd) is installed, else gzip. zstd is several times faster than gzip for a
        smaller file.
      - Compression runs as a streaming process after the dump tool (C(pg_dump -Z 0 ... | zstd)), except for the
        PostgreSQL directory format, where C(pg_dump) compresses each file itself (gzip; zstd needs
        C(pg_dump) 16 or later, and V(auto) means gzip with an older C(pg_dump)).
    type: str
    choices: [auto, none, gzip, zstd]
    default: auto
  compression_level:
    description:
      - Compression level; defaults to 3 for zstd (1-19) and 6 for gzip (1-9).
      - When it is not set, zstd compresses the SQL text of a PostgreSQL (custom, plain) or MySQL/MariaDB dump at
        level 3 with a minimum match of 6 and larger match tables (C(zstd -3 --zstd=mml=6,hlog=18,clog=17)), which
        made the dumps measured smaller than C(gzip -6) at about level 3's speed (see docs/benchmarks.md); the
        manifest records it as C(compression_params). A level that is set runs as it is, and SQLite files keep
        zstd's own parameters for the level.
    type: int
  jobs:
    description:
      - Parallel C(pg_dump) workers for the PostgreSQL directory format.
    type: int
    default: 2
  table_stats:
    description:
      - What to record per table in the manifest, taken in the same snapshot as the dump where the engine
        allows it (PostgreSQL exports its snapshot to C(pg_dump); SQLite reads the copy). MySQL/MariaDB take them
        in a consistent snapshot of their own, opened just before the dump's and read while the dump runs (see the
        notes).
      - V(counts) records row counts. V(checksums) also records an order-independent content checksum
        per table, which lets M(djangoops.maintenance.db_restore) prove a restore exact; it reads every row.
      - PostgreSQL computes both on the server (nothing but two numbers per table travels), in parallel with
        the dump; keys are C(schema.table). Checksums need PostgreSQL 11 or later.
    type: str
    choices: [none, counts, checksums]
    default: counts
  space_check:
    description:
      - Refuse to start when the free space under O(snapshot_root) is below the estimated snapshot size
        times 1 + O(space_margin).
    type: bool
    default: true
  space_margin:
    description:
      - Safety margin of the free-space pre-flight, as a fraction of the estimated size.
    type: float
    default: 0.2
  timeout:
    description:
      - Seconds after which the dump is stopped and the task fails. No limit when omitted.
      - A deadline, whatever the dump waits on (a table lock another session holds, a server that stopped
        answering) - every tool still running is killed, the incomplete part removed, and the message names
        what was still running.
      - It bounds the whole dump - each step gets what is left of it, not a timeout of its own.
      - PostgreSQL and MySQL/MariaDB only; a SQLite copy (the backup API, in the module's own process) is not
        stopped by it.
    type: int
  exclude_table_data:
    description:
      - Tables whose rows the snapshot leaves out; their definitions (columns, indexes, constraints, triggers)
        are kept, so a restore gives them back empty. For data that is cheap to lose and large, such as
        C(django_session), a cache table or an audit log.
      - Exact names, no patterns - PostgreSQL C(schema.table), or C(table) when one schema has a table of that
        name; MySQL/MariaDB and SQLite C(table). A name that matches no table, or more than one, is refused.
      - Refused when a table whose rows are kept has a foreign key to one left out (restoring the snapshot
        would fail on that key) - leave out the referencing table's rows too.
      - The manifest lists the tables (C(excluded_table_data)) and records them with 0 rows and C(data_excluded),
        so M(djangoops.maintenance.db_restore) compares what the dump holds.
      - PostgreSQL with C(pg_dump --exclude-table-data); MariaDB with C(mariadb-dump --ignore-table-data) (MySQL's
        C(mysqldump) has no such option and is refused); SQLite by deleting the rows from the consistent copy
        with C(PRAGMA secure_delete) on, so they are overwritten, not merely unlinked (refused for a table with
        triggers, which the delete would fire).
    type: list
    elements: str
    default: []
  encrypt_recipients:
    description:
      - Encrypt the dump at rest with age for these recipients - age public keys (C(age1...)) or SSH public keys
        (C(ssh-ed25519 ...), C(ssh-rsa ...)). Any one of the matching private keys can decrypt it.
      - Encryption is one more process of the stream (C(dump | compressor | age -r ...)), so only ciphertext is
        written under O(snapshot_root); the manifest records the part as encrypted, for which recipients, and the
        sha256 of the encrypted bytes, so M(djangoops.maintenance.snapshot_info) verifies it without a key.
      - Needs the C(age) tool on the host. Not available with the PostgreSQL V(directory) format (C(pg_dump) writes
        those files itself); use V(custom). SQLite - the consistent copy the backup API needs is made beside the
        live database file (0600) and removed after it was encrypted. See docs/encryption.md.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Runs the pre-flight (server reachable, client new enough, free space) and reports what would be written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
notes:
  - MySQL and MariaDB row counts are taken in a consistent snapshot immediately before the dump; under
    concurrent writes they may differ from the dumped data, which M(djangoops.maintenance.db_restore) reports
    per table. During a maintenance window (application stopped) they are exact.
  - For the PostgreSQL directory format and uncompressed SQLite copies the files are written by the tool, so
    they are hashed after being written (from the page cache) rather than while streaming.
seealso:
  - module: djangoops.maintenance.db_restore
  - module: djangoops.maintenance.snapshot_info
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Snapshot the PostgreSQL database before a deploy
  djangoops.maintenance.db_snapshot:
    engine: postgresql
    database: shop
    login_host: db1.internal
    login_user: shop_backup
    login_password: "{{ vault_shop_backup_password }}"
    snapshot_root: /var/backups/django
    labels:
      release: "{{ release_version }}"
  register: snap

- name: MariaDB, gzip for an archive that must be readable anywhere
  djangoops.maintenance.db_snapshot:
    engine: mysql
    database: shop
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: root
    compression: gzip
    snapshot_root: /var/backups/django

- name: SQLite while the application keeps writing, with content checksums
  djangoops.maintenance.db_snapshot:
    engine: sqlite
    database: /srv/shop/db.sqlite3
    snapshot_root: /var/backups/django
    table_stats: checksums

- name: Database as one part of a larger snapshot (media and migration state follow)
  djangoops.maintenance.db_snapshot:
    engine: postgresql
    database: shop
    snapshot_root: /var/backups/django
    snapshot_id: "{{ window_snapshot_id }}"
    part: database
    finalize: false

- name: Encrypted at rest for the backup team's key and an offline recovery key
  djangoops.maintenance.db_snapshot:
    engine: postgresql
    database: shop
    snapshot_root: /var/backups/django
    encrypt_recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
      - "{{ lookup('ansible.builtin.file', 'files/recovery.pub') }}"

- name: Directory format with 4 workers
  djangoops.maintenance.db_snapshot:
    engine: postgresql
    database: shop
    format: directory
    jobs: 4
    compression: gzip
    compression_level: 1
    snapshot_root: /var/backups/django
'''

RETURN = r'''
snapshot_id:
  description: Id of the snapshot written to.
  returned: always
  type: str
  sample: 20261124T040512Z-k3j9q2
snapshot_path:
  description: Directory of the snapshot (C(<id>.partial) while not finalized). In check mode, where it would be.
  returned: always
  type: str
  sample: /var/backups/django/20261124T040512Z-k3j9q2
part:
  description: Name of the part written.
  returned: always
  type: str
  sample: database
finalized:
  description: Whether the snapshot is complete (manifest written, renamed to its final name).
  returned: always
  type: bool
files:
  description: Files written, relative to the snapshot directory, with size and sha256.
  returned: success and not check mode
  type: list
  elements: dict
  sample: [{path: database/database.dump.zst, size: 48213, sha256: 9f86d0...}]
bytes:
  description: Total bytes written.
  returned: success and not check mode
  type: int
seconds:
  description: Wall time of the dump, in seconds.
  returned: success and not check mode
  type: float
throughput_bytes_per_second:
  description: Database bytes (as reported by the server) per second of dump time.
  returned: success and not check mode
  type: int
format:
  description: Dump format used.
  returned: always
  type: str
  sample: custom
compression:
  description: Compression used (V(auto) resolved).
  returned: always
  type: str
  sample: zstd
encrypted:
  description: Whether the dump is encrypted with age (O(encrypt_recipients) given).
  returned: always
  type: bool
excluded_table_data:
  description: The tables whose rows were left out (O(exclude_table_data)), as the table statistics name them.
  returned: always
  type: list
  elements: str
  sample: [public.django_session]
server_version:
  description: Version of the database server.
  returned: always
  type: str
  sample: '15.18'
client_version:
  description: Version of the dump tool.
  returned: always
  type: str
  sample: '15.18'
database_bytes:
  description: Size of the database as reported by the server (SQLite - the file).
  returned: always
  type: int
tables:
  description: Per-table row counts and, with O(table_stats=checksums), content checksums, as recorded.
  returned: success and not check mode
  type: dict
  sample: {public.shop_product: {rows: 1200, checksum: 3e1f0c2b9a7d4e11}}
preflight:
  description: The pre-flight figures.
  returned: always
  type: dict
  contains:
    estimated_bytes:
      description: Estimated snapshot size.
      type: int
    required_bytes:
      description: Free bytes required (estimate plus margin).
      type: int
    free_bytes:
      description: Free bytes under the snapshot root.
      type: int
commands:
  description: Commands run, shell-quoted for reading (they never contain a password).
  returned: always
  type: list
  elements: str
manifest:
  description: The snapshot's manifest, when this task finalized it.
  returned: when finalized
  type: dict
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (
    COMPRESSION_CHOICES, TABLE_STATS, start_clock)
from ansible_collections.djangoops.maintenance.plugins.module_utils._engines import (
    connection_argument_spec, connection_params, get_engine)
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    Manager, ModuleFailure, run_manager, snapshot_target, snapshot_target_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import free_bytes


class DbSnapshotManager(Manager):
    def run(self):
        p = self.p
        store, snapshot_id, part_name, labels = snapshot_target(p)
        with private_dir() as secrets:
            engine = get_engine(p['engine'], connection_params(p), secrets)
            opts = engine.resolve_options(dict(
                format=p['format'], compression=p['compression'], compression_level=p['compression_level'],
                jobs=p['jobs'], table_stats=p['table_stats'], timeout=p['timeout'],
                encrypt_recipients=p['encrypt_recipients']))
            probe = engine.probe()
            if not probe['database_exists']:
                raise ModuleFailure('database %s does not exist on the %s server' % (probe['database'], p['engine']))
            engine.check_client(probe)
            opts['exclude_table_data'] = engine.exclusions(p['exclude_table_data']) if p['exclude_table_data'] else []
            preflight = self.preflight(store, engine, probe, opts)
            result = dict(changed=True, part=part_name, format=opts['format'], compression=opts['compression'],
                          encrypted=bool(opts.get('encryption')), excluded_table_data=opts['exclude_table_data'],
                          server_version=probe['server_version'], client_version=probe['client_version'],
                          database_bytes=probe['database_bytes'], preflight=preflight, finalized=False)
            self.partial_result = result
            if self.module.check_mode:
                result.update(snapshot_id=snapshot_id or '(generated)',
                              snapshot_path=store.path_of(snapshot_id) if snapshot_id else store.root,
                              commands=engine.commands)
                return result
            return self.write(store, engine, probe, opts, snapshot_id, part_name, labels, result)

    def preflight(self, store, engine, probe, opts):
        p = self.p
        estimate = engine.estimate_dump_bytes(probe, opts)
        required = int(estimate * (1 + p['space_margin']))
        free = free_bytes(store.root)
        figures = dict(estimated_bytes=estimate, required_bytes=required, free_bytes=free)
        root = store.root if os.path.isdir(store.root) else os.path.dirname(store.root)
        if os.path.isdir(root) and not os.access(root, os.W_OK | os.X_OK):
            raise ModuleFailure('snapshot_root %s is not writable by this user' % root, preflight=figures)
        if p['space_check'] and free < required:
            raise ModuleFailure(
                'not enough free space under %s for the snapshot: %d bytes free, %d needed (estimated %d bytes '
                'for a %d-byte database, plus a %d%% margin); free space, choose another snapshot_root, or set '
                'space_check: false' % (store.root, free, required, estimate, probe['database_bytes'] or 0,
                                        round(p['space_margin'] * 100)), preflight=figures)
        return figures

    def write(self, store, engine, probe, opts, snapshot_id, part_name, labels, result):
        p = self.p
        started = time.monotonic()
        start_clock(opts)

        def fill(part):
            meta = engine.dump(part, opts)
            meta.update(database_bytes=probe['database_bytes'], commands=list(engine.commands))
            if opts['exclude_table_data']:
                meta['excluded_table_data'] = opts['exclude_table_data']
            return part.commit(meta)

        try:
            builder, record, manifest = store.write_part(
                snapshot_id, part_name, fill, finalize=p['finalize'], labels=labels,
                begun=lambda b: result.update(snapshot_id=b.id, snapshot_path=b.path))
        except BaseException:
            result['commands'] = engine.commands
            raise
        seconds = time.monotonic() - started
        result.update(
            snapshot_path=builder.path, finalized=manifest is not None, files=record['files'], bytes=record['bytes'],
            seconds=round(seconds, 3), tables=record.get('tables', {}), commands=engine.commands,
            throughput_bytes_per_second=int((probe['database_bytes'] or 0) / seconds) if seconds > 0 else 0)
        if manifest is not None:
            result['manifest'] = manifest
        return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(snapshot_target_argument_spec())
    argument_spec['part']['default'] = 'database'
    argument_spec.update(
        format=dict(type='str', choices=['custom', 'directory', 'plain', 'sql', 'sqlite3']),
        compression=dict(type='str', default='auto', choices=list(COMPRESSION_CHOICES)),
        compression_level=dict(type='int'),
        jobs=dict(type='int', default=2),
        table_stats=dict(type='str', default='counts', choices=list(TABLE_STATS)),
        space_check=dict(type='bool', default=True),
        space_margin=dict(type='float', default=0.2),
        timeout=dict(type='int'),
        encrypt_recipients=dict(type='list', elements='str', default=[]),
        exclude_table_data=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_manager(module, DbSnapshotManager)


if __name__ == '__main__':
    main()
