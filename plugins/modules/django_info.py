#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: django_info
short_description: Facts about a Django project - database settings, migration state and plan, model changes, checks
version_added: 0.1.0
description:
  - Runs Django in the project's own interpreter and reports, as data rather than screen text, what an operator
    otherwise reads off C(manage.py showmigrations), C(migrate --plan), C(makemigrations --check) and C(check).
  - The database settings of the alias, resolved to the connection options of M(djangoops.maintenance.db_snapshot)
    (RV(database.connection)) so a role can snapshot exactly the database Django uses.
  - The applied migrations per app, in the order they were applied, and applied migrations that no longer exist on
    disk (a code rollback leaves those).
  - The forward plan of unapplied migrations in the order C(migrate) would run them, each with its operations and
    flags - C(irreversible) (a C(RunPython)/C(RunSQL) without a reverse, or any operation that cannot be
    reversed), C(destructive) (drops a model, a field or a table, or runs raw SQL) and C(atomic).
  - Apps whose models have changes that no migration describes, and the result of the system checks (with the
    deployment checks when asked).
  - Never changes anything; a SQLite database file that does not exist yet is not created.
extends_documentation_fragment:
  - djangoops.maintenance.django
options:
  gather:
    description:
      - What to collect. V(settings) needs no database connection; V(migrations) and V(checks) connect.
      - Settings facts (Django version, database, media and static roots) are always returned.
    type: list
    elements: str
    choices: [settings, migrations, model_changes, checks]
    default: [settings, migrations, model_changes, checks]
  check_deploy:
    description:
      - Include Django's deployment checks (C(manage.py check --deploy)).
    type: bool
    default: false
  include_password:
    description:
      - Return the database password in RV(database.password) and as C(login_password) in RV(database.connection), so the
        connection can be handed to M(djangoops.maintenance.db_snapshot) unchanged.
      - Register such a task with C(no_log=true). Otherwise the password is never returned and
        RV(database.password_set) tells whether there is one.
      - A password given in O(secret_environment) stays masked by Ansible even then; the play already has it.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
seealso:
  - module: djangoops.maintenance.django_migrate
  - module: djangoops.maintenance.db_snapshot
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: What would migrate do?
  djangoops.maintenance.django_info:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    environment:
      SHOP_DB_ENGINE: postgresql
      SHOP_DB_HOST: db1.internal
    secret_environment:
      SHOP_DB_PASSWORD: "{{ vault_shop_db_password }}"
  register: django

- name: Stop when a model change has no migration (makemigrations --check)
  ansible.builtin.assert:
    that: django.model_changes | length == 0
    fail_msg: "models changed without a migration: {{ django.model_changes }}"

- name: Database settings only, without connecting, password included for the next task
  djangoops.maintenance.django_info:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    gather: [settings]
    include_password: true
  register: django_db
  no_log: true

- name: Snapshot exactly the database Django uses
  djangoops.maintenance.db_snapshot:
    engine: "{{ django_db.database.connection.engine }}"
    database: "{{ django_db.database.connection.database }}"
    login_host: "{{ django_db.database.connection.login_host | default(omit) }}"
    login_port: "{{ django_db.database.connection.login_port | default(omit) }}"
    login_user: "{{ django_db.database.connection.login_user | default(omit) }}"
    login_password: "{{ django_db.database.connection.login_password | default(omit) }}"
    snapshot_root: /var/backups/django

- name: Deployment checks must pass before a release goes live
  djangoops.maintenance.django_info:
    project_path: /srv/shop/releases/42
    virtualenv: /srv/shop/venv
    settings: shopsite.settings
    gather: [checks]
    check_deploy: true
  register: checks
  failed_when: checks.checks.errors > 0
'''

RETURN = r'''
django_version:
  description: Django version of the project's interpreter.
  returned: always
  type: str
  sample: 5.2.8
python:
  description: Interpreter that ran Django.
  returned: always
  type: str
  sample: /srv/shop/venv/bin/python
python_version:
  description: Its Python version.
  returned: always
  type: str
  sample: 3.11.2
settings:
  description: Settings module used.
  returned: always
  type: str
  sample: shopsite.settings
project_path:
  description: The project directory.
  returned: always
  type: str
database:
  description: The database alias's settings.
  returned: always
  type: dict
  contains:
    alias:
      description: The alias.
      type: str
    engine:
      description: V(postgresql), V(mysql) or V(sqlite); null for other backends.
      type: str
    vendor:
      description: Django's vendor name of the backend.
      type: str
    django_engine:
      description: Django's C(ENGINE) setting.
      type: str
    name:
      description: Database name; for SQLite the absolute path of the file.
      type: str
    host:
      description: C(HOST) setting.
      type: str
    port:
      description: C(PORT) setting.
      type: str
    user:
      description: C(USER) setting.
      type: str
    password_set:
      description: Whether a password is configured.
      type: bool
    password:
      description: The password; only with O(include_password=true).
      type: str
    options:
      description: C(OPTIONS), with any password-like key masked.
      type: dict
    transactional_ddl:
      description: Whether schema changes roll back with a failed migration (PostgreSQL, SQLite); MySQL cannot.
      type: bool
    connection:
      description:
        - The settings in M(djangoops.maintenance.db_snapshot)'s option names - C(engine), C(database),
          C(login_host) or C(login_unix_socket), C(login_port), C(login_user), C(ssl_mode), C(ssl_ca), C(ssl_cert),
          C(ssl_key), C(connect_timeout), and C(login_password) with O(include_password=true). Keys are left out when
          Django's setting is empty.
      type: dict
    unmapped_options:
      description: C(OPTIONS) keys that change how Django connects but have no db_snapshot equivalent (C(service), C(read_default_file), ...).
      type: list
      elements: str
    password_env:
      description:
        - Name of the O(secret_environment) or O(environment) variable whose value is the password, when there is
          one. Ansible masks a value given in O(secret_environment) in every result, so with O(include_password=true)
          such a password comes back masked; a play hands on its own C(secret_environment[password_env]) instead.
      type: str
media_root:
  description: MEDIA_ROOT.
  returned: always
  type: str
  sample: /srv/shop/media
media_url:
  description: MEDIA_URL.
  returned: always
  type: str
static_root:
  description: STATIC_ROOT.
  returned: always
  type: str
static_url:
  description: STATIC_URL.
  returned: always
  type: str
installed_apps:
  description: App labels, in INSTALLED_APPS order.
  returned: always
  type: list
  elements: str
applied_migrations:
  description: Applied migrations per app, in the order they were applied.
  returned: when migrations are gathered
  type: dict
  sample: {shop: [0001_initial, 0002_product_stock_order_total]}
applied_count:
  description: Number of applied migrations.
  returned: when migrations are gathered
  type: int
applied_not_on_disk:
  description: Applied migrations (C(app.name)) with no migration file on disk.
  returned: when migrations are gathered
  type: list
  elements: str
plan:
  description: The unapplied migrations in the order C(migrate) would apply them.
  returned: when migrations are gathered
  type: list
  elements: dict
  contains:
    id:
      description: C(app.name).
      type: str
    app:
      description: App label.
      type: str
    name:
      description: Migration name.
      type: str
    backwards:
      description: Always false here (a forward plan).
      type: bool
    atomic:
      description: Whether Django runs the migration in one transaction.
      type: bool
    irreversible:
      description: Whether any operation cannot be reversed.
      type: bool
    destructive:
      description: Whether any operation drops a model, a field or a table, or runs raw SQL.
      type: bool
    operations:
      description: Each operation - C(type), C(description), C(irreversible), C(destructive), C(code) (the RunPython function).
      type: list
      elements: dict
  sample:
    - id: shop.0004_normalize_skus
      app: shop
      name: 0004_normalize_skus
      backwards: false
      atomic: true
      irreversible: true
      destructive: false
      operations:
        - {type: RunPython, description: Raw Python operation, code: upper_case_skus, irreversible: true, destructive: false}
pending_count:
  description: Number of unapplied migrations.
  returned: when migrations are gathered
  type: int
plan_irreversible:
  description: Ids of planned migrations that cannot be reversed.
  returned: when migrations are gathered
  type: list
  elements: str
plan_destructive:
  description: Ids of planned migrations that drop data or run raw SQL.
  returned: when migrations are gathered
  type: list
  elements: str
model_changes:
  description: Per app, the operations a C(makemigrations) would write - model changes without a migration. Empty when none.
  returned: when model_changes are gathered
  type: dict
  sample: {shop: [Add field weight_grams to product]}
checks:
  description: Result of Django's system checks (silenced ones left out).
  returned: when checks are gathered
  type: dict
  contains:
    deploy:
      description: Whether the deployment checks ran.
      type: bool
    errors:
      description: Messages of level ERROR or CRITICAL.
      type: int
    warnings:
      description: Messages of level WARNING.
      type: int
    messages:
      description: Each message - C(id), C(level), C(msg), C(hint), C(obj).
      type: list
      elements: dict
commands:
  description: The Django management commands run, as the equivalent C(manage.py) command lines.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._django import (
    DJANGO_MUTUALLY_EXCLUSIVE, DjangoProject, connection_options, django_argument_spec, password_source)
from ansible_collections.djangoops.maintenance.plugins.module_utils._django_migrations import (
    applied_per_app, plan_summary)
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import run_manager

GATHER = ['settings', 'migrations', 'model_changes', 'checks']


class DjangoInfoManager(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def run(self):
        project = DjangoProject(self.p)
        gather = self.p['gather']
        if 'migrations' in gather:
            project.describe('showmigrations', ['--database', project.alias])
            project.describe('migrate', ['--plan', '--database', project.alias])
        if 'model_changes' in gather:
            project.describe('makemigrations', ['--check', '--dry-run'])
        if 'checks' in gather:
            project.describe('check', ['--database', project.alias] + (['--deploy'] if self.p['check_deploy'] else []))
        facts = project.call('info', gather=gather, check_deploy=self.p['check_deploy'])
        result = dict(changed=False, commands=project.commands, project_path=project.path, python=project.python,
                      settings=facts['settings_module'])
        for key in ('django_version', 'python_version', 'media_root', 'media_url', 'static_root', 'static_url',
                    'installed_apps'):
            result[key] = facts[key]
        result['database'] = self.database(facts['database'])
        if 'applied' in facts:
            result['applied_migrations'] = applied_per_app(facts['applied'])
            result['applied_count'] = len(facts['applied'])
            result['applied_not_on_disk'] = facts['applied_not_on_disk']
            result.update(plan_summary(facts['plan']))
        if 'model_changes' in facts:
            result['model_changes'] = facts['model_changes']
        if 'checks' in facts:
            result['checks'] = facts['checks']
        return result

    def database(self, db):
        include = self.p['include_password']
        conn, unmapped = connection_options(db, include_password=include)
        keys = ('alias', 'vendor', 'django_engine', 'name', 'host', 'port', 'user', 'options', 'transactional_ddl')
        out = dict((k, db.get(k)) for k in keys)
        out.update(engine=conn['engine'], password_set=bool(db.get('password')), connection=conn,
                   unmapped_options=unmapped, password_env=password_source(db.get('password'), self.p))
        if include:
            out['password'] = db.get('password') or ''
        return out


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(
        gather=dict(type='list', elements='str', choices=GATHER, default=list(GATHER)),
        check_deploy=dict(type='bool', default=False),
        include_password=dict(type='bool', default=False, no_log=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE)
    run_manager(module, DjangoInfoManager)


if __name__ == '__main__':
    main()
