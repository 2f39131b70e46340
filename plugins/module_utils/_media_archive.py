# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: encrypted media parts, one stream archive per source directory.

A copied tree cannot be encrypted in place, so with encryption on a media part is
``<part>/archives/<name>.tar.<compression>.age``: ``tar -c | compressor | age`` streamed into a
hashing file, never a plaintext copy under the snapshot root. The price: no hard links to the
previous snapshot (each encrypted snapshot holds all of its media), and a restore extracts into a
private staging directory beside the target before rsync makes the target equal to it.

A tree's census (counts and listing digest, as for copied trees) is taken of the source right before
and right after archiving; it is recorded only when both agree, because only then does it describe
what the archive holds. A restore checks the target against it when it is there.
"""

from __future__ import annotations

import os
import tempfile

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (
    encryption_record, input_chain, output_chain)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Step, find_tool, run_pipeline
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_remove import remove_tree
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot_tree import census

ARCHIVES_DIR = 'archives'
FORMAT = 'archive'
# GNU tar exits 1 when a file changed while it was read (an upload in progress): the archive is whole.
TAR_CHANGED = 1


def tar_create(src):
    return Step([find_tool('tar'), '--numeric-owner', '--sort=name', '--format=gnu', '-C', src, '-cf', '-', '.'],
                ok_returncodes=(0, TAR_CHANGED), name='tar')


def tar_extract(dest):
    # --same-owner and --preserve-permissions are tar's defaults for root; named so a reader need not know.
    return Step([find_tool('tar'), '--numeric-owner', '--same-owner', '--preserve-permissions', '-C', dest, '-xf', '-'],
                name='tar')


def take(part, plans, opts, record):
    """Archive every present source into ``part``. Returns the tree records."""
    part.mkdir(ARCHIVES_DIR)
    chain, suffix = output_chain(opts)
    records = []
    for plan in plans:
        rec = dict(name=plan['name'], source=plan['source'], resolved=plan['resolved'], missing=plan['missing'])
        records.append(rec)
        if plan['missing']:
            continue
        before = census(plan['resolved'])
        items = [tar_create(plan['resolved'])] + chain
        record(' | '.join(s.display() for s in items))
        hf = part.create(os.path.join(ARCHIVES_DIR, plan['name'] + '.tar' + suffix))
        try:
            run_pipeline(items, sink=hf)
            hf.close()
        except BaseException:
            hf.discard()
            raise
        part.add_hashed(hf)
        after = census(plan['resolved'])
        rec.update(archive=os.path.relpath(hf.path, part.builder.path), archive_bytes=hf.size,
                   census=before if before == after else None, changed_while_archiving=before != after)
    return records


def part_meta(records, part, opts):
    present = [r for r in records if not r['missing']]
    apparent = sum((r.get('census') or {}).get('bytes', 0) for r in present)
    stored = sum(f['size'] for f in part.files)
    meta = dict(format=FORMAT, archives=records, trees=[], compression=opts['compression'],
                encryption=encryption_record(opts, part.files), bytes=stored,
                summary=dict(files=sum((r.get('census') or {}).get('files', 0) for r in present), bytes=stored,
                             apparent_bytes=apparent, archive_bytes=stored, trees=[r['name'] for r in records],
                             missing=[r['source'] for r in records if r['missing']], linked_from=[],
                             checksums=False, encrypted=bool(opts.get('encryption'))))
    return meta


def extract(snapshot, tree, meta, identity, dest, record):
    """Unpack one archived tree into a new private staging directory beside ``dest``; returns its path.
    The caller removes it (``discard``)."""
    parent = os.path.dirname(dest.rstrip('/')) or '/'
    staging = tempfile.mkdtemp(prefix='.djangoops-restore-', dir=parent)
    try:
        items = input_chain(meta, identity) + [tar_extract(staging)]
        record(' | '.join(s.display() for s in items) + ' < ' + tree['archive'])
        run_pipeline(items, stdin_path=snapshot.file_path({'path': tree['archive']}))
    except BaseException:
        discard(staging)
        raise
    return staging


def discard(staging):
    if staging and os.path.lexists(staging):
        remove_tree(staging)
