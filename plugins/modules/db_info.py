#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: db_info
short_description: Facts about a PostgreSQL, MySQL/MariaDB or SQLite database, per-table statistics and read-only checks
version_added: 0.1.0
description:
  - Reports server and client versions, whether the database exists and its size.
  - With O(table_stats), per-table row counts and optionally content checksums, the same figures
    M(djangoops.maintenance.db_snapshot) records, so a deploy can be checked against its snapshot.
  - With O(queries), runs the given SQL in one read-only transaction (SQLite - a read-only connection) and returns
    the rows; the verify role compares them with expected results.
extends_documentation_fragment:
  - djangoops.maintenance.connection
options:
  table_stats:
    description:
      - V(counts) returns row counts per table, V(checksums) also content checksums (reads every row).
    type: str
    choices: [none, counts, checksums]
    default: none
  queries:
    description:
      - SQL statements run in one read-only transaction; their rows are returned in order in RV(query_results).
      - Statements that try to change data fail.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Row counts after the migration
  djangoops.maintenance.db_info:
    engine: postgresql
    database: shop
    login_user: shop_owner
    login_password: "{{ vault_shop_password }}"
    table_stats: counts
  register: db

- name: Business checks
  djangoops.maintenance.db_info:
    engine: sqlite
    database: /srv/shop/db.sqlite3
    queries:
      - SELECT count(*) FROM shop_product WHERE price IS NULL
  register: checks
  failed_when: checks.query_results[0][0][0] != 0
'''

RETURN = r'''
server_version:
  description: Version of the database server (SQLite - the library).
  returned: always
  type: str
client_version:
  description: Version of the client tools the snapshot modules would use.
  returned: always
  type: str
database:
  description: The database (SQLite - file path).
  returned: always
  type: str
database_exists:
  description: Whether the database exists.
  returned: always
  type: bool
database_bytes:
  description: Size of the database as the server reports it.
  returned: always
  type: int
tables:
  description: Per-table C(rows) and C(checksum) (null unless O(table_stats=checksums)).
  returned: when O(table_stats) is not V(none)
  type: dict
  sample: {public.shop_product: {rows: 1200, checksum: null}}
query_results:
  description: For each query, its rows as lists of values (bytes as hex, decimals and dates as text).
  returned: always
  type: list
  elements: list
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import TABLE_STATS
from ansible_collections.djangoops.maintenance.plugins.module_utils._engines import (
    connection_argument_spec, connection_params, get_engine)
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import ModuleFailure, run_manager
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import private_dir


class DbInfoManager(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def run(self):
        p = self.p
        with private_dir() as secrets:
            engine = get_engine(p['engine'], connection_params(p), secrets)
            probe = engine.probe()
            result = dict(changed=False, server_version=probe['server_version'],
                          client_version=probe['client_version'], database=probe['database'],
                          database_exists=probe['database_exists'], database_bytes=probe['database_bytes'],
                          query_results=[])
            if (p['table_stats'] != 'none' or p['queries']) and not probe['database_exists']:
                raise ModuleFailure('database %s does not exist' % probe['database'], **result)
            if p['table_stats'] != 'none':
                result['tables'] = engine.table_stats(p['table_stats'])
            if p['queries']:
                result['query_results'] = engine.run_queries(p['queries'])
        return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        table_stats=dict(type='str', default='none', choices=list(TABLE_STATS)),
        queries=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_manager(module, DbInfoManager)


if __name__ == '__main__':
    main()
