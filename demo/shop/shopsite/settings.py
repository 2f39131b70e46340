"""Settings of the demo shop. Everything that differs between a laptop, a test and a fleet host comes
from SHOP_* environment variables (see README.md); the defaults give a working SQLite shop."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name, default=None):
    return os.environ.get('SHOP_' + name, default)


def env_bool(name, default=False):
    return env(name, '1' if default else '0').lower() in ('1', 'true', 'yes', 'on')


SECRET_KEY = env('SECRET_KEY', 'demo-shop-insecure-key-do-not-use-in-production')
DEBUG = env_bool('DEBUG')
ALLOWED_HOSTS = [h for h in env('ALLOWED_HOSTS', 'localhost,127.0.0.1,[::1],testserver').split(',') if h]

INSTALLED_APPS = [
    'django.contrib.admin',
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    'django.contrib.staticfiles',
    'shop',
]

MIDDLEWARE = [
    'shop.middleware.MaintenanceModeMiddleware',
    'django.middleware.security.SecurityMiddleware',
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
    'django.middleware.clickjacking.XFrameOptionsMiddleware',
]

ROOT_URLCONF = 'shopsite.urls'
WSGI_APPLICATION = 'shopsite.wsgi.application'

TEMPLATES = [{
    'BACKEND': 'django.template.backends.django.DjangoTemplates',
    'DIRS': [],
    'APP_DIRS': True,
    'OPTIONS': {'context_processors': [
        'django.template.context_processors.request',
        'django.contrib.auth.context_processors.auth',
        'django.contrib.messages.context_processors.messages',
    ]},
}]


def _database():
    engine = env('DB_ENGINE', 'sqlite')
    if engine == 'sqlite':
        return {
            'ENGINE': 'django.db.backends.sqlite3',
            'NAME': env('DB_NAME') or str(BASE_DIR / 'db.sqlite3'),
        }
    if engine == 'postgresql':
        return {
            'ENGINE': 'django.db.backends.postgresql',
            'NAME': env('DB_NAME', 'shop'),
            'USER': env('DB_USER', ''),
            'PASSWORD': env('DB_PASSWORD', ''),
            'HOST': env('DB_HOST', ''),
            'PORT': env('DB_PORT', ''),
            'OPTIONS': {'sslmode': env('DB_SSLMODE', 'prefer')},
        }
    if engine == 'mysql':
        # PyMySQL stands in for mysqlclient, so a host needs no C compiler or libmysqlclient.
        import pymysql
        pymysql.install_as_MySQLdb()
        return {
            'ENGINE': 'django.db.backends.mysql',
            'NAME': env('DB_NAME', 'shop'),
            'USER': env('DB_USER', ''),
            # PyMySQL encodes a str password as latin-1; bytes reach the server as they are (UTF-8).
            'PASSWORD': env('DB_PASSWORD', '').encode('utf-8'),
            'HOST': env('DB_HOST', ''),
            'PORT': env('DB_PORT', ''),
            'OPTIONS': {'charset': 'utf8mb4', 'init_command': "SET sql_mode='STRICT_TRANS_TABLES'"},
        }
    raise ValueError('SHOP_DB_ENGINE must be sqlite, postgresql or mysql, got %r' % engine)


DATABASES = {'default': _database()}
DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'

LANGUAGE_CODE = 'en-us'
TIME_ZONE = 'UTC'
USE_I18N = True
USE_TZ = True

STATIC_URL = 'static/'
STATIC_ROOT = env('STATIC_ROOT') or str(BASE_DIR / 'var' / 'static')
MEDIA_URL = 'media/'
MEDIA_ROOT = env('MEDIA_ROOT') or str(BASE_DIR / 'var' / 'media')

# Demo switches for the migration tests: see README.md.
SHOP_FAIL_MIGRATION = env_bool('FAIL_MIGRATION')
# While this file exists the shop answers 503, except to requests with the bypass token (see shop/middleware.py).
SHOP_MAINTENANCE_FLAG = env('MAINTENANCE_FLAG', '')
SHOP_MAINTENANCE_BYPASS = env('MAINTENANCE_BYPASS', '')
SHOP_PENDING_CHANGE = env_bool('PENDING_CHANGE')
