# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment (ee/execution-environment.yml, ansible-builder v3): `ansible-builder create`
writes a build context, and the context's own galaxy and introspection steps - the parts of the image
build that decide what goes in - are run here against it, without a container engine: the collection
installs from the context, and the dependencies the build would install include every tool and Python
library the modules need, on the image's platform (EL9, rpm)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import yaml
from bindep.depends import Depends

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
EE = os.path.join(REPO, 'ee', 'execution-environment.yml')

# bindep's platform profiles on CentOS Stream 9 (bindep.depends.Depends.platform_profiles), plus the
# profile bindep uses when none is named, as ansible-builder's assemble script runs it.
EL9_PROFILES = ['platform:centos', 'platform:centos-9', 'platform:rpm', 'platform:redhat', 'platform:python3',
                'default']
DEBIAN_PROFILES = ['platform:debian', 'platform:dpkg', 'platform:python3', 'default']


def run(argv, cwd, env=None):
    r = subprocess.run([str(a) for a in argv], cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout
    return r


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def version():
    with open(os.path.join(REPO, 'galaxy.yml'), encoding='utf-8') as f:
        return yaml.safe_load(f)['version']


def test_ansible_builder_create_and_the_contexts_own_steps(tmp_path):
    with open(EE, encoding='utf-8') as f:
        ee = yaml.safe_load(f)
    assert ee['version'] == 3
    tarball_name = 'djangoops-maintenance-%s.tar.gz' % version()
    # What `make build` does: the tarball the EE takes the collection from.
    run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--force', '--output-path',
         os.path.join(REPO, '.build'), REPO], cwd=REPO)
    built = os.path.join(REPO, '.build', tarball_name)
    assert [b['src'] for b in ee['additional_build_files']] == ['../.build/' + tarball_name], \
        'ee/execution-environment.yml must take the collection at the version in galaxy.yml'

    ctx = tmp_path / 'context'
    run([os.path.join(BIN, 'ansible-builder'), 'create', '-f', EE, '-c', ctx, '--output-filename', 'Containerfile'],
        cwd=tmp_path)

    containerfile = (ctx / 'Containerfile').read_text()
    assert 'ARG EE_BASE_IMAGE="%s"' % ee['images']['base_image']['name'] in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.12"' in containerfile
    refs = [line for line in containerfile.splitlines() if line.startswith('ARG ANSIBLE_INSTALL_REFS=')]
    assert refs and 'ansible-core>=2.19,<2.20' in refs[0] and 'ansible-runner>=' in refs[0], refs
    for step in ('COPY _build /build',
                 'ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml',
                 'introspect.py introspect --write-bindep=/tmp/src/bindep.txt --write-pip=/tmp/src/requirements.txt',
                 '/output/scripts/install-from-bindep', 'module enable postgresql:16',
                 'LABEL ansible-execution-environment=true'):
        assert step in containerfile, step
    assert sha256(str(ctx / '_build' / 'collections' / tarball_name)) == sha256(built)

    # The galaxy stage: ansible-galaxy in _build/ (the image's /build) with the context's requirements.yml.
    collections = tmp_path / 'usr-share-ansible-collections'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false')
    run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline', '-r', 'requirements.yml',
         '--collections-path', collections], cwd=ctx / '_build', env=env)
    installed = collections / 'ansible_collections' / 'djangoops' / 'maintenance'
    assert (installed / 'plugins' / 'modules' / 'db_snapshot.py').is_file()
    assert (installed / 'meta' / 'execution-environment.yml').is_file()

    # The builder stage: the context's own introspect.py collects the collection's dependencies.
    pip_out, bindep_out = tmp_path / 'src' / 'requirements.txt', tmp_path / 'src' / 'bindep.txt'
    run([sys.executable, ctx / '_build' / 'scripts' / 'introspect.py', 'introspect', collections,
         '--write-pip', pip_out, '--write-bindep', bindep_out], cwd=tmp_path)
    python_reqs = [line.split('#')[0].strip() for line in pip_out.read_text().splitlines() if line.strip()]
    assert 'psycopg>=3.1' in python_reqs and 'PyMySQL[rsa]>=1.0' in python_reqs, python_reqs

    # What install-from-bindep would install: assemble runs `bindep -l newline`, no profile named.
    rules = Depends(bindep_out.read_text())
    on_el9 = set(rule[0] for rule in rules.active_rules(EL9_PROFILES))
    assert on_el9 >= {'postgresql', 'mariadb', 'zstd', 'gzip', 'rsync'}, on_el9
    on_debian = set(rule[0] for rule in rules.active_rules(DEBIAN_PROFILES))
    assert on_debian >= {'postgresql-client', 'mariadb-client', 'zstd', 'gzip', 'rsync'}, on_debian


def test_bindep_profiles_still_pick_one_engine():
    with open(os.path.join(REPO, 'bindep.txt'), encoding='utf-8') as f:
        rules = Depends(f.read())
    only_pg = set(rule[0] for rule in rules.active_rules(['platform:dpkg', 'postgresql']))
    assert 'postgresql-client' in only_pg and 'mariadb-client' not in only_pg and 'rsync' not in only_pg
    only_mysql = set(rule[0] for rule in rules.active_rules(['platform:rpm', 'mysql']))
    assert 'mariadb' in only_mysql and 'postgresql' not in only_mysql
