# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release hygiene: the tarball Galaxy would get holds the sources and none of a developer machine's
leftovers, installs into an empty collections path, and from there documents (ansible-doc) and runs
every plugin."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
NAMESPACE, NAME = 'djangoops', 'maintenance'
FQCN = NAMESPACE + '.' + NAME


def galaxy():
    with open(os.path.join(REPO, 'galaxy.yml'), encoding='utf-8') as f:
        return yaml.safe_load(f)


def run(argv, cwd, env=None, timeout=300):
    return subprocess.run([str(a) for a in argv], cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False)


def isolated_env(collections_path):
    """Ansible that sees only ``collections_path``: not the repo's link, not site-packages."""
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_path), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_NOCOLOR='1', ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING='false',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='false', PAGER='cat')
    env.pop('PYTHONPATH', None)
    return env


def source_files(tree):
    """What git would ship: tracked and untracked-but-not-ignored files."""
    out = subprocess.run(['git', '-C', tree, 'ls-files', '-co', '--exclude-standard', '-z'], check=True,
                         stdout=subprocess.PIPE).stdout.decode('utf-8')
    return set(p for p in out.split('\0') if p and os.path.isfile(os.path.join(tree, p)))


def ignored_by_galaxy(path, patterns):
    parts = path.split('/')
    prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns)


def tar_files(tarball):
    with tarfile.open(str(tarball)) as t:
        return set(m.name for m in t.getmembers() if m.isfile())


def build(tree, out):
    r = run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', out, tree], cwd=out)
    assert r.returncode == 0, r.stdout + r.stderr
    tarball = os.path.join(str(out), '%s-%s-%s.tar.gz' % (NAMESPACE, NAME, galaxy()['version']))
    assert os.path.isfile(tarball), r.stdout
    return tarball


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    """Built from the working tree itself, with its real .venv, .build and caches beside the sources."""
    return build(REPO, tmp_path_factory.mktemp('dist'))


@pytest.fixture(scope='module')
def installed(tarball, tmp_path_factory):
    collections = tmp_path_factory.mktemp('installed')
    r = run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline', '-p', collections,
             tarball], cwd=collections, env=isolated_env(collections))
    assert r.returncode == 0, r.stdout + r.stderr
    path = os.path.join(str(collections), 'ansible_collections', NAMESPACE, NAME)
    assert os.path.isfile(os.path.join(path, 'MANIFEST.json')), r.stdout
    return collections


def test_version_is_0_1_0_everywhere(tarball):
    assert galaxy()['version'] == '0.1.0'
    with tarfile.open(tarball) as t:
        manifest = json.load(t.extractfile('MANIFEST.json'))
    info = manifest['collection_info']
    assert (info['namespace'], info['name'], info['version']) == (NAMESPACE, NAME, '0.1.0')
    assert info['license'] == ['GPL-3.0-or-later'] and info['dependencies'] == {}


def test_tarball_holds_exactly_the_sources(tarball):
    patterns = galaxy()['build_ignore']
    want = set(p for p in source_files(REPO) if not ignored_by_galaxy(p, patterns)) - {'galaxy.yml'}
    got = tar_files(tarball) - {'MANIFEST.json', 'FILES.json'}
    assert sorted(got - want) == [], 'in the tarball but not a source file (add it to build_ignore)'
    assert sorted(want - got) == [], 'source files missing from the tarball'
    for needed in ('README.md', 'meta/runtime.yml', 'meta/execution-environment.yml', 'requirements.txt',
                   'bindep.txt', 'playbooks/deploy.yml', 'roles/window/meta/argument_specs.yml',
                   'docs/reference/index.rst', 'changelogs/changelog.yaml'):
        assert needed in got, needed
    # Lean: sources and docs only (the whole tree is a few hundred KB compressed).
    assert os.path.getsize(tarball) < 2 * 1024 * 1024


def test_build_ignore_keeps_a_developer_machines_leftovers_out(tmp_path):
    tree = tmp_path / 'ansible_collections' / NAMESPACE / NAME
    tree.mkdir(parents=True)
    for rel in source_files(REPO):
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(REPO, rel), str(dest))
    junk = ['.venv/bin/python', '.venv-3.12/lib/site.py', '.build/collections/x', '.build/demo/db.sqlite3',
            '.ansible/roles/x.yml', '.pytest_cache/v/cache/lastfailed', 'tests/output/junit/x.xml',
            'bench/results/media.json', 'djangoops-maintenance-0.0.9.tar.gz', 'plugins/modules/__pycache__/x.pyc',
            'demo/shop/db.sqlite3', 'demo/shop/var/media/products/p.png', '.git/HEAD']
    for rel in junk:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text('leftover')
    out = tmp_path / 'dist'
    out.mkdir()
    names = tar_files(build(str(tree), out))
    assert sorted(n for n in names if n in junk) == []
    assert 'plugins/modules/db_snapshot.py' in names


def test_ansible_doc_renders_every_module_from_the_installed_copy(installed):
    env = isolated_env(installed)
    installed_at = os.path.join(str(installed), 'ansible_collections', NAMESPACE, NAME)
    expected = sorted(FQCN + '.' + f[:-3] for f in os.listdir(os.path.join(REPO, 'plugins', 'modules'))
                      if f.endswith('.py') and not f.startswith('_'))
    r = run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', '-l', FQCN, '--json'], cwd=installed, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)) == expected

    r = run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', '--json'] + expected, cwd=installed, env=env)
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)
    assert sorted(docs) == expected
    for name, doc in docs.items():
        d = doc['doc']
        assert d['filename'].startswith(installed_at), (name, d['filename'])
        assert d['short_description'] and d['options'] and doc['examples'] and doc['return'], name
        assert d['author'] == ['djangoops maintainers (@djangoops)'], name
        assert set(d['attributes']) >= {'check_mode', 'diff_mode'}, name

    for name in expected:  # the text an operator reads
        r = run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', name], cwd=installed, env=env)
        assert r.returncode == 0 and r.stderr.strip() == '', (name, r.stderr)
        assert name in r.stdout and 'OPTIONS' in r.stdout and 'EXAMPLES' in r.stdout, name


def test_ansible_doc_renders_every_filter_and_role(installed):
    env = isolated_env(installed)
    filters = sorted(FQCN + '.' + f[:-4] for f in os.listdir(os.path.join(REPO, 'plugins', 'filter'))
                     if f.endswith('.yml'))
    r = run([os.path.join(BIN, 'ansible-doc'), '-t', 'filter', '-l', FQCN, '--json'], cwd=installed, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)) == filters
    for name in filters:
        r = run([os.path.join(BIN, 'ansible-doc'), '-t', 'filter', name], cwd=installed, env=env)
        assert r.returncode == 0 and r.stderr.strip() == '', (name, r.stderr)
        assert name in r.stdout and 'EXAMPLES' in r.stdout, name

    roles = sorted(os.listdir(os.path.join(REPO, 'roles')))
    r = run([os.path.join(BIN, 'ansible-doc'), '-t', 'role', '-l', FQCN, '--json'], cwd=installed, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)) == [FQCN + '.' + role for role in roles]
    for role in roles:
        r = run([os.path.join(BIN, 'ansible-doc'), '-t', 'role', FQCN + '.' + role], cwd=installed, env=env)
        assert r.returncode == 0 and 'ENTRY POINT: *main*' in r.stdout and 'Options' in r.stdout, (role, r.stderr)


def test_the_installed_copy_runs_a_module_and_a_filter(installed, tmp_path):
    """AnsiballZ packs the module_utils from the installed copy; the filter loads from it."""
    env = isolated_env(installed)
    root = tmp_path / 'snapshots'
    r = run([os.path.join(BIN, 'ansible'), 'localhost', '-c', 'local', '-m', FQCN + '.snapshot_info',
             '-a', json.dumps({'snapshot_root': str(root)})], cwd=tmp_path, env=env)
    assert r.returncode == 0 and '"snapshots": []' in r.stdout, r.stdout + r.stderr
    expr = "{{ {'shop': ['0001_initial']} | %s.migration_targets({'shop': ['0001_initial', '0002_x']}) }}" % FQCN
    r = run([os.path.join(BIN, 'ansible'), 'localhost', '-c', 'local', '-m', 'ansible.builtin.debug',
             '-a', 'msg="%s"' % expr], cwd=tmp_path, env=env)
    assert r.returncode == 0 and "'target': '0001_initial'" in r.stdout.replace('"', "'"), r.stdout + r.stderr
