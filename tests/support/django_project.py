# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo shop (demo/shop) under test: one Django venv per LTS series, the project's environment
for each database engine, and independent ways to look at the result (the django_migrations table
read straight from the database, a content digest computed by Django outside the modules)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest

from support.modules import REPO, run_module

PROJECT = os.path.join(REPO, 'demo', 'shop')
SERIES = ('4.2', '5.2')


def venv_of(series):
    return os.path.join(REPO, '.build', 'django-' + series)


@pytest.fixture(scope='session')
def django_venvs():
    """Create (or confirm, in well under a second) the per-series venvs with scripts/bootstrap.sh."""
    subprocess.run(['bash', '-c', 'source scripts/bootstrap.sh && ensure_django_venvs'], cwd=REPO, check=True)
    return dict((s, venv_of(s)) for s in SERIES)


class Shop(object):
    """The demo shop on one engine and one Django series: module arguments, manage.py, and reads
    of the database that do not go through the modules under test."""

    def __init__(self, series, engine, tmp_path, server=None, dbname=None):
        self.series = series
        self.engine = engine
        self.venv = venv_of(series)
        self.server = server
        self.dbname = dbname
        self.media = str(tmp_path / 'media')
        self.env = {'SHOP_DB_ENGINE': engine, 'SHOP_MEDIA_ROOT': self.media,
                    'SHOP_STATIC_ROOT': str(tmp_path / 'static')}
        self.secret_env = {}
        if engine == 'sqlite':
            self.dbname = str(tmp_path / 'shop.sqlite3')
            self.env['SHOP_DB_NAME'] = self.dbname
        else:
            user = server.superuser if engine == 'postgresql' else server.user
            self.env.update(SHOP_DB_NAME=dbname, SHOP_DB_HOST=server.host, SHOP_DB_PORT=str(server.port),
                            SHOP_DB_USER=user)
            self.secret_env['SHOP_DB_PASSWORD'] = server.password

    def args(self, **kw):
        env = dict(self.env)
        env.update(kw.pop('extra_env', {}))
        args = dict(project_path=PROJECT, virtualenv=self.venv, environment=env, secret_environment=self.secret_env)
        args.update(kw)
        return args

    def run(self, module, check=False, diff=False, **kw):
        return run_module(module, self.args(**kw), check=check, diff=diff)

    def manage(self, *argv, cwd=PROJECT, **extra_env):
        env = dict(os.environ, **self.env)
        env.update(self.secret_env)
        env.update(extra_env)
        env.pop('PYTHONPATH', None)
        return subprocess.run([os.path.join(self.venv, 'bin', 'python'), 'manage.py'] + list(argv), cwd=cwd,
                              env=env, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True).stdout

    # -- reads that bypass the modules ----------------------------------------------------------
    def query(self, sql):
        if self.engine == 'sqlite':
            if not os.path.exists(self.dbname):
                return None
            con = sqlite3.connect(self.dbname)
            try:
                return [tuple(r) for r in con.execute(sql)]
            finally:
                con.close()
        if self.engine == 'postgresql':
            return [tuple(r) for r in self.server.sql(sql, database=self.dbname)]
        return [tuple(r) for r in self.server.sql(sql, database=self.dbname)]

    def tables(self):
        if self.engine == 'sqlite':
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table'") or []
        elif self.engine == 'postgresql':
            rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        else:
            rows = self.query('SHOW TABLES')
        return sorted(r[0] for r in rows)

    def columns(self, table):
        if self.engine == 'sqlite':
            return [r[1] for r in self.query('PRAGMA table_info("%s")' % table)]
        if self.engine == 'postgresql':
            return [r[0] for r in self.query("SELECT column_name FROM information_schema.columns WHERE "
                                             "table_name = '%s'" % table)]
        return [r[0] for r in self.query("SELECT column_name FROM information_schema.columns WHERE "
                                         "table_schema = DATABASE() AND table_name = '%s'" % table)]

    def recorded(self):
        """The django_migrations table, read directly: (app, name) rows in id order, or None without it."""
        if 'django_migrations' not in self.tables():
            return None
        return list(self.query('SELECT app, name FROM django_migrations ORDER BY id'))

    def recorded_ids(self):
        return set('%s.%s' % r for r in (self.recorded() or []))

    def digest(self):
        """Every row of the shop and its users, with foreign keys and many-to-many by natural key,
        computed by Django itself in the project's interpreter."""
        return json.loads(self.manage('shell', '-c', DIGEST_CODE).strip().splitlines()[-1])


DIGEST_CODE = r'''
import hashlib, json
from django.contrib.auth import get_user_model
from shop.models import Category, Order, OrderLine, Product, Tag
out = {}
for model in (get_user_model(), Category, Tag, Product, Order, OrderLine):
    rows = []
    for obj in model._base_manager.all():
        row = {'pk': obj.pk}
        for f in model._meta.concrete_fields:
            v = getattr(obj, f.attname)
            if f.is_relation:
                v = list(getattr(obj, f.name).natural_key()) if v is not None else None
            row[f.name] = str(v)
        for f in model._meta.many_to_many:
            row[f.name] = sorted(str(o.natural_key()) for o in getattr(obj, f.name).all())
        rows.append(json.dumps(row, sort_keys=True))
    rows.sort()
    out[model._meta.label_lower] = [len(rows), hashlib.sha256('\n'.join(rows).encode()).hexdigest()]
print(json.dumps(out, sort_keys=True))
'''


@pytest.fixture
def shop_factory(django_venvs, tmp_path, request):
    """``make(series, engine)`` -> Shop, with a fresh uniquely named database on the session servers."""
    def make(series, engine):
        if engine == 'sqlite':
            return Shop(series, engine, tmp_path)
        server = request.getfixturevalue('pg_server' if engine == 'postgresql' else 'mariadb_server')
        dbname = request.getfixturevalue('pg_db' if engine == 'postgresql' else 'mysql_db')
        return Shop(series, engine, tmp_path, server=server, dbname=dbname)
    return make
