# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: what every module's ``main()`` shares: run a manager, turn the
collection's known errors into ``fail_json`` with a clear message, and the snapshot-target options."""

from __future__ import annotations

import traceback

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import EngineError
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import ToolError
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotError


class ModuleFailure(Exception):
    """Raised by managers to fail the task with ``msg`` and extra result keys."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


KNOWN_ERRORS = (ModuleFailure, ToolError, EngineError, SnapshotError)


def run_manager(module, manager_cls):
    """Build the manager, call ``run()``, exit with its result; known errors become a clean failure."""
    manager = None
    try:
        manager = manager_cls(module)
        result = manager.run()
    except KNOWN_ERRORS as e:
        extra = dict(getattr(e, 'result', {}) or {})
        if isinstance(e, ToolError) and e.command:
            extra.setdefault('failed_command', e.command)
        partial = getattr(manager, 'partial_result', None)
        if partial:
            for k, v in partial.items():
                extra.setdefault(k, v)
        module.fail_json(msg=str(e), **extra)
    except OSError as e:
        module.fail_json(msg='%s: %s' % (type(e).__name__, e), exception=traceback.format_exc())
    module.exit_json(**result)


def snapshot_target_argument_spec():
    """Options of modules that write a part into a snapshot."""
    return dict(
        snapshot_root=dict(type='path', required=True),
        snapshot_id=dict(type='str'),
        part=dict(type='str'),
        finalize=dict(type='bool', default=True),
        labels=dict(type='dict', default={}),
    )


def snapshot_source_argument_spec():
    """Options of modules that read a snapshot."""
    return dict(
        snapshot_root=dict(type='path', required=True),
        snapshot_id=dict(type='str'),
        snapshot_path=dict(type='path'),
        part=dict(type='str'),
    )


def load_source_snapshot(store, params):
    """The snapshot named by snapshot_id (or ``latest``) or snapshot_path, confined to the root."""
    if params.get('snapshot_path'):
        return store.resolve_path(params['snapshot_path'])
    return store.load(params.get('snapshot_id') or 'latest')


def pick_part(snapshot, kind, name=None):
    """The part to use: the named one, or the only part of ``kind``."""
    if name:
        part = snapshot.part(name)
        if part.get('kind') != kind:
            raise SnapshotError('part %r of snapshot %s is a %s part, not a %s part'
                                % (name, snapshot.id, part.get('kind'), kind))
        return name, part
    parts = snapshot.parts_of_kind(kind)
    if len(parts) == 1:
        return next(iter(parts.items()))
    if not parts:
        raise SnapshotError('snapshot %s has no %s part (it has: %s)'
                            % (snapshot.id, kind, ', '.join(sorted(snapshot.manifest['parts'])) or 'none'))
    raise SnapshotError('snapshot %s has several %s parts (%s); name one with part'
                        % (snapshot.id, kind, ', '.join(sorted(parts))))
