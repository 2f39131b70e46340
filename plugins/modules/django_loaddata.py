#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: django_loaddata
short_description: Load a Django fixture from a verified snapshot, optionally after flush
version_added: 0.1.0
description:
  - Loads the C(fixture) part of a snapshot written by M(djangoops.maintenance.django_dumpdata) with Django's
    C(loaddata), in the project's own interpreter, into any database engine the project is configured for - a
    fixture taken from SQLite loads into PostgreSQL or MySQL.
  - Before touching the database, re-reads every file of the part and compares size and sha256 with the manifest;
    a damaged fixture is refused and the database is left as it was.
  - The fixture streams from the snapshot through decompression into Django; this module never holds it in memory
    (Django itself reads a V(json) fixture whole; V(jsonl) and V(xml) stream).
  - With O(flush=true) the database is emptied first (C(manage.py flush)). Flush and load run in one transaction -
    on PostgreSQL and SQLite a fixture that fails to load leaves the old data in place; MySQL and MariaDB commit
    the flush's C(TRUNCATE) at once, so take a M(djangoops.maintenance.db_snapshot) first there.
  - Afterwards the objects loaded per model are compared with the counts recorded when the fixture was written,
    and with O(flush=true) so are the rows in each model's table; a difference fails the task unless
    O(fail_on_mismatch=false).
extends_documentation_fragment:
  - djangoops.maintenance.django
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.snapshot.read
options:
  part:
    description:
      - Name of the fixture part; needed only when the snapshot holds several.
    type: str
  flush:
    description:
      - Remove every row from every table of the database alias first (C(manage.py flush)); Django then re-creates
        content types and permissions, as after C(migrate).
      - Without it, objects are added to what is there, and rows with the same primary (or natural) key are
        overwritten.
    type: bool
    default: false
  fail_on_mismatch:
    description:
      - Fail when the objects loaded, or the rows found after a flush, differ from the counts recorded with the fixture.
    type: bool
    default: true
  decrypt_identity:
    description:
      - Path, on the host, of the age identity (or SSH private key without passphrase) that decrypts a fixture
        taken with C(encrypt_recipients); tried on the first chunk before the database is touched.
    type: path
  decrypt_identity_content:
    description:
      - The identity itself (for example from Ansible Vault); written to a private 0600 file removed when the
        task ends, never logged.
    type: str
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Verifies the fixture's checksums, that the database answers and that every model in the fixture exists in the project; loads nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
seealso:
  - module: djangoops.maintenance.django_dumpdata
  - module: djangoops.maintenance.db_restore
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Move the shop from SQLite to PostgreSQL - fixture from the old settings
  djangoops.maintenance.django_dumpdata:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    snapshot_root: /var/backups/django
  register: fixture

- name: Create the schema on PostgreSQL
  djangoops.maintenance.django_migrate:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    environment:
      SHOP_DB_ENGINE: postgresql
      SHOP_DB_HOST: db1.internal
    secret_environment:
      SHOP_DB_PASSWORD: "{{ vault_shop_db_password }}"

- name: Load the fixture into PostgreSQL
  djangoops.maintenance.django_loaddata:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    environment:
      SHOP_DB_ENGINE: postgresql
      SHOP_DB_HOST: db1.internal
    secret_environment:
      SHOP_DB_PASSWORD: "{{ vault_shop_db_password }}"
    snapshot_root: /var/backups/django
    snapshot_id: "{{ fixture.snapshot_id }}"
    flush: true
'''

RETURN = r'''
snapshot_id:
  description: Id of the snapshot loaded.
  returned: always
  type: str
part:
  description: Name of the part loaded.
  returned: always
  type: str
verified_files:
  description: Files whose size and sha256 were checked against the manifest before loading.
  returned: always
  type: list
  elements: str
flushed:
  description: Whether the database was flushed first.
  returned: success and not check mode
  type: bool
objects:
  description: Objects loaded.
  returned: success and not check mode
  type: int
counts:
  description: Objects loaded per model label.
  returned: success and not check mode
  type: dict
table_counts:
  description: Rows per model label in the database after loading.
  returned: success and not check mode
  type: dict
counts_match:
  description: Whether every comparison with the recorded counts held.
  returned: success and not check mode
  type: bool
count_mismatches:
  description: The models that differ, with what was recorded and found.
  returned: when counts differ
  type: list
  elements: dict
seconds:
  description: Wall time of the load.
  returned: success and not check mode
  type: float
output:
  description: Django's own C(loaddata) output.
  returned: success and not check mode
  type: list
  elements: str
commands:
  description: The commands run - the C(manage.py) equivalents and the decompressor.
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._django import (
    DJANGO_MUTUALLY_EXCLUSIVE, DjangoProject, django_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils._django_fixtures import compare_counts
from ansible_collections.djangoops.maintenance.plugins.module_utils._age import (
    check_identity, identity_file, part_encryption)
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import input_chain
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    Manager, ModuleFailure, load_source_snapshot, pick_part, run_manager, snapshot_source_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotError, SnapshotStore


class DjangoLoaddataManager(Manager):
    def run(self):
        p = self.p
        store = SnapshotStore(p['snapshot_root'])
        snap = load_source_snapshot(store, p)
        part_name, meta = pick_part(snap, 'fixture', p['part'])
        files = meta.get('files') or []
        if len(files) != 1:
            raise SnapshotError('snapshot %s part %r should hold one fixture file, it lists %d'
                                % (snap.id, part_name, len(files)))
        result = dict(changed=True, snapshot_id=snap.id, part=part_name, verified_files=[f['path'] for f in files])
        self.partial_result = result
        snap.require_sound([part_name])  # before the database is touched
        with private_dir() as secrets:
            identity = None
            if part_encryption(meta):
                identity = identity_file(p, secrets)
                check_identity(snap.file_path(files[0]), identity, 'snapshot %s part %r' % (snap.id, part_name))
            return self.load(snap, part_name, meta, files, identity, result)

    def load(self, snap, part_name, meta, files, identity, result):
        p = self.p
        project = DjangoProject(p)
        result['commands'] = project.commands
        recorded = meta.get('counts') or {}
        if self.module.check_mode:
            found = project.call('count', models=sorted(recorded))['counts']
            unknown = sorted(m for m, n in found.items() if n is None)
            if unknown:
                raise ModuleFailure('the fixture holds models this project does not have: %s' % ', '.join(unknown),
                                    **result)
            return result
        chain = input_chain(meta, identity)
        project.commands.extend(s.display() for s in chain)
        if p['flush']:
            project.describe('flush', ['--no-input', '--database', project.alias])
        project.describe('loaddata', ['-', '--format', meta.get('format', 'jsonl'), '--database', project.alias])
        started = time.monotonic()
        facts = project.stream(dict(command='loaddata', flush=p['flush'], format=meta.get('format', 'jsonl')),
                               before=chain, stdin_path=snap.file_path(files[0]))
        result.update(flushed=facts['flushed'], objects=facts['objects'], counts=facts['counts'],
                      table_counts=facts['table_counts'], output=facts.get('output', []),
                      seconds=round(time.monotonic() - started, 3))
        mismatches = compare_counts(recorded, facts['counts'], facts['table_counts'] if facts['flushed'] else None)
        result['counts_match'] = not mismatches
        if mismatches:
            result['count_mismatches'] = mismatches
            if p['fail_on_mismatch']:
                raise ModuleFailure('the loaded data differs from fixture %s/%s in %d model(s): %s'
                                    % (snap.id, part_name, len(mismatches),
                                       ', '.join('%s (%s)' % (m['model'], m['problem']) for m in mismatches[:10])),
                                    **result)
        return result


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(snapshot_source_argument_spec())
    argument_spec.update(
        flush=dict(type='bool', default=False),
        fail_on_mismatch=dict(type='bool', default=True),
        decrypt_identity=dict(type='path'),
        decrypt_identity_content=dict(type='str', no_log=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE + [('snapshot_id', 'snapshot_path'),
                                                                           ('decrypt_identity',
                                                                            'decrypt_identity_content')])
    run_manager(module, DjangoLoaddataManager)


if __name__ == '__main__':
    main()
