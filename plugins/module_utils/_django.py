# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the one seam between the Django modules and a Django project.

The options every Django module shares (documented by the ``djangoops.maintenance.django`` doc
fragment), finding the project's interpreter and settings module, and running ``_django_helper``
in that interpreter (cwd = the project) with a JSON request and a JSON result file in a private
0700 directory. The module's own Python never imports Django.
"""

from __future__ import annotations

import ast
import inspect
import json
import os

from ansible_collections.djangoops.maintenance.plugins.module_utils import _django_helper
from ansible_collections.djangoops.maintenance.plugins.module_utils._module_support import ModuleFailure
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    Step, ToolError, display, find_tool, private_dir, run_pipeline)

HELPER_NAME = 'djangoops_django_helper.py'
HELPER_ERROR_RC = 3
VENDOR_ENGINES = {'postgresql': 'postgresql', 'mysql': 'mysql', 'sqlite': 'sqlite'}
PG_SSL_OPTIONS = {'sslmode': 'ssl_mode', 'sslrootcert': 'ssl_ca', 'sslcert': 'ssl_cert', 'sslkey': 'ssl_key'}
MYSQL_SSL_MODES = {'DISABLED': 'disable', 'PREFERRED': 'prefer', 'REQUIRED': 'require', 'VERIFY_CA': 'verify-ca',
                   'VERIFY_IDENTITY': 'verify-full'}
# OPTIONS that change where or how Django connects but have no db_snapshot equivalent.
UNMAPPED_OPTIONS = ('service', 'passfile', 'read_default_file', 'read_default_group', 'options')


def django_argument_spec():
    return dict(
        project_path=dict(type='path', required=True),
        virtualenv=dict(type='path', aliases=['venv']),
        python=dict(type='str'),
        settings=dict(type='str'),
        environment=dict(type='dict', default={}),
        secret_environment=dict(type='dict', default={}, no_log=True),
        database=dict(type='str', default='default'),
        timeout=dict(type='int'),
    )


DJANGO_MUTUALLY_EXCLUSIVE = [('virtualenv', 'python')]


def helper_source():
    """The helper's source, read through its module loader: that works from a plain checkout and
    from inside Ansible's AnsiballZ zip, where there is no file to copy."""
    loader = getattr(_django_helper, '__loader__', None)
    source = None
    if loader is not None and hasattr(loader, 'get_source'):
        source = loader.get_source(_django_helper.__name__)
    if not source:
        source = inspect.getsource(_django_helper)
    return source


def settings_from_manage_py(source):
    """The settings module manage.py sets with ``os.environ.setdefault('DJANGO_SETTINGS_MODULE', ...)``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or len(node.args) != 2:
            continue
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr == 'setdefault'):
            continue
        key, value = node.args
        if isinstance(key, ast.Constant) and key.value == 'DJANGO_SETTINGS_MODULE' \
                and isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


def env_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if value is None:
        return ''
    return str(value)


def connection_options(db, include_password=False):
    """Django's DATABASES entry (as the helper reported it) in db_snapshot's option names.

    Returns (options, unmapped): ``unmapped`` lists OPTIONS keys that matter for connecting but
    have no db_snapshot equivalent, so a role can refuse to guess."""
    engine = VENDOR_ENGINES.get(db.get('vendor'))
    conn = {'engine': engine, 'database': db.get('name')}
    unmapped = []
    if engine in ('postgresql', 'mysql'):
        host = db.get('host') or ''
        if host.startswith('/'):
            conn['login_unix_socket'] = host
        elif host:
            conn['login_host'] = host
        if db.get('port'):
            try:
                conn['login_port'] = int(db['port'])
            except ValueError:
                unmapped.append('PORT')
        if db.get('user'):
            conn['login_user'] = db['user']
        opts = db.get('options') or {}
        if engine == 'postgresql':
            for key, name in PG_SSL_OPTIONS.items():
                if opts.get(key):
                    conn[name] = opts[key]
        else:
            ssl = opts.get('ssl') if isinstance(opts.get('ssl'), dict) else {}
            for key in ('ca', 'cert', 'key'):
                if ssl.get(key):
                    conn['ssl_' + key] = ssl[key]
            mode = str(opts.get('ssl_mode') or '').upper()
            if mode in MYSQL_SSL_MODES:
                conn['ssl_mode'] = MYSQL_SSL_MODES[mode]
            if opts.get('unix_socket'):
                conn['login_unix_socket'] = opts['unix_socket']
        if opts.get('connect_timeout'):
            try:
                conn['connect_timeout'] = int(opts['connect_timeout'])
            except (TypeError, ValueError):
                unmapped.append('connect_timeout')
        unmapped += [k for k in UNMAPPED_OPTIONS if k in opts]
        if include_password and db.get('password'):
            conn['login_password'] = db['password']
    return conn, sorted(unmapped)


def password_source(password, params):
    """Which environment option variable carries the password (its name only), or None."""
    if not password:
        return None
    for option in ('secret_environment', 'environment'):
        for key, value in sorted((params.get(option) or {}).items()):
            if env_value(value) == password:
                return str(key)
    return None


class DjangoProject(object):
    """A Django project as the modules reach it: interpreter, settings, environment, alias."""

    def __init__(self, params):
        self.path = os.path.abspath(params['project_path'])
        if not os.path.isdir(self.path):
            raise ModuleFailure('project_path %s is not a directory' % self.path)
        manage_py = os.path.join(self.path, 'manage.py')
        if not os.path.isfile(manage_py):
            raise ModuleFailure('project_path %s has no manage.py; point it at the directory that holds the '
                                "project's manage.py" % self.path)
        self.python = self._python(params)
        self.alias = params.get('database') or 'default'
        self.timeout = params.get('timeout')
        self.env = dict((str(k), env_value(v)) for k, v in (params.get('environment') or {}).items())
        self.env.update((str(k), env_value(v)) for k, v in (params.get('secret_environment') or {}).items())
        self.settings = (params.get('settings') or self.env.get('DJANGO_SETTINGS_MODULE')
                         or os.environ.get('DJANGO_SETTINGS_MODULE'))
        if not self.settings:
            with open(manage_py, encoding='utf-8', errors='replace') as f:
                self.settings = settings_from_manage_py(f.read())
        if self.settings:
            self.env['DJANGO_SETTINGS_MODULE'] = self.settings
        self.commands = []

    def _python(self, params):
        if params.get('python'):
            python = params['python']
            if os.sep not in python:
                found = find_tool(python, required=False)
                if not found:
                    raise ModuleFailure('python interpreter %r was not found on PATH' % python)
                return found
            if not (os.path.isfile(python) and os.access(python, os.X_OK)):
                raise ModuleFailure('python interpreter %s does not exist or is not executable' % python)
            return python
        if params.get('virtualenv'):
            venv = params['virtualenv']
            for name in ('python', 'python3'):
                candidate = os.path.join(venv, 'bin', name)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return candidate
            raise ModuleFailure('virtualenv %s has no bin/python; is it a virtual environment?' % venv)
        found = find_tool('python3', required=False)
        if not found:
            raise ModuleFailure('no python3 on PATH; set virtualenv or python')
        return found

    def describe(self, command, args=()):
        """The equivalent manage.py command line, for ``commands`` in results (an audit trail)."""
        line = display([self.python, 'manage.py', command] + [str(a) for a in args])
        self.commands.append(line)
        return line

    # -- running the helper ------------------------------------------------------------------
    def _prepare(self, secrets, request):
        helper = secrets.write(HELPER_NAME, helper_source())
        req = dict(request, database=self.alias)
        req_path = secrets.write('request.json', json.dumps(req))
        res_path = os.path.join(secrets.path, 'result.json')
        step = Step([self.python, helper, req_path, res_path], env=self.env, cwd=self.path,
                    ok_returncodes=(0, HELPER_ERROR_RC), name='django helper (%s)' % self.python)
        return step, res_path

    def call(self, command, **request):
        """Run one helper command; returns its result dict or raises ModuleFailure."""
        return self.stream(dict(request, command=command))

    def stream(self, request, before=(), after=(), stdin_path=None, sink=None):
        """Run a helper command inside a pipeline: ``before`` steps feed its stdin, ``after`` steps
        read its stdout, and the last stdout goes to ``sink``. Returns the helper's result dict."""
        with private_dir() as secrets:
            step, res_path = self._prepare(secrets, request)
            items = list(before) + [step] + list(after)
            failure = None
            try:
                run_pipeline(items, stdin_path=stdin_path, sink=sink, timeout=self.timeout)
            except ToolError as e:
                failure = e
            result = self._read(res_path)
            if result is None:
                raise self._crash(failure or ToolError('the Django helper wrote no result'), self.timeout)
            if result.get('ok') and failure is not None:
                # Django finished but a stage around it (a compressor, the disk) failed.
                raise ModuleFailure(str(failure), failed_command=failure.command)
            return self._judge(result)

    @staticmethod
    def _read(path):
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _crash(self, error, timeout):
        if timeout and 'timed out' in str(error):
            return ModuleFailure('Django did not finish within timeout=%ss (project %s, interpreter %s); it was '
                                 'stopped' % (timeout, self.path, self.python), failed_command=error.command)
        return ModuleFailure('the Django helper could not run under interpreter %s in %s: %s'
                             % (self.python, self.path, error), failed_command=getattr(error, 'command', None))

    def _judge(self, result):
        if result.get('ok'):
            result.pop('ok')
            return result
        error = dict(result.get('error') or {})
        msg = error.pop('message', 'the Django helper failed')
        kind = error.pop('kind', 'django')
        extra = dict(django_error_kind=kind)
        tb = error.pop('traceback', None)
        if tb:
            extra['django_traceback'] = tb.splitlines()[-40:]
        extra['django_error_details'] = error
        if kind == 'no_django' or kind == 'settings':
            msg += ' (project %s, interpreter %s)' % (self.path, self.python)
        failure = ModuleFailure(msg, **extra)
        failure.kind = kind
        failure.details = error
        raise failure
