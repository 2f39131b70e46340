# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo shop deployed on rig hosts the way the window role expects to find an app: an
Ansistrano-style layout in each host's /srv (releases/1.0 live, 2.0 and 3.0 staged, current symlink,
shared media and SQLite file), served by gunicorn on the host's address, plus the inventory
variables that point the collection's roles at it, and independent views of each host's state."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

from support.media_tree import describe
from support.modules import REPO

VENV = os.path.join(REPO, '.build', 'django-5.2')
PY = os.path.join(VENV, 'bin', 'python')
APP = '/srv/shop'
PORT = 8000
BYPASS = 'fleet-bypass-token'


def build_releases(dest):
    subprocess.run([sys.executable, os.path.join(REPO, 'demo', 'releases.py'), dest], check=True,
                   stdout=subprocess.DEVNULL)
    return dest


def tree_digest(path):
    """sha256 over every file's relative path and bytes, and every symlink's target."""
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            h.update(os.path.relpath(full, path).encode() + b'\0')
            if os.path.islink(full):
                h.update(b'L' + os.readlink(full).encode())
            else:
                with open(full, 'rb') as f:
                    h.update(f.read())
    return h.hexdigest()


class FleetApp(object):
    """The shop on a set of rig hosts. ``db_env`` are the SHOP_DB_* settings (SQLite by default),
    ``secret_env`` the password ones (handed to the roles through secret_environment)."""

    def __init__(self, rig, releases, db_env=None, secret_env=None):
        self.rig = rig
        self.releases = releases
        self.db_env = dict(db_env or {'SHOP_DB_ENGINE': 'sqlite', 'SHOP_DB_NAME': APP + '/shared/db.sqlite3'})
        self.secret_env = dict(secret_env or {})

    def env(self, host, extra=None):
        env = dict(self.db_env)
        env.update(self.secret_env)
        env.update(SHOP_MEDIA_ROOT=APP + '/shared/media', SHOP_MAINTENANCE_FLAG=APP + '/maintenance.on',
                   SHOP_MAINTENANCE_BYPASS=BYPASS, SHOP_ALLOWED_HOSTS='%s,localhost,127.0.0.1' % host.address)
        env.update(extra or {})
        return env

    def local(self, host, *parts):
        """A path inside the host's /srv/shop, as seen from the controller."""
        return os.path.join(host.srv, 'shop', *parts)

    def install(self, host, migrate=True, seed=True, start=True):
        shutil.copytree(self.releases, self.local(host, 'releases'), symlinks=True)
        os.symlink(APP + '/releases/1.0', self.local(host, 'current'))
        for d in ('shared/media', 'run'):
            os.makedirs(self.local(host, d))
        fd = os.open(self.local(host, 'shared', 'app.env'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(''.join('%s=%s\n' % kv for kv in sorted(self.env(host).items())))
        manage = [PY, APP + '/current/manage.py']
        if migrate:
            host.run(manage + ['migrate', '-v0'], env=self.env(host))
        if seed:
            host.run(manage + ['seed_demo', '--products', '30', '--orders', '40', '--with-images', '-v0'],
                     env=self.env(host))
        if start:
            self.start(host)

    def start(self, host):
        host.run([PY, APP + '/current/bin/appctl.py', 'start', '--pidfile', APP + '/run/app.pid', '--bind',
                  '%s:%d' % (host.address, PORT), '--env-file', APP + '/shared/app.env', '--workers', '1'])

    def health(self, host, bypass=True):
        """(HTTP status, JSON body or text) of the host's /health/."""
        req = urllib.request.Request('http://%s:%d/health/' % (host.address, PORT),
                                     headers={'X-Djangoops-Bypass': BYPASS} if bypass else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:
            body = e.read().decode('utf-8', 'replace')
            try:
                return e.code, json.loads(body)
            except ValueError:
                return e.code, body

    def live_release(self, host):
        return os.readlink(self.local(host, 'current'))

    def in_maintenance(self, host):
        return os.path.exists(self.local(host, 'maintenance.on'))

    def sqlite_dump(self, host):
        con = sqlite3.connect(self.local(host, 'shared', 'db.sqlite3'))
        try:
            return '\n'.join(con.iterdump())
        finally:
            con.close()

    def state(self, host):
        """What 'byte-equal to before' compares: data (SQLite dump), media tree, live code."""
        state = {'media': describe(self.local(host, 'shared', 'media')), 'release': self.live_release(host),
                 'code': tree_digest(self.local(host, 'releases', '1.0'))}
        if self.db_env.get('SHOP_DB_ENGINE', 'sqlite') == 'sqlite':
            state['data'] = self.sqlite_dump(host)
        return state

    def group_vars(self, extra=None):
        """Inventory variables that point the collection's roles at the app on every host."""
        app_py = PY
        start = [app_py, APP + '/current/bin/appctl.py', 'start', '--pidfile', APP + '/run/app.pid',
                 '--bind', '{{ ansible_host }}:%d' % PORT, '--env-file', APP + '/shared/app.env', '--workers', '1']
        v = {
            'djangoops_app_root': APP,
            'djangoops_snapshot_root': '/srv/backups',
            'djangoops_lock_name': 'shop',
            # /var is the controller's on every rig host: each host's locks live in its own /srv.
            'djangoops_lock_dir': '/srv/locks',
            'djangoops_django': {
                'project_path': APP + '/current',
                'virtualenv': VENV,
                'environment': dict((k, v) for k, v in self.env_template().items()),
                'secret_environment': self.secret_env,
            },
            'window_app_stop_command': [app_py, APP + '/current/bin/appctl.py', 'stop', '--pidfile', APP + '/run/app.pid'],
            'window_app_start_command': start,
            'window_verify_http_checks': [{
                'name': 'health', 'url': 'http://{{ ansible_host }}:%d/health/' % PORT,
                'headers': {'X-Djangoops-Bypass': BYPASS}, 'contains': '"ok": true'}],
            'window_verify_http_retries': 5,
        }
        v.update(extra or {})
        return v

    def env_template(self):
        env = dict(self.db_env)
        env.update(SHOP_MEDIA_ROOT=APP + '/shared/media')
        return env


def write_inventory(rig, path, hosts, group_vars, host_vars=None):
    """An inventory directory: hosts.ini (group ``django``), group_vars/all.yml, host_vars/<host>.yml."""
    os.makedirs(os.path.join(path, 'group_vars'))
    os.makedirs(os.path.join(path, 'host_vars'))
    inv = rig.write_inventory(os.path.join(path, 'hosts.ini'), groups={'django': list(hosts)})
    with open(os.path.join(path, 'group_vars', 'all.yml'), 'w', encoding='utf-8') as f:
        json.dump(group_vars, f, indent=1)
    for name, hv in (host_vars or {}).items():
        with open(os.path.join(path, 'host_vars', name + '.yml'), 'w', encoding='utf-8') as f:
            json.dump(hv, f, indent=1)
    return inv


def read_report(report_dir):
    runs = sorted(os.listdir(report_dir), key=lambda d: os.stat(os.path.join(report_dir, d)).st_mtime)
    with open(os.path.join(report_dir, runs[-1], 'report.json'), encoding='utf-8') as f:
        return json.load(f)
