# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's modules for real from tests.

``run_module`` executes a module file the way Ansible's module runner does after unpacking it
(``python -m <module> <args.json>``): real module code, real tools, a second or less per call.
``run_playbook`` runs ansible-playbook for tests of packaging, roles and playbooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_PATH = os.path.join(REPO, '.build', 'collections')
MODULE_PKG = 'ansible_collections.djangoops.maintenance.plugins.modules.'


def ensure_collection_link():
    link = os.path.join(COLLECTIONS_PATH, 'ansible_collections', 'djangoops', 'maintenance')
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)


class ModuleResult(dict):
    rc = None
    stderr = ''
    argv = None

    @property
    def failed(self):
        return bool(self.get('failed')) or self.rc != 0


def module_env(extra=None):
    env = dict(os.environ)
    env['PYTHONPATH'] = COLLECTIONS_PATH + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env.update(extra or {})
    return env


def as_user(user):
    """run_module's ``wrapper``/``python``/``env`` for running a module as ``user`` (not root): the system
    Python (this venv's interpreter lives under /root) with this venv's packages on its path."""
    site = sysconfig.get_paths()['purelib']
    return dict(wrapper=['runuser', '-u', user, '--'], python='/usr/bin/python3',
                env={'PYTHONPATH': COLLECTIONS_PATH + os.pathsep + site})


def run_module(name, args, check=False, diff=False, env=None, python=None, wrapper=None, timeout=600, user=None):
    """Run module ``name`` with ``args``; returns a ModuleResult (the module's JSON result). ``user``: run it
    as that user (see as_user)."""
    ensure_collection_link()
    if user:
        runas = as_user(user)
        wrapper, python, env = runas['wrapper'], runas['python'], dict(env or {}, **runas['env'])
    payload = {'ANSIBLE_MODULE_ARGS': dict(args, _ansible_check_mode=check, _ansible_diff=diff)}
    fd, path = tempfile.mkstemp(prefix='djangoops-args-', suffix='.json')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(payload, f)
        if user:
            shutil.chown(path, user)
        argv = list(wrapper or []) + [python or sys.executable, '-m', MODULE_PKG + name, path]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=module_env(env),
                           timeout=timeout, check=False)
    finally:
        os.unlink(path)
    out = p.stdout.decode('utf-8', 'replace')
    result = None
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith('{'):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
    if result is None:
        raise AssertionError('module %s printed no JSON result (rc=%s)\nstdout:\n%s\nstderr:\n%s'
                             % (name, p.returncode, out[-4000:], p.stderr.decode('utf-8', 'replace')[-4000:]))
    res = ModuleResult(result)
    res.rc = p.returncode
    res.stderr = p.stderr.decode('utf-8', 'replace')
    res.stdout = out
    res.argv = argv
    return res


def assert_exclusions_refused(args, cases):
    """db_snapshot with ``args`` and each case ``(exclude_table_data, check mode, message)``: refused with a
    message containing ``message``, and nothing written under ``args['snapshot_root']``."""
    root = args['snapshot_root']
    for names, check_mode, message in cases:
        r = run_module('db_snapshot', dict(args, exclude_table_data=names), check=check_mode)
        assert r.failed and message in r['msg'], (names, r['msg'])
        assert not os.path.exists(root) or os.listdir(root) == [], 'nothing written'


def run_playbook(playbook, inventory='localhost,', extra_vars=None, env=None, args=(), cwd=None, timeout=1200,
                 bindir=None):
    """ansible-playbook (of ``bindir``, default this venv's) with this collection on the collections path;
    returns CompletedProcess."""
    ensure_collection_link()
    e = module_env(env)
    e['ANSIBLE_COLLECTIONS_PATH'] = COLLECTIONS_PATH
    e.setdefault('ANSIBLE_COLLECTIONS_SCAN_SYS_PATH', 'false')
    e.setdefault('ANSIBLE_HOST_KEY_CHECKING', 'false')
    e.setdefault('ANSIBLE_NOCOLOR', '1')
    e.setdefault('ANSIBLE_RETRY_FILES_ENABLED', 'false')
    e.setdefault('ANSIBLE_PYTHON_INTERPRETER', sys.executable)
    bindir = bindir or os.path.dirname(sys.executable)
    argv = [os.path.join(bindir, 'ansible-playbook'), '-i', inventory, playbook] + list(args)
    if extra_vars:
        argv += ['-e', json.dumps(extra_vars)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e, cwd=cwd,
                          timeout=timeout, check=False, universal_newlines=True)
