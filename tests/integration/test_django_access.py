# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the Django modules reach a project: bad input gives a clear error naming the bad value, the
database password never shows, and the helper program works from inside Ansible's AnsiballZ zip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from support.django_project import PROJECT, django_venvs, shop_factory  # noqa: F401  pylint: disable=unused-import
from support.modules import COLLECTIONS_PATH, run_module, run_playbook
from support.servers import free_port
from support.watch import assert_secret_absent, run_module_traced


@pytest.fixture
def shop(shop_factory):  # noqa: F811
    return shop_factory('5.2', 'sqlite')


BLOCK_DJANGO = """
import sys
if sys.prefix == %r:
    class _NoDjango(object):
        def find_spec(self, name, path=None, target=None):
            if name == 'django' or name.startswith('django.'):
                raise ImportError('django is blocked in the module interpreter by the test')
    sys.meta_path.insert(0, _NoDjango())
"""


def test_module_interpreter_needs_no_django(shop, tmp_path):
    """The module's own Python cannot import Django here; only the project's interpreter runs it."""
    blocker = tmp_path / 'block'
    blocker.mkdir()
    (blocker / 'sitecustomize.py').write_text(BLOCK_DJANGO % sys.prefix)
    env = {'PYTHONPATH': os.pathsep.join([str(blocker), COLLECTIONS_PATH])}
    probe = subprocess.run([sys.executable, '-c', 'import django'], env=dict(os.environ, **env), check=False,
                           stderr=subprocess.PIPE, universal_newlines=True)
    assert probe.returncode != 0 and 'blocked' in probe.stderr, 'the blocker must work for this test to mean anything'
    r = run_module('django_migrate', shop.args(), env=env)
    assert not r.failed, r
    assert r['applied_after']['shop'][-1] == '0007_order_priority'


def test_project_path_without_manage_py(shop, tmp_path):
    r = shop.run('django_info', project_path=str(tmp_path))
    assert r.failed and 'has no manage.py' in r['msg'] and str(tmp_path) in r['msg']
    r = shop.run('django_info', project_path=str(tmp_path / 'nope'))
    assert r.failed and 'is not a directory' in r['msg']


def test_wrong_settings_module(shop):
    r = shop.run('django_info', settings='shopsite.nosuchsettings')
    assert r.failed and "settings module 'shopsite.nosuchsettings' cannot be found" in r['msg']
    assert r['django_error_kind'] == 'settings'
    r = shop.run('django_migrate', extra_env={'SHOP_DB_ENGINE': 'oracle'})
    assert r.failed and "settings module 'shopsite.settings' failed to load" in r['msg'] and "'oracle'" in r['msg']


def test_interpreter_without_django(shop, tmp_path):
    python = shutil.which('python3', path='/usr/bin')
    args = shop.args(gather=['settings'])
    del args['virtualenv']
    r = run_module('django_info', dict(args, python=python))
    assert r.failed
    assert 'Django is not importable by the interpreter %s' % python in r['msg']
    assert r['django_error_kind'] == 'no_django'
    r = run_module('django_info', dict(args, virtualenv=str(tmp_path)))
    assert r.failed and 'virtualenv %s has no bin/python' % tmp_path in r['msg']
    r = run_module('django_info', dict(args, python='/nonexistent/python3'))
    assert r.failed and '/nonexistent/python3 does not exist' in r['msg']


SLOW_SETTINGS = """
import time
time.sleep(float(__import__('os').environ.get('SLOW_SECONDS', '0')))
SECRET_KEY = 'x'
INSTALLED_APPS = []
DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': 'db.sqlite3'}}
"""


def test_timeout_stops_django(shop, tmp_path):
    """A project that hangs (here: its settings sleep) is stopped after timeout seconds."""
    (tmp_path / 'manage.py').write_text("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'slow')\n")
    (tmp_path / 'slow.py').write_text(SLOW_SETTINGS)
    args = dict(project_path=str(tmp_path), virtualenv=shop.venv, environment={'SLOW_SECONDS': '60'}, timeout=2)
    started = time.monotonic()
    r = run_module('django_info', args)
    assert r.failed and 'Django did not finish within timeout=2s' in r['msg'], r
    assert time.monotonic() - started < 30
    r = run_module('django_info', dict(args, environment={'SLOW_SECONDS': '0'}))
    assert not r.failed, r
    assert r['settings'] == 'slow' and r['applied_count'] == 0
    assert r['database']['connection'] == {'engine': 'sqlite', 'database': str(tmp_path / 'db.sqlite3')}
    assert not (tmp_path / 'db.sqlite3').exists()


def test_unknown_app_and_migration(shop):
    r = shop.run('django_migrate', app='nosuchapp')
    assert r.failed and "no installed app with label 'nosuchapp'" in r['msg'] and 'shop' in r['msg']
    r = shop.run('django_migrate', app='staticfiles', check=True)
    assert r.failed and "app 'staticfiles' has no migrations" in r['msg']
    r = shop.run('django_migrate', app='shop', target='0099_nope')
    assert r.failed and "app 'shop' has no migration '0099_nope'" in r['msg'] and '0004_normalize_skus' in r['msg']
    r = shop.run('django_migrate', app='shop', target='000')
    assert r.failed and "more than one migration of app 'shop' matches '000'" in r['msg']
    r = shop.run('django_migrate', target='0003')
    assert r.failed and "target '0003' needs app" in r['msg']
    r = shop.run('django_migrate', database='replica')
    assert r.failed and "database alias 'replica' is not in DATABASES" in r['msg'] and 'default' in r['msg']
    assert shop.recorded() is None


def test_database_unreachable(shop, tmp_path):
    port = free_port()
    env = {'SHOP_DB_ENGINE': 'postgresql', 'SHOP_DB_HOST': '127.0.0.1', 'SHOP_DB_PORT': str(port),
           'SHOP_DB_NAME': 'shop', 'SHOP_DB_USER': 'shop'}
    r = shop.run('django_migrate', extra_env=env)
    assert r.failed and r['django_error_kind'] == 'database_unreachable'
    assert "cannot connect to database 'default' (postgresql shop at 127.0.0.1:%d)" % port in r['msg']
    env.update(SHOP_DB_ENGINE='mysql')
    r = shop.run('django_info', extra_env=env)
    assert r.failed and 'cannot connect to database' in r['msg'] and 'mysql' in r['msg']
    # Settings alone need no database.
    r = shop.run('django_info', extra_env=env, gather=['settings'])
    expected = {'engine': 'mysql', 'database': 'shop', 'login_host': '127.0.0.1', 'login_port': port,
                'login_user': 'shop'}
    assert not r.failed and r['database']['connection'] == expected
    r = shop.run('django_migrate', extra_env={'SHOP_DB_NAME': str(tmp_path / 'no' / 'dir' / 'db.sqlite3')})
    assert r.failed and 'cannot connect' in r['msg'] and 'db.sqlite3' in r['msg']


def test_password_never_shows(shop_factory):  # noqa: F811
    shop = shop_factory('5.2', 'postgresql')
    password = shop.secret_env['SHOP_DB_PASSWORD']
    result, execs = run_module_traced('django_info', shop.args())
    assert not result.failed, result
    assert result['database']['password_set'] is True and 'password' not in result['database']
    assert 'login_password' not in result['database']['connection']
    expected = {'engine': 'postgresql', 'database': shop.dbname, 'login_host': '127.0.0.1',
                'login_port': shop.server.port, 'login_user': 'postgres', 'ssl_mode': 'prefer'}
    assert result['database']['connection'] == expected
    assert any(a[0].endswith('/bin/python') and a[1].endswith('djangoops_django_helper.py') for a in execs)
    assert_secret_absent(password, result, execs, result.stderr, result.stdout)

    result, execs = run_module_traced('django_migrate', shop.args(app='shop', target='0001'))
    assert not result.failed, result
    assert_secret_absent(password, result, execs, result.stderr, result.stdout)

    # A password from secret_environment is masked by Ansible even when asked for: the play has it.
    r = shop.run('django_info', gather=['settings'], include_password=True)
    assert r['database']['password'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert r['database']['password_env'] == 'SHOP_DB_PASSWORD'
    # One the host provides (the task's environment keyword, a settings file) is handed on when asked for.
    args = shop.args(gather=['settings'], include_password=True, secret_environment={})
    r = run_module('django_info', args, env={'SHOP_DB_PASSWORD': password})
    assert r['database']['password'] == password and r['database']['password_env'] is None
    assert r['database']['connection']['login_password'] == password


PLAYBOOK = '''
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    project: {project}
    venv: {venv}
    env:
      SHOP_DB_NAME: {db}
      SHOP_MEDIA_ROOT: {media}
  tasks:
    - name: Facts
      djangoops.maintenance.django_info:
        project_path: "{{{{ project }}}}"
        virtualenv: "{{{{ venv }}}}"
        environment: "{{{{ env }}}}"
        secret_environment:
          SHOP_SECRET_KEY: not-shown-anywhere-1234
      register: facts
    - name: Plan in check mode
      djangoops.maintenance.django_migrate:
        project_path: "{{{{ project }}}}"
        virtualenv: "{{{{ venv }}}}"
        environment: "{{{{ env }}}}"
      check_mode: true
      diff: true
      register: planned
    - name: Migrate
      djangoops.maintenance.django_migrate:
        project_path: "{{{{ project }}}}"
        virtualenv: "{{{{ venv }}}}"
        environment: "{{{{ env }}}}"
      register: migrated
    - name: Fixture
      djangoops.maintenance.django_dumpdata:
        project_path: "{{{{ project }}}}"
        virtualenv: "{{{{ venv }}}}"
        environment: "{{{{ env }}}}"
        snapshot_root: {root}
      register: fixture
    - name: Load it back
      djangoops.maintenance.django_loaddata:
        project_path: "{{{{ project }}}}"
        virtualenv: "{{{{ venv }}}}"
        environment: "{{{{ env }}}}"
        snapshot_root: {root}
        flush: true
      register: loaded
    - name: Judge
      ansible.builtin.assert:
        that:
          - facts.plan | length == planned.plan | length
          - facts.applied_count == 0
          - planned is changed
          - migrated is changed
          - migrated.applied_after.shop | length == 7
          - loaded.counts_match
    - name: Results for the test
      ansible.builtin.copy:
        content: "{{{{ {{'facts': facts, 'migrated': migrated}} | to_json }}}}"
        dest: {out}
        mode: "0600"
'''


def test_through_ansible_playbook(shop, tmp_path):
    """AnsiballZ ships module_utils in a zip: the helper's source must come out of it."""
    playbook = tmp_path / 'site.yml'
    out = tmp_path / 'out.json'
    playbook.write_text(PLAYBOOK.format(project=PROJECT, venv=shop.venv, db=shop.dbname, media=shop.media,
                                        root=tmp_path / 'snaps', out=out))
    p = run_playbook(str(playbook), env={'ANSIBLE_PYTHON_INTERPRETER': sys.executable}, args=['-v'])
    assert p.returncode == 0, p.stdout[-6000:]
    assert 'failed=0' in p.stdout
    assert 'not-shown-anywhere-1234' not in p.stdout
    with open(out, encoding='utf-8') as f:
        got = json.load(f)
    assert got['migrated']['applied_after']['shop'][-1] == '0007_order_priority'
    assert 'not-shown-anywhere-1234' not in json.dumps(got)
    assert os.path.isfile(shop.dbname)
