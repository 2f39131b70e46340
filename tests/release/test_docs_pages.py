# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hand-written docs stay true to the code: every YAML example uses options the modules and roles
really have, the troubleshooting page quotes exactly the messages the code raises (all of them), the
playbook page documents every collection-wide variable the playbooks and roles read, and relative
links lead somewhere."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(REPO, 'docs')
BIN = os.path.dirname(sys.executable)
FQCN = 'djangoops.maintenance.'
PREFIXES = ('djangoops_', 'window_', 'snapshot_', 'restore_', 'verify_', 'migrate_')
FENCE = re.compile(r'^```yaml\n(.*?)^```', re.S | re.M)

sys.path.insert(0, os.path.join(REPO, 'scripts'))
import docs_errors  # noqa: E402  pylint: disable=wrong-import-position


def pages():
    return sorted(glob.glob(os.path.join(DOCS, '*.md')) + glob.glob(os.path.join(DOCS, '*', '*.md'))
                  + [os.path.join(REPO, 'README.md')])


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


@pytest.fixture(scope='module')
def module_options():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.build', 'collections'),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false')
    names = [FQCN + f[:-3] for f in sorted(os.listdir(os.path.join(REPO, 'plugins', 'modules')))
             if f.endswith('.py')]
    r = subprocess.run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', '--json'] + names, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    assert r.returncode == 0, r.stderr
    options = {}
    for name, doc in json.loads(r.stdout).items():
        allowed = set()
        for opt, spec in doc['doc']['options'].items():
            allowed.add(opt)
            allowed.update(spec.get('aliases') or [])
        options[name[len(FQCN):]] = allowed
    return options


@pytest.fixture(scope='module')
def role_options():
    options = {}
    for spec_file in glob.glob(os.path.join(REPO, 'roles', '*', 'meta', 'argument_specs.yml')):
        role = spec_file.split(os.sep)[-3]
        options[role] = set(yaml.safe_load(read(spec_file))['argument_specs']['main']['options'])
    return options


def collection_variables():
    """Every collection-wide variable the playbooks and roles read."""
    found = set()
    for path in glob.glob(os.path.join(REPO, 'playbooks', '*.yml')) + glob.glob(
            os.path.join(REPO, 'roles', '*', '*', '*.yml')):
        found.update(re.findall(r'\b(djangoops_[a-z_]+)', read(path)))
    # djangoops_window is the set_stats key, not a variable; a double underscore marks a play's internal.
    return set(v for v in found if v != 'djangoops_window' and '__' not in v)


def yaml_blocks():
    for path in pages():
        for block in FENCE.findall(read(path)):
            yield os.path.relpath(path, REPO), block


def tasks_of(node):
    if isinstance(node, list):
        for item in node:
            yield from tasks_of(item)
    elif isinstance(node, dict):
        yield node
        for key in ('tasks', 'pre_tasks', 'post_tasks', 'handlers', 'block', 'rescue', 'always'):
            yield from tasks_of(node.get(key))


def variable_dicts(node):
    """Dicts of variables in an inventory or group_vars example."""
    if isinstance(node, dict):
        if any(isinstance(k, str) and k.startswith(PREFIXES) for k in node):
            yield node
        for value in node.values():
            if isinstance(value, dict):
                yield from variable_dicts(value)


def test_yaml_examples_use_real_module_and_role_options(module_options, role_options):
    known_vars = collection_variables() | set().union(*role_options.values())
    checked = 0
    for page, block in yaml_blocks():
        data = yaml.safe_load(block)
        where = '%s: %s' % (page, block.strip().splitlines()[0])
        if isinstance(data, list):
            for task in tasks_of(data):
                for key, args in task.items():
                    if key.startswith(FQCN) and key[len(FQCN):] in module_options:
                        unknown = set(args or {}) - module_options[key[len(FQCN):]]
                        assert not unknown, '%s: %s has no option(s) %s' % (where, key, sorted(unknown))
                        checked += 1
                    if key in ('ansible.builtin.include_role', 'ansible.builtin.import_role'):
                        role = args['name'][len(FQCN):]
                        unknown = set(task.get('vars') or {}) - role_options[role]
                        assert not unknown, '%s: role %s has no variable(s) %s' % (where, role, sorted(unknown))
                        checked += 1
                for group in ('module_defaults',):
                    for name in (task.get(group) or {}):
                        assert name.startswith(('group/' + FQCN, FQCN)), (where, name)
        elif isinstance(data, dict):
            for variables in variable_dicts(data):
                unknown = set(k for k in variables if k.startswith(PREFIXES)) - known_vars
                assert not unknown, '%s: no role or playbook reads %s' % (where, sorted(unknown))
                checked += 1
    assert checked > 30  # the guide alone has dozens; a parser that finds nothing must not pass


def test_troubleshooting_quotes_every_message_the_code_raises_and_no_other():
    raised = set(e['message'] for e in docs_errors.collect(REPO))
    quoted = re.findall(r'^> `(.*)`$', read(os.path.join(DOCS, 'troubleshooting.md')), re.M)
    stale = sorted(set(quoted) - raised)
    assert not stale, 'docs/troubleshooting.md quotes messages the code no longer raises: %s' % stale
    missing = sorted(raised - set(quoted))
    assert not missing, ('messages the code raises that docs/troubleshooting.md does not explain yet - add '
                         'each under its situation as a line "> `message`" (see docs/reference/errors.md '
                         'for where it comes from): %s' % missing)


def test_playbooks_page_documents_every_collection_wide_variable():
    text = read(os.path.join(DOCS, 'playbooks.md'))
    missing = sorted(v for v in collection_variables() if '`%s`' % v not in text)
    assert not missing, 'docs/playbooks.md does not document %s' % missing


def test_relative_links_lead_to_files():
    for path in pages():
        for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', read(path)):
            if re.match(r'^[a-z]+:', target):
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
            assert os.path.exists(resolved), '%s links to %s, which does not exist' % (
                os.path.relpath(path, REPO), target)
