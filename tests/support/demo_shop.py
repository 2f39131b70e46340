# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo shop laid out as scripts/demo.sh lays it out (releases/, a ``current`` link or a plain live tree,
SQLite and media under shared/, gunicorn on a free port of 127.0.0.1), for the deploy playbook tests."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

from support.modules import REPO
from support.servers import free_port

BYPASS = 'runner-test-bypass'


class DemoShop(object):
    """The demo shop installed under ``root``, release 1.0 live, 2.0 (good) and 3.0 (bad) staged."""

    def __init__(self, root, python, in_place=False):
        self.root = root
        self.app = os.path.join(root, 'srv', 'shop')
        # in_place: the live code is a plain directory the releases are copied over (no symlink switch)
        self.in_place = in_place
        self.live = os.path.join(self.app, 'live' if in_place else 'current')
        self.python = python
        self.port = free_port()
        self.env_file = os.path.join(self.app, 'shared', 'app.env')
        self.db = os.path.join(self.app, 'shared', 'db.sqlite3')
        self.pidfile = os.path.join(self.app, 'run', 'app.pid')
        self.environment = {'SHOP_DB_ENGINE': 'sqlite', 'SHOP_DB_NAME': self.db,
                            'SHOP_MEDIA_ROOT': os.path.join(self.app, 'shared', 'media')}

    def install(self):
        for d in ('releases', 'shared/media', 'run'):
            os.makedirs(os.path.join(self.app, d))
        subprocess.run([sys.executable, os.path.join(REPO, 'demo', 'releases.py'),
                        os.path.join(self.app, 'releases')], check=True, stdout=subprocess.DEVNULL)
        if self.in_place:
            shutil.copytree(os.path.join(self.app, 'releases', '1.0'), self.live, symlinks=True)
            with open(os.path.join(self.live, 'RELEASE'), 'w', encoding='utf-8') as f:
                f.write('1.0\n')
        else:
            os.symlink(os.path.join(self.app, 'releases', '1.0'), self.live)
        env = dict(self.environment, SHOP_MAINTENANCE_FLAG=os.path.join(self.app, 'maintenance.on'),
                   SHOP_MAINTENANCE_BYPASS=BYPASS, SHOP_ALLOWED_HOSTS='127.0.0.1,localhost')
        with open(self.env_file, 'w', encoding='utf-8') as f:
            f.write(''.join('%s=%s\n' % kv for kv in sorted(env.items())))
        manage = [self.python, os.path.join(self.live, 'manage.py')]
        run_env = dict(os.environ, **env)
        subprocess.run(manage + ['migrate', '-v0'], env=run_env, check=True)
        subprocess.run(manage + ['seed_demo', '--products', '20', '--orders', '30', '--with-images', '-v0'],
                       env=run_env, check=True)
        subprocess.run(self.appctl('start') + ['--bind', '127.0.0.1:%d' % self.port, '--env-file', self.env_file,
                                               '--workers', '1'], check=True, stdout=subprocess.DEVNULL)

    def appctl(self, action):
        return [self.python, os.path.join(self.live, 'bin', 'appctl.py'), action, '--pidfile', self.pidfile]

    def stop(self):
        if os.path.exists(self.pidfile):
            subprocess.run(self.appctl('stop'), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def data(self):
        con = sqlite3.connect(self.db)
        try:
            return '\n'.join(con.iterdump())
        finally:
            con.close()

    def inventory(self):
        start = self.appctl('start') + ['--bind', '127.0.0.1:%d' % self.port, '--env-file', self.env_file,
                                        '--workers', '1']
        health = 'http://127.0.0.1:%d/health/' % self.port
        return {'all': {'children': {'django': {'hosts': {'demo-shop': {
            'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}}}, 'vars': {
                'djangoops_app_root': self.app,
                'djangoops_snapshot_root': os.path.join(self.root, 'backups'),
                'djangoops_lock_name': 'shop',
                'window_lock_dir': os.path.join(self.root, 'locks'),
                'djangoops_django': {'project_path': self.live,
                                     'virtualenv': os.path.dirname(os.path.dirname(self.python)),
                                     'environment': self.environment},
                'window_app_stop_command': self.appctl('stop'),
                'window_app_start_command': start,
                'window_verify_http_checks': [{'name': 'health', 'url': health,
                                               'headers': {'X-Djangoops-Bypass': BYPASS},
                                               'contains': '"ok": true'}],
                'window_verify_http_retries': 5}}}
