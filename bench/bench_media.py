# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: media_snapshot against rsync itself, on one generated tree, in one run.

Run from the repository root, after ``make unit`` (or scripts/bootstrap.sh) made .venv and the
collection link, on an otherwise idle machine::

    .venv/bin/python bench/bench_media.py                           # 10,000 files, ~1 GiB (the issue's size)
    .venv/bin/python bench/bench_media.py --files 500 --mib 50      # a quick check that it works
    .venv/bin/python bench/bench_media.py --checksums --json bench/results/media.json

Steps, all on the same source tree and file system (``--workdir``, default a new directory in /var/tmp):

1. full copy:   ``rsync -a SRC/ A/``  vs  ``media_snapshot`` (first snapshot: everything is copied)
2. change ``--change-pct`` (1) % of the files (new content, same size)
3. incremental: ``rsync -a --link-dest=A SRC/ B/``  vs  ``media_snapshot`` (second snapshot: hard links);
   and ``rsync -a --link-dest=<the module's first snapshot tree> SRC/ C/``, the copy with the module's
   own inputs: linking against a tree deep in the snapshot root is slower than against ``A``, a
   sibling of the source, because rsync (3.5.0 here) opens every directory of the link-dest path from
   ``/`` for every file (about 0.06 s per level per 10,000 files here). The module links unchanged
   files (and, for a first snapshot, copies plain files with copy_file_range) itself before its
   rsync runs, so that cost is rsync's alone.

For each it prints wall time, the ratio module/rsync, the extra disk of the second copy (``du`` of the
second directory next to the first, so shared hard links count once) against the bytes changed, and the
peak RSS of each process tree (``wait4``). The module's time is the whole task as Ansible runs it:
Python start-up, ``rsync --version``, the copy (watched by the free-space guard), the census (a ``stat``
of every file), the fsync of the snapshot and the manifest. Plain ``rsync`` fsyncs nothing, so a second
baseline, ``rsync`` followed by ``sync -f`` on the file system, is printed too. Before every timed run
the previous run's dirty pages are written back, untimed. Page cache is left as it is (the source was
just written, so every run reads it warm). Every figure is the median of ``--rounds`` (3) runs; a ratio
module/rsync is the median of the per-round ratios (each round times rsync, then the module).

Targets (issue 4): full and incremental time <= 1.1x rsync; extra disk <= 1.1x the changed bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')
MODULE = 'ansible_collections.djangoops.maintenance.plugins.modules.media_snapshot'


def timed(argv, env=None, flush_first=True):
    """Run argv; return (seconds, peak RSS in bytes of its process tree, stdout). Dirty pages of the run
    before are written back first, untimed, so no run pays for another's writes (except when timing
    that write-back itself: ``flush_first=False``)."""
    if flush_first:
        os.sync()
    started = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read()
    err = p.stderr.read()
    dummy, status, usage = os.wait4(p.pid, 0)
    seconds = time.monotonic() - started
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit('%s failed (%s):\n%s\n%s' % (argv[0], p.returncode, out.decode()[-3000:], err.decode()[-3000:]))
    return seconds, usage.ru_maxrss * 1024, out


def du(*paths):
    out = subprocess.run(['du', '-s', '-B1'] + list(paths), check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    return [int(line.split('\t')[0]) for line in out.strip().splitlines()]


def make_tree(root, files, total_bytes, seed):
    """``files`` files in 100 directories (two levels), sizes spread like uploads (many small, a few
    large), adding up to about ``total_bytes``."""
    rnd = random.Random(seed)
    weights = [rnd.lognormvariate(0, 1.2) for dummy in range(files)]
    scale = total_bytes / sum(weights)
    paths = []
    for i, w in enumerate(weights):
        d = os.path.join(root, 'upload-%02d' % (i % 10), 'batch-%02d' % (i // 10 % 10))
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, 'file-%05d.bin' % i)
        with open(p, 'wb') as f:
            f.write(os.urandom(max(1, int(w * scale))))
        paths.append(p)
    return paths


def change(paths, pct, seed):
    rnd = random.Random(seed)
    chosen = rnd.sample(paths, max(1, int(len(paths) * pct / 100)))
    changed = 0
    for p in chosen:
        size = os.path.getsize(p)
        with open(p, 'wb') as f:
            f.write(os.urandom(size))
        changed += size
    return len(chosen), changed


def run_module(args, workdir):
    fd, path = tempfile.mkstemp(dir=workdir, suffix='.json')
    with os.fdopen(fd, 'w') as f:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, f)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    seconds, rss, out = timed([sys.executable, '-m', MODULE, path], env=env)
    os.unlink(path)
    result = json.loads(out.decode().strip().splitlines()[-1])
    if result.get('failed'):
        sys.exit('media_snapshot failed: %s' % result.get('msg'))
    return seconds, rss, result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--files', type=int, default=10000)
    ap.add_argument('--mib', type=int, default=1024, help='total size of the tree in MiB')
    ap.add_argument('--change-pct', type=float, default=1.0)
    ap.add_argument('--checksums', action='store_true', help='media_snapshot with checksums: true')
    ap.add_argument('--workdir', default=None, help='where the tree and copies go (default: new dir in /var/tmp)')
    ap.add_argument('--keep', action='store_true', help='keep the work directory')
    ap.add_argument('--json', help='also write the figures to this file')
    ap.add_argument('--seed', type=int, default=4)
    ap.add_argument('--rounds', type=int, default=3, help='each timing is the median of this many runs')
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(COLLECTIONS, 'ansible_collections')):
        sys.exit('no collection link under %s: run `make unit` (or scripts/bootstrap.sh link_collection) first'
                 % COLLECTIONS)
    rsync = shutil.which('rsync')
    if not rsync:
        sys.exit('rsync is not installed')
    work = a.workdir or tempfile.mkdtemp(prefix='bench-media-', dir='/var/tmp')
    os.makedirs(work, exist_ok=True)
    src, base, root = (os.path.join(work, n) for n in ('media', 'rsync', 'snapshots'))
    os.makedirs(base)
    try:
        t0 = time.monotonic()
        paths = make_tree(src, a.files, a.mib * 2 ** 20, a.seed)
        tree_bytes = sum(os.path.getsize(p) for p in paths)
        made = time.monotonic() - t0
        print('tree: %d files, %.1f MiB in %s (made in %.1f s)' % (len(paths), tree_bytes / 2 ** 20, src, made))
        subprocess.run(['sync', '-f', work], check=True)
        args = dict(src=[src], snapshot_root=root, checksums=a.checksums)
        fig = dict(files=len(paths), tree_bytes=tree_bytes, checksums=a.checksums)
        # The floor every Ansible module pays before doing anything: Python and AnsibleModule's imports.
        fig['startup_s'] = min(timed([sys.executable, '-c', 'import ansible.module_utils.basic'])[0]
                               for dummy in range(3))

        def median(values):
            return sorted(values)[len(values) // 2]

        def rounds(step):
            """Run ``step`` --rounds times; the median of each figure, and the last run's results."""
            runs = [step() for dummy in range(a.rounds)]
            fig.setdefault('round_ratios', {}).update(
                (k, [round(r[k], 3) for r in runs]) for k in runs[0] if k.startswith('ratio_'))
            return dict((k, median([r[k] for r in runs]) if isinstance(runs[0][k], (int, float)) else runs[-1][k])
                        for k in runs[0])

        def full_round():
            for d in (base + '/full', root):
                shutil.rmtree(d, ignore_errors=True)
            r_s, r_rss, dummy = timed([rsync, '-a', src + '/', base + '/full/'])
            sync_s = timed(['sync', '-f', work], flush_first=False)[0]
            m_s, m_rss, res = run_module(args, work)
            return dict(rsync_full_s=r_s, rsync_full_rss=r_rss, rsync_full_sync_s=r_s + sync_s, module_full_s=m_s,
                        module_full_rss=m_rss, module_full_inner_s=res['seconds'], result=res,
                        ratio_full=m_s / r_s, ratio_full_sync=m_s / (r_s + sync_s))

        def incr_round():
            shutil.rmtree(base + '/incr', ignore_errors=True)
            for name in os.listdir(root):
                if name != r1['snapshot_id']:
                    shutil.rmtree(os.path.join(root, name))
            r_s, r_rss, dummy = timed([rsync, '-a', '--link-dest=' + base + '/full', src + '/', base + '/incr/'])
            sync_s = timed(['sync', '-f', work], flush_first=False)[0]
            # The same copy with the same inputs as the module's: linked against the module's previous
            # tree (where a tree sits on the file system changes what linking against it costs).
            shutil.rmtree(base + '/same', ignore_errors=True)
            same_s = timed([rsync, '-a', '--link-dest=' + prev_tree, src + '/', base + '/same/'])[0]
            shutil.rmtree(base + '/same')
            m_s, m_rss, res = run_module(args, work)
            assert res['trees'][0]['link_dest']['snapshot_id'] == r1['snapshot_id']
            return dict(rsync_incr_s=r_s, rsync_incr_rss=r_rss, rsync_incr_sync_s=r_s + sync_s,
                        rsync_incr_same_s=same_s, module_incr_s=m_s,
                        module_incr_rss=m_rss, module_incr_inner_s=res['seconds'], result=res,
                        ratio_incr=m_s / r_s, ratio_incr_sync=m_s / (r_s + sync_s), ratio_incr_same=m_s / same_s)

        # 1. full
        full = rounds(full_round)
        r1 = full.pop('result')
        fig.update(full)

        prev_tree = os.path.join(root, r1['snapshot_id'], r1['trees'][0]['dir'])

        # 2. change
        n, changed = change(paths, a.change_pct, a.seed + 1)
        fig['changed_files'], fig['changed_bytes'] = n, changed
        subprocess.run(['sync', '-f', work], check=True)

        # 3. incremental
        incr = rounds(incr_round)
        r2 = incr.pop('result')
        fig.update(incr)
        fig['rounds'] = a.rounds

        fig['rsync_extra_disk'] = du(base + '/full', base + '/incr')[1]
        fig['module_extra_disk'] = du(os.path.join(root, r1['snapshot_id']), os.path.join(root, r2['snapshot_id']))[1]
        fig['module_transferred_bytes'] = r2['transferred_bytes']
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    def ratio(x, y):
        return x / y if y else float('inf')

    print('changed: %d files, %.1f MiB (%.1f%%)' % (fig['changed_files'], fig['changed_bytes'] / 2 ** 20, a.change_pct))
    print()
    print('%-12s %9s %13s %10s %13s %13s %17s %15s' % (
        '', 'rsync s', 'rsync+sync s', 'module s', 'module/rsync', 'module/+sync', '(module-start)/rs', 'copy+record s'))
    for k, label in (('full', 'full'), ('incr', 'incremental')):
        m, r, rs = fig['module_%s_s' % k], fig['rsync_%s_s' % k], fig['rsync_%s_sync_s' % k]
        print('%-12s %9.2f %13.2f %10.2f %12.2fx %12.2fx %16.2fx %15.2f' % (
            label, r, rs, m, fig['ratio_%s' % k], fig['ratio_%s_sync' % k], ratio(m - fig['startup_s'], r),
            fig['module_%s_inner_s' % k]))
    print('%-12s %9.2f %13s %10.2f %12.2fx %13s %16.2fx   (rsync --link-dest to the module\'s previous tree)' % (
        'incr, same', fig['rsync_incr_same_s'], '', fig['module_incr_s'], fig['ratio_incr_same'], '',
        ratio(fig['module_incr_s'] - fig['startup_s'], fig['rsync_incr_same_s'])))
    print('(module s: the whole task; Ansible module start-up alone (import AnsibleModule) took %.2f s; copy+record s: '
          'the copy, census, checksums, fsync and manifest, as the module reports it)' % fig['startup_s'])
    print()
    print('extra disk of the second copy: rsync --link-dest %.2f MiB (%.2fx changed), media_snapshot %.2f MiB '
          '(%.2fx changed)' % (fig['rsync_extra_disk'] / 2 ** 20, ratio(fig['rsync_extra_disk'], fig['changed_bytes']),
                               fig['module_extra_disk'] / 2 ** 20, ratio(fig['module_extra_disk'], fig['changed_bytes'])))
    print('peak RSS: rsync full %.0f MiB, module full %.0f MiB, module incremental %.0f MiB (module process tree)'
          % (fig['rsync_full_rss'] / 2 ** 20, fig['module_full_rss'] / 2 ** 20, fig['module_incr_rss'] / 2 ** 20))
    # fig['ratio_*'] (full, full_sync, incr, incr_sync, incr_same) are medians of the per-round ratios, module and rsync
    # timed one after the other in the same round.
    fig['ratio_extra_disk'] = ratio(fig['module_extra_disk'], fig['changed_bytes'])
    print('targets: full %s, incremental %s against its own copy, %s with the same inputs (<= 1.1x rsync); '
          'extra disk %s (<= 1.1x changed bytes)' % (
              'met' if fig['ratio_full'] <= 1.1 else 'MISSED', 'met' if fig['ratio_incr'] <= 1.1 else 'MISSED',
              'met' if fig['ratio_incr_same'] <= 1.1 else 'MISSED',
              'met' if fig['ratio_extra_disk'] <= 1.1 else 'MISSED'))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, 'w', encoding='utf-8') as f:
            json.dump(fig, f, indent=2, sort_keys=True)


if __name__ == '__main__':
    main()
