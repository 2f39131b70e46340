#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: django_migrate
short_description: Apply or unapply Django migrations with a real plan and an exact changed status
version_added: 0.1.0
description:
  - Runs Django's C(migrate) in the project's own interpreter - every migration, one app's, or up to / back to a
    target (O(app), O(target), V(zero)), optionally O(fake) or O(fake_initial).
  - Reads the applied migrations from the C(django_migrations) table before and after and returns both;
    C(changed) is true exactly when the applied set changed. Nothing is guessed from Django's screen output.
  - Computes the plan first, with every operation and its flags. A backwards plan that contains a step which
    cannot be unapplied (a C(RunPython) or C(RunSQL) without a reverse) fails before anything runs, naming the
    step - Django itself would unapply the later migrations first and only then fail, halfway back.
    O(allow_irreversible), O(allow_destructive) and O(fail_on_model_changes) refuse forward plans the same way.
  - When a migration fails, the task fails with Django's error, the migration that failed, the migrations that
    were applied before it in this run, and which of the failed migration's schema changes are nevertheless in
    the database (MySQL and MariaDB cannot roll back DDL, so an C(ALTER TABLE) before the error stays).
  - In check mode, and with O(plan_only=true), returns the plan and the applied set it would lead to without
    touching the database; a SQLite database file that does not exist yet is not created.
extends_documentation_fragment:
  - djangoops.maintenance.django
options:
  app:
    description:
      - Migrate only this app (its label, for example C(shop)). Without it, every app is migrated to its latest
        migration.
    type: str
  target:
    description:
      - Migration of O(app) to migrate to, forwards or backwards - its name or a unique prefix (C(0003),
        C(0003_backfill)). V(zero) unapplies every migration of the app.
      - Requires O(app).
    type: str
  fake:
    description:
      - Record the plan's migrations as applied (or unapplied) without running them (C(--fake)).
    type: bool
    default: false
  fake_initial:
    description:
      - Mark an initial migration as applied when all the tables and columns it creates already exist
        (C(--fake-initial)), for databases that predate the migrations.
    type: bool
    default: false
  plan_only:
    description:
      - Only compute and return the plan, as in check mode (C(migrate --plan)).
    type: bool
    default: false
  allow_irreversible:
    description:
      - Allow a forward plan with migrations that cannot be reversed. With V(false), such a plan fails before
        anything runs, so a deploy cannot pass a point of no return without a decision.
    type: bool
    default: true
  allow_destructive:
    description:
      - Allow a plan with migrations that drop a model, a field or a table, or run raw SQL (backwards, unapplying
        a C(CreateModel) or C(AddField) drops it). With V(false), such a plan fails before anything runs.
    type: bool
    default: true
  fail_on_model_changes:
    description:
      - Fail before migrating when models have changes that no migration describes (the C(makemigrations --check)
        question) - the release is missing a migration.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Computes the plan and the resulting applied set; the database is not touched.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: The applied migrations before and after, one C(app.name) per line.
notes:
  - Like C(manage.py migrate), Django's system checks run first and fail the task on errors.
  - The flags are Django's own view of the operations. An C(AlterField) that shortens a column, or a C(RunPython)
    that deletes rows, is not flagged destructive; read the plan's operations before a risky deploy.
seealso:
  - module: djangoops.maintenance.django_info
  - module: djangoops.maintenance.db_snapshot
author:
  - djangoops maintainers (@djangoops)
'''

EXAMPLES = r'''
- name: Apply every migration (manage.py migrate)
  djangoops.maintenance.django_migrate:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    secret_environment:
      SHOP_DB_PASSWORD: "{{ vault_shop_db_password }}"
  register: migrated

- name: What would run (manage.py migrate --plan)
  djangoops.maintenance.django_migrate:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    plan_only: true
  register: plan

- name: Refuse a deploy that passes a point of no return or drops data
  djangoops.maintenance.django_migrate:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    allow_irreversible: false
    allow_destructive: false
    fail_on_model_changes: true

- name: Back to a known migration after a code rollback (manage.py migrate shop 0005)
  djangoops.maintenance.django_migrate:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    app: shop
    target: "0005"

- name: Adopt an existing database (manage.py migrate --fake-initial)
  djangoops.maintenance.django_migrate:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    fake_initial: true

- name: Record a migration that was applied by hand (manage.py migrate shop 0007 --fake)
  djangoops.maintenance.django_migrate:
    project_path: /srv/shop/current
    virtualenv: /srv/shop/venv
    app: shop
    target: 0007_order_priority
    fake: true
'''

RETURN = r'''
plan:
  description:
    - The steps in the order Django runs them, each with C(id), C(app), C(name), C(backwards), C(atomic),
      C(irreversible), C(destructive) and C(operations) (as in M(djangoops.maintenance.django_info)).
  returned: always
  type: list
  elements: dict
applied_before:
  description: Applied migrations per app before the task, in the order they were applied.
  returned: always
  type: dict
  sample: {shop: [0001_initial, 0002_product_stock_order_total]}
applied_after:
  description: Applied migrations per app after the task; in check mode, what the plan would lead to.
  returned: always
  type: dict
migrations_applied:
  description: Migrations (C(app.name)) applied by this task, in order; on failure, those applied before the failure.
  returned: always
  type: list
  elements: str
migrations_unapplied:
  description: Migrations unapplied by this task, in order.
  returned: always
  type: list
  elements: str
plan_irreversible:
  description: Ids of planned steps that cannot be reversed.
  returned: always
  type: list
  elements: str
plan_destructive:
  description: Ids of planned steps that drop data or run raw SQL.
  returned: always
  type: list
  elements: str
transactional_ddl:
  description: Whether the database rolls back schema changes of a failed atomic migration (false on MySQL/MariaDB).
  returned: always
  type: bool
model_changes:
  description: Model changes without a migration, per app (only with O(fail_on_model_changes=true)).
  returned: when O(fail_on_model_changes=true)
  type: dict
output:
  description: Django's own C(migrate) output, for the log.
  returned: when migrations ran
  type: list
  elements: str
failed_migration:
  description: The migration that failed.
  returned: when a migration failed
  type: str
  sample: shop.0007_order_priority
django_error:
  description: Django's error, C(ExceptionType - message).
  returned: when a migration failed
  type: str
schema_effects:
  description:
    - For the failed migration, each operation with C(checked) and, for added/removed fields and models, C(table),
      C(column), C(present) (found in the database now) and C(changed) (its effect is in the database although the
      migration is not recorded as applied).
  returned: when a migration failed
  type: list
  elements: dict
partial_state:
  description: Whether any schema change of the failed migration remained in the database.
  returned: when a migration failed
  type: bool
commands:
  description: The Django management commands run, as the equivalent C(manage.py) command lines.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.djangoops.maintenance.plugins.module_utils._django import (
    DJANGO_MUTUALLY_EXCLUSIVE, DjangoProject, django_argument_spec)
from ansible_collections.djangoops.maintenance.plugins.module_utils._django_helper import plan_problems
from ansible_collections.djangoops.maintenance.plugins.module_utils._django_migrations import (
    applied_diff, applied_per_app, plan_summary, predicted_after)
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import ModuleFailure, run_manager


class DjangoMigrateManager(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params

    def run(self):
        p = self.p
        if p['target'] and not p['app']:
            raise ModuleFailure('target %r needs app: a migration name is only unique within its app' % p['target'])
        project = DjangoProject(p)
        args = [a for a in (p['app'], p['target']) if a] + ['--database', project.alias]
        args += ['--fake'] if p['fake'] else []
        args += ['--fake-initial'] if p['fake_initial'] else []
        request = dict(app=p['app'], target=p['target'], model_changes=p['fail_on_model_changes'])
        if self.module.check_mode or p['plan_only']:
            project.describe('migrate', args + ['--plan'])
            facts = project.call('plan', **request)
            return self.planned(project, facts)
        project.describe('migrate', args)
        try:
            facts = project.call('migrate', fake=p['fake'], fake_initial=p['fake_initial'],
                                 allow_irreversible=p['allow_irreversible'], allow_destructive=p['allow_destructive'],
                                 fail_on_model_changes=p['fail_on_model_changes'], **request)
        except ModuleFailure as e:
            details = getattr(e, 'details', None) or {}
            if 'plan' in details and 'applied' in details:
                e.result.update(self.outcome(project, details, details.get('applied_after', details['applied'])))
                e.result.pop('django_error_details', None)
                e.result['failed_migration'] = details.get('failed_migration')
                e.result['django_error'] = details.get('django_error')
                e.result['schema_effects'] = details.get('schema_effects', [])
                e.result['partial_state'] = any(x.get('changed') for x in details.get('schema_effects', []))
                if details.get('output'):
                    e.result['output'] = details['output']
            raise
        result = self.outcome(project, facts, facts['applied_after'])
        result['output'] = facts.get('output', [])
        return result

    def planned(self, project, facts):
        problems = plan_problems(facts['plan'], self.p['allow_irreversible'], self.p['allow_destructive'])
        if self.p['fail_on_model_changes'] and facts.get('model_changes'):
            problems.append('models have changes without a migration: %s' % '; '.join(
                '%s: %s' % (a, ', '.join(c)) for a, c in sorted(facts['model_changes'].items())))
        after = predicted_after(facts['applied'], facts['plan'])
        result = self.outcome(project, facts, after)
        if not self.module.check_mode:
            result['changed'] = False  # plan_only: nothing was run
        if problems:
            raise ModuleFailure('refusing to migrate, nothing was run: ' + ' | '.join(problems), **result)
        return result

    def outcome(self, project, facts, after):
        before = facts['applied']
        result = dict(changed=set(before) != set(after), commands=project.commands,
                      applied_before=applied_per_app(before), applied_after=applied_per_app(after),
                      migrations_applied=[s['id'] for s in facts['plan'] if not s['backwards'] and s['id'] in after
                                          and s['id'] not in before],
                      migrations_unapplied=[s['id'] for s in facts['plan'] if s['backwards'] and s['id'] in before
                                            and s['id'] not in after],
                      transactional_ddl=facts.get('transactional_ddl'))
        summary = plan_summary(facts['plan'])
        summary.pop('pending_count')
        result.update(summary)
        if 'model_changes' in facts:
            result['model_changes'] = facts['model_changes']
        if self.module._diff:
            result['diff'] = applied_diff(before, after)
        return result


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(
        app=dict(type='str'),
        target=dict(type='str'),
        fake=dict(type='bool', default=False),
        fake_initial=dict(type='bool', default=False),
        plan_only=dict(type='bool', default=False),
        allow_irreversible=dict(type='bool', default=True),
        allow_destructive=dict(type='bool', default=True),
        fail_on_model_changes=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE + [('fake', 'fake_initial')])
    run_manager(module, DjangoMigrateManager)


if __name__ == '__main__':
    main()
