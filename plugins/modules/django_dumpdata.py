#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: django_dumpdata
short_description: Write a Django fixture (dumpdata) into a verified snapshot
version_added: 0.1.0
description:
  - Runs Django's C(dumpdata) in the project's own interpreter and streams its output, through optional
    compression, into a part of kind C(fixture) of a snapshot under O(snapshot_root) - the same format, manifest and
    sha256 checksums as M(djangoops.maintenance.db_snapshot). The fixture is never held in memory.
  - A fixture is the portable snapshot - it loads into another database engine (SQLite into PostgreSQL, say) with
    M(djangoops.maintenance.django_loaddata), where a database dump cannot.
  - All tables are read in one transaction (repeatable read on PostgreSQL), so a running application cannot make
    the fixture inconsistent.
  - The number of objects per model is recorded in the part's metadata; M(djangoops.maintenance.django_loaddata)
    compares it after loading.
  - A fixture that fails midway is removed; nothing that looks complete is left behind.
extends_documentation_fragment:
  - djangoops.maintenance.django
  - djangoops.maintenance.snapshot
  - djangoops.maintenance.snapshot.write
options:
  apps:
    description:
      - App labels or C(app.Model) labels to dump (C(dumpdata shop auth.user)). Default - every app.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - App labels or C(app.Model) labels to leave out (C(--exclude)).
      - The default leaves out content types and permissions - Django re-creates them after C(flush) and
        C(migrate), and with O(natural_foreign) every reference to them is by natural key, so loading them would
        only collide with the re-created ones.
    type: list
    elements: str
    default: [contenttypes, auth.permission]
  format:
    description:
      - Serialization format. V(jsonl) (one object per line) and V(xml) are read back as a stream; Django reads a
        V(json) fixture into memory whole when loading it.
    type: str
    choices: [json, jsonl, xml]
    default: jsonl
  natural_foreign:
    description:
      - Write foreign keys to models with a natural key as that key (C(--natural-foreign)), so the fixture does not
        depend on the target's primary keys of content types, permissions or users.
    type: bool
    default: true
  natural_primary:
    description:
      - Leave out the primary key of models with a natural key (C(--natural-primary)). Loading then matches
        existing rows by natural key instead of by id; ids in the target may differ from the source.
    type: bool
    default: false
  compression:
    description:
      - V(auto) uses zstd when C(zstd) is installed, else gzip. Compression runs as a streaming process after Django.
    type: str
    choices: [auto, none, gzip, zstd]
    default: auto
  compression_level:
    description:
      - Compression level; defaults to 3 for zstd (1-19) and 6 for gzip (1-9).
    type: int
  part:
    description:
      - Name of the part the fixture is stored as.
    type: str
    default: fixtures
  encrypt_recipients:
    description:
      - Encrypt the fixture at rest with age for these recipients (age public keys C(age1...) or SSH public keys),
        in the stream after the compressor; only ciphertext is written. M(djangoops.maintenance.django_loaddata)
        then needs C(decrypt_identity). See docs/encryption.md.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Checks the project, the app and model labels and the database connection; writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
seealso:
  - module: djangoops.maintenance.django_loaddata
  - module: djangoops.maintenance.db_snapshot
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Fixture of the whole shop, portable to another database engine
  djangoops.maintenance.django_dumpdata:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    snapshot_root: /var/backups/django
    labels:
      reason: move-to-postgresql
  register: fixture

- name: Only the catalogue, as plain JSON, into the window's snapshot
  djangoops.maintenance.django_dumpdata:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    apps: [shop.category, shop.product, shop.tag]
    format: json
    compression: none
    snapshot_root: /var/backups/django
    snapshot_id: "{{ window_snapshot_id }}"
    part: catalogue
    finalize: false
'''

RETURN = r'''
snapshot_id:
  description: Id of the snapshot written to.
  returned: always
  type: str
path:
  description: Directory of the snapshot (C(<id>.partial) while not finalized).
  returned: always
  type: str
part:
  description: Name of the part written.
  returned: always
  type: str
finalized:
  description: Whether the snapshot is complete.
  returned: always
  type: bool
format:
  description: Serialization format.
  returned: always
  type: str
compression:
  description: Compression used (V(auto) resolved).
  returned: always
  type: str
files:
  description: Files written, relative to the snapshot directory, with size and sha256.
  returned: success and not check mode
  type: list
  elements: dict
bytes:
  description: Bytes written.
  returned: success and not check mode
  type: int
objects:
  description: Objects in the fixture.
  returned: success and not check mode
  type: int
counts:
  description: Objects per model label.
  returned: success and not check mode
  type: dict
  sample: {shop.product: 120, shop.order: 40, auth.user: 3}
seconds:
  description: Wall time of the dump.
  returned: success and not check mode
  type: float
django_version:
  description: Django version of the project.
  returned: always
  type: str
manifest:
  description: The snapshot's manifest, when this task finalized it.
  returned: when finalized
  type: dict
commands:
  description: The Django management commands run, as the equivalent C(manage.py) command lines.
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._django import (
    DJANGO_MUTUALLY_EXCLUSIVE, DjangoProject, django_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (
    COMPRESSION_CHOICES, check_compression, encryption_record, output_chain, resolve_compression)
from ansible_collections.djangoops.maintenance.plugins.module_utils._age import encryption_options
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import (
    Manager, run_manager, snapshot_target, snapshot_target_argument_spec)

PART_KIND = 'fixture'


class DjangoDumpdataManager(Manager):
    def run(self):
        p = self.p
        store, snapshot_id, part_name, labels = snapshot_target(p)
        compression = resolve_compression(p['compression'])
        level = check_compression(compression, p['compression_level'])
        encryption = encryption_options(p['encrypt_recipients'])
        project = DjangoProject(p)
        args = list(p['apps']) + ['--database', project.alias, '--format', p['format']]
        args += ['--exclude=%s' % e for e in p['exclude']]
        args += ['--natural-foreign'] if p['natural_foreign'] else []
        args += ['--natural-primary'] if p['natural_primary'] else []
        project.describe('dumpdata', args)
        request = dict(apps=p['apps'], exclude=p['exclude'], format=p['format'],
                       natural_foreign=p['natural_foreign'], natural_primary=p['natural_primary'])
        result = dict(changed=True, part=part_name, format=p['format'], compression=compression, finalized=False,
                      commands=project.commands)
        self.partial_result = result
        if self.module.check_mode:
            facts = project.call('dumpdata', **dict(request, dry_run=True))
            result.update(snapshot_id=snapshot_id or '(generated)', django_version=facts['django_version'],
                          path=store.path_of(snapshot_id) if snapshot_id else store.root)
            return result
        store.ensure()
        started = time.monotonic()
        builder, record, manifest = store.write_part(
            snapshot_id, part_name,
            lambda part: self.dump(project, part, request, dict(compression=compression, compression_level=level,
                                                                encryption=encryption)),
            finalize=p['finalize'], labels=labels, begun=lambda b: result.update(snapshot_id=b.id, path=b.path))
        result.update(path=builder.path, finalized=manifest is not None, files=record['files'], bytes=record['bytes'],
                      objects=record['objects'], counts=record['counts'], django_version=record['django_version'],
                      seconds=round(time.monotonic() - started, 3))
        if manifest is not None:
            result['manifest'] = manifest
        return result

    def dump(self, project, part, request, opts):
        chain, suffix = output_chain(opts, threads=0)
        hf = part.create('fixture.%s%s' % (request['format'], suffix))
        try:
            project.commands.extend(s.display() for s in chain)
            facts = project.stream(dict(request, command='dumpdata'), after=chain, sink=hf)
        except BaseException:
            hf.discard()
            raise
        hf.close()
        part.add_hashed(hf)
        meta = dict(kind=PART_KIND, format=request['format'], compression=opts['compression'],
                    compression_level=opts['compression_level'],
                    apps=request['apps'], exclude=request['exclude'], natural_foreign=request['natural_foreign'],
                    natural_primary=request['natural_primary'], counts=facts['counts'], objects=facts['objects'],
                    source=facts['vendor'], django_version=facts['django_version'], settings=project.settings,
                    database_alias=project.alias, commands=list(project.commands))
        if opts.get('encryption'):
            meta['encryption'] = encryption_record(opts, part.files)
        return dict(part.commit(meta), django_version=facts['django_version'])


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(snapshot_target_argument_spec())
    argument_spec['part']['default'] = 'fixtures'
    argument_spec.update(
        apps=dict(type='list', elements='str', default=[]),
        exclude=dict(type='list', elements='str', default=['contenttypes', 'auth.permission']),
        format=dict(type='str', default='jsonl', choices=['json', 'jsonl', 'xml']),
        natural_foreign=dict(type='bool', default=True),
        natural_primary=dict(type='bool', default=False),
        compression=dict(type='str', default='auto', choices=list(COMPRESSION_CHOICES)),
        compression_level=dict(type='int'),
        encrypt_recipients=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE)
    run_manager(module, DjangoDumpdataManager)


if __name__ == '__main__':
    main()
