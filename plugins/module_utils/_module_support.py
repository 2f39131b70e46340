# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: what every module's ``main()`` shares: run a manager, turn the
collection's known errors into ``fail_json`` with a clear message, and the snapshot-target options."""

from __future__ import annotations

import traceback

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import EngineError
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import ToolError
from ansible_collections.djangoops.maintenance.plugins.module_utils._retention import (
    PERIODS, Policy, RetentionError, parse_duration)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import (
    SnapshotError, SnapshotStore, validate_id, validate_labels, validate_part)


class ModuleFailure(Exception):
    """Raised by managers to fail the task with ``msg`` and extra result keys."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


KNOWN_ERRORS = (ModuleFailure, ToolError, EngineError, SnapshotError)


class Manager(object):
    """Base of every module's manager: ``run()`` returns the result; ``partial_result`` holds what a
    failure should still report (for example the id of a snapshot that was begun)."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.partial_result = {}


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


def snapshot_target(params):
    """What a module writing into a snapshot was given, validated: (store, snapshot id or None for a new
    snapshot, part name, labels)."""
    store = SnapshotStore(params['snapshot_root'])
    snapshot_id = validate_id(params['snapshot_id']) if params['snapshot_id'] else None
    return store, snapshot_id, validate_part(params['part']), validate_labels(params['labels'])


def retention_argument_spec():
    """The retention rules (doc fragment ``djangoops.maintenance.retention``)."""
    spec = dict(
        keep_last=dict(type='int'),
        keep_within=dict(type='str'),
        keep_labels=dict(type='raw', default={'pinned': 'true'}),
        keep_ids=dict(type='list', elements='str', default=[]),
        partial_max_age=dict(type='str', default='1d'),
    )
    for name, dummy in PERIODS:
        spec['keep_' + name] = dict(type='int')
    return spec


def retention_policy(params):
    """(Policy, partial max age) from the retention options; refuses a policy with no rule that limits
    anything, which would delete every snapshot but the newest and the pinned ones."""
    try:
        policy = Policy(keep_last=params['keep_last'], keep_within=params['keep_within'],
                        keep_labels=params['keep_labels'], keep_ids=params['keep_ids'],
                        **dict(('keep_' + n, params['keep_' + n]) for n, dummy in PERIODS))
        max_age = parse_duration(params['partial_max_age'], 'partial_max_age')
    except RetentionError as e:
        raise ModuleFailure(str(e))
    if not policy.has_time_rules():
        raise ModuleFailure('no retention rule given: set keep_last, keep_within or a keep_hourly ... keep_yearly '
                            'rule (refusing to delete every snapshot but the newest and the pinned ones)')
    return policy, max_age


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
