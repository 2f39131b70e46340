# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The changelog: `antsibull-changelog release` for 0.1.0 works, on a copy of the tree (a release is
the maintainers' act, never a test's), and the result names every module and filter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def copy_tree(dest):
    files = subprocess.run(['git', '-C', REPO, 'ls-files', '-co', '--exclude-standard', '-z'], check=True,
                           stdout=subprocess.PIPE).stdout.decode('utf-8').split('\0')
    for rel in filter(None, files):
        src = os.path.join(REPO, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))


def test_release_0_1_0_on_a_copy(tmp_path):
    tree = tmp_path / 'ansible_collections' / 'djangoops' / 'maintenance'
    copy_tree(str(tree))
    fragments = sorted(os.listdir(str(tree / 'changelogs' / 'fragments')))
    assert fragments, 'no changelog fragments to release'
    # antsibull-changelog finds new plugins with the ansible-doc on PATH: this venv's.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    env.pop('PYTHONPATH', None)

    lint = subprocess.run([os.path.join(BIN, 'antsibull-changelog'), 'lint'], cwd=str(tree), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert lint.returncode == 0 and lint.stdout.strip() == '', lint.stdout

    r = subprocess.run([os.path.join(BIN, 'antsibull-changelog'), 'release', '--version', '0.1.0',
                        '--date', '2026-11-24'], cwd=str(tree), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, check=False, timeout=300)
    assert r.returncode == 0, r.stdout
    assert 'WARNING' not in r.stdout, r.stdout  # e.g. a missing release_summary

    with open(str(tree / 'changelogs' / 'changelog.yaml'), encoding='utf-8') as f:
        changes = yaml.safe_load(f)
    release = changes['releases']['0.1.0']
    assert release['release_date'] == '2026-11-24'
    assert release['changes']['release_summary']
    assert sorted(release['fragments']) == fragments
    modules = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, 'plugins', 'modules')) if f.endswith('.py'))
    filters = sorted(f[:-4] for f in os.listdir(os.path.join(REPO, 'plugins', 'filter')) if f.endswith('.yml'))
    assert sorted(m['name'] for m in release['modules']) == modules
    assert sorted(p['name'] for p in release['plugins']['filter']) == filters
    assert os.listdir(str(tree / 'changelogs' / 'fragments')) == []  # keep_fragments: false - all consumed

    with open(str(tree / 'CHANGELOG.rst'), encoding='utf-8') as f:
        text = f.read()
    assert 'v0.1.0' in text and 'Release Summary' in text and 'New Modules' in text
    for name in modules + filters:
        assert 'djangoops.maintenance.%s - ' % name in text, name

    # The released tree still lints, so the next fragment can follow.
    lint = subprocess.run([os.path.join(BIN, 'antsibull-changelog'), 'lint'], cwd=str(tree), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert lint.returncode == 0 and lint.stdout.strip() == '', lint.stdout
