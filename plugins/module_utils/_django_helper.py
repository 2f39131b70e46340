# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the program the Django modules run INSIDE the project's interpreter.

``_django.py`` hands this file's source to the project's Python (``python HELPER REQUEST RESULT``,
cwd = the project) so the module's own Python needs no Django. It is plain Python for Django 4.2
and 5.2: no ansible imports, Django imported only inside functions. The request comes from a JSON
file; the answer goes to a JSON result file (``{"ok": true, ...}`` or ``{"ok": false, "error":
{...}}``), never screen text. Stdout is reserved for the fixture stream of ``dumpdata``; anything the
project prints goes to stderr.

The pure parts (operation flags, plan policy, failed-step detection) are importable for unit tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback

MASK = '********'

# Operations whose forward run drops data: a model (table), a field (column), or arbitrary SQL.
DESTRUCTIVE_FORWARDS = frozenset(['DeleteModel', 'RemoveField', 'RunSQL'])
# Unapplying these drops what they created; unapplying arbitrary SQL runs arbitrary SQL.
DESTRUCTIVE_BACKWARDS = frozenset(['CreateModel', 'AddField', 'RunSQL'])


class HelperError(Exception):
    """An error phrased for the operator; ``kind`` lets the module (and tests) tell errors apart."""

    def __init__(self, kind, message, **extra):
        super().__init__(message)
        self.kind = kind
        self.extra = extra


# -- pure logic ---------------------------------------------------------------------------------

def operation_flags(op_type, reversible, backwards, inner=None):
    """(irreversible, destructive) of one operation in the given direction.

    ``inner``: flags of nested database operations (SeparateDatabaseAndState), which decide for it."""
    irreversible = not reversible
    if inner:
        irreversible = irreversible or any(i[0] for i in inner)
        destructive = any(i[1] for i in inner)
    else:
        destructive = op_type in (DESTRUCTIVE_BACKWARDS if backwards else DESTRUCTIVE_FORWARDS)
    return irreversible, destructive


def plan_problems(plan, allow_irreversible=True, allow_destructive=True):
    """Reasons to refuse a plan before running any of it.

    A backwards step that cannot be reversed is always refused: Django would unapply the steps
    before it and only then fail, leaving the database halfway."""
    problems = []
    for step in plan:
        bad_ops = [op for op in step['operations'] if op['irreversible']]
        if step['backwards'] and step['irreversible']:
            problems.append('%s cannot be unapplied: %s' % (step['id'], '; '.join(_op_text(o) for o in bad_ops)))
        elif not step['backwards'] and step['irreversible'] and not allow_irreversible:
            problems.append('%s is irreversible (%s) and allow_irreversible is false'
                            % (step['id'], '; '.join(_op_text(o) for o in bad_ops)))
        if step['destructive'] and not allow_destructive:
            what = [op for op in step['operations'] if op['destructive']]
            problems.append('%s is destructive (%s) and allow_destructive is false'
                            % (step['id'], '; '.join(_op_text(o) for o in what)))
    return problems


def _op_text(op):
    text = op['description']
    if op.get('code'):
        text += ' ' + op['code']
    if op['irreversible']:
        text += ' (no reverse)'
    return text


def failed_step(plan, applied_after):
    """The plan step Django was running when it stopped: the first one whose effect on the
    recorded state is missing (forwards: not recorded; backwards: still recorded)."""
    for step in plan:
        recorded = step['id'] in applied_after
        if recorded == step['backwards']:
            return step
    return None


def effect_left(op_type, present, backwards):
    """Whether an operation's effect on the schema is in the database: an added column or table
    that is there, a removed one that is gone; the other way round when it was being unapplied."""
    creates = op_type in ('AddField', 'CreateModel')
    return (present == creates) != backwards


def scrub(text, secrets):
    for s in secrets:
        if s and len(s) >= 3:
            text = text.replace(s, MASK)
    return text


# -- talking to Django --------------------------------------------------------------------------

def _mid(key):
    return '%s.%s' % key


def _describe_operation(op, backwards):
    inner = None
    if type(op).__name__ == 'SeparateDatabaseAndState':
        inner = [operation_flags(type(i).__name__, getattr(i, 'reversible', True), backwards)
                 for i in op.database_operations]
    irreversible, destructive = operation_flags(type(op).__name__, getattr(op, 'reversible', True), backwards, inner)
    try:
        description = op.describe()
    except Exception:  # pylint: disable=broad-except
        description = type(op).__name__
    out = {'type': type(op).__name__, 'description': description, 'irreversible': irreversible,
           'destructive': destructive}
    code = getattr(op, 'code', None)
    if code is not None and callable(code):
        out['code'] = getattr(code, '__qualname__', getattr(code, '__name__', repr(code)))
    return out


def describe_step(migration, backwards):
    ops = [_describe_operation(op, backwards) for op in migration.operations]
    return {
        'id': '%s.%s' % (migration.app_label, migration.name),
        'app': migration.app_label,
        'name': migration.name,
        'backwards': bool(backwards),
        'atomic': bool(migration.atomic),
        'irreversible': any(o['irreversible'] for o in ops),
        'destructive': any(o['destructive'] for o in ops),
        'operations': ops,
    }


class Project(object):
    """Django set up for one request: settings, the database alias, the migration machinery."""

    def __init__(self, request):
        self.request = request
        self.alias = request.get('database') or 'default'
        self.connection = None
        self._secrets = []

    def setup(self):
        settings_module = os.environ.get('DJANGO_SETTINGS_MODULE')
        if not settings_module:
            raise HelperError('settings', 'no settings module: set the settings option (manage.py of %s does not '
                              'name one)' % os.getcwd())
        try:
            import django
        except ImportError as e:
            raise HelperError('no_django', 'Django is not importable by the interpreter %s (%s); point virtualenv or '
                              'python at the environment the project runs in' % (sys.executable, e))
        self.django = django
        import importlib.util
        try:
            spec = importlib.util.find_spec(settings_module)
        except (ImportError, ValueError) as e:
            spec = None
            reason = str(e)
        else:
            reason = 'no such module'
        if spec is None:
            raise HelperError('settings', 'settings module %r cannot be found from %s (%s)'
                              % (settings_module, os.getcwd(), reason))
        try:
            django.setup()
        except Exception as e:  # pylint: disable=broad-except
            raise HelperError('settings', 'settings module %r failed to load: %s: %s'
                              % (settings_module, type(e).__name__, e), traceback=traceback.format_exc())
        from django.conf import settings
        from django.db import connections
        from django.utils.connection import ConnectionDoesNotExist
        try:
            self.connection = connections[self.alias]
        except ConnectionDoesNotExist:
            raise HelperError('database_alias', 'database alias %r is not in DATABASES of %s (it has: %s)'
                              % (self.alias, settings_module, ', '.join(sorted(settings.DATABASES)) or 'none'))
        s = self.connection.settings_dict
        self.missing_sqlite = (self.connection.vendor == 'sqlite' and isinstance(s.get('NAME'), (str, os.PathLike))
                               and str(s['NAME']) != ':memory:' and not str(s['NAME']).startswith('file:')
                               and not os.path.exists(str(s['NAME'])))
        self._secrets = [_text(s.get('PASSWORD'))]
        for key, value in (s.get('OPTIONS') or {}).items():
            if 'pass' in str(key).lower() and value:
                self._secrets.append(_text(value))
        return self

    @property
    def secrets(self):
        return self._secrets

    def connect(self, create=False):
        from django.db import DatabaseError
        s = self.connection.settings_dict
        if self.missing_sqlite and not create:
            raise HelperError('database_unreachable', 'SQLite database %s (alias %r) does not exist'
                              % (os.path.abspath(str(s['NAME'])), self.alias))
        try:
            self.connection.ensure_connection()
        except DatabaseError as e:
            where = s.get('NAME') if self.connection.vendor == 'sqlite' else '%s at %s:%s' % (
                s.get('NAME'), s.get('HOST') or 'localhost', s.get('PORT') or 'default port')
            raise HelperError('database_unreachable', 'cannot connect to database %r (%s %s): %s'
                              % (self.alias, self.connection.vendor, where, str(e).strip()))

    def executor(self, create=False):
        """Django's migration executor. For a SQLite file that does not exist yet nothing is applied,
        and connecting would create the file: a read-only question must not do that."""
        from django.db.migrations.executor import MigrationExecutor
        if self.missing_sqlite and not create:
            return MigrationExecutor(None)
        self.connect(create=create)
        return MigrationExecutor(self.connection)

    def applied(self):
        """Applied migrations in the order they were recorded, from the django_migrations table."""
        from django.db.migrations.recorder import MigrationRecorder
        if self.missing_sqlite:
            return []
        recorder = MigrationRecorder(self.connection)
        if not recorder.has_table():
            return []
        return ['%s.%s' % (r.app, r.name) for r in recorder.migration_qs.order_by('id')]

    def targets(self, executor, app, target):
        """Django's own reading of ``migrate [app [target]]``; unknown names are refused by name."""
        from django.apps import apps
        from django.db.migrations.exceptions import AmbiguityError
        graph = executor.loader.graph
        if target and not app:
            raise HelperError('bad_target', 'a migration target (%r) needs an app' % target)
        if not app:
            return graph.leaf_nodes()
        try:
            apps.get_app_config(app)
        except LookupError:
            raise HelperError('unknown_app', 'no installed app with label %r (installed: %s)'
                              % (app, ', '.join(sorted(a.label for a in apps.get_app_configs()))))
        if app not in executor.loader.migrated_apps:
            raise HelperError('unknown_app', 'app %r has no migrations' % app)
        if not target:
            return [key for key in graph.leaf_nodes() if key[0] == app]
        if target == 'zero':
            return [(app, None)]
        names = sorted(n for a, n in executor.loader.disk_migrations if a == app)
        try:
            migration = executor.loader.get_migration_by_prefix(app, target)
        except AmbiguityError:
            raise HelperError('unknown_migration', 'more than one migration of app %r matches %r: %s'
                              % (app, target, ', '.join(n for n in names if n.startswith(target))))
        except KeyError:
            raise HelperError('unknown_migration', 'app %r has no migration %r (it has: %s)'
                              % (app, target, ', '.join(names)))
        return [(app, migration.name)]

    def plan(self, executor, app=None, target=None):
        conflicts = executor.loader.detect_conflicts()
        if conflicts:
            where = '; '.join('%s: %s' % (a, ', '.join(sorted(n))) for a, n in sorted(conflicts.items()))
            raise HelperError('conflicts', 'conflicting migrations (several leaf nodes) in %s; run makemigrations '
                              '--merge' % where, conflicts=conflicts)
        targets = self.targets(executor, app, target)
        return [describe_step(m, backwards) for m, backwards in executor.migration_plan(targets)]

    def model_changes(self):
        """The ``makemigrations --check`` question: model changes that no migration describes."""
        from django.apps import apps
        from django.db.migrations.autodetector import MigrationAutodetector
        from django.db.migrations.loader import MigrationLoader
        from django.db.migrations.questioner import MigrationQuestioner
        from django.db.migrations.state import ProjectState
        loader = MigrationLoader(None, ignore_no_migrations=True)
        # The base questioner never prompts and never exits (the non-interactive one exits when a
        # NOT NULL field lacks a default); a dry run only needs to know that a change exists.
        questioner = MigrationQuestioner(specified_apps=None, dry_run=True)
        autodetector = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps), questioner)
        changes = autodetector.changes(graph=loader.graph)
        out = {}
        for app_label, migrations in sorted(changes.items()):
            out[app_label] = [op.describe() for m in migrations for op in m.operations]
        return out

    def schema_effects(self, executor, step):
        """Which of a failed migration's schema operations left their mark in the database: what a
        database without transactional DDL (MySQL) keeps after a migration failed midway."""
        app, name, backwards = step['app'], step['name'], step['backwards']
        migration = executor.loader.get_migration(app, name)
        before = executor.loader.project_state((app, name), at_end=False).apps
        after = executor.loader.project_state((app, name), at_end=True).apps
        with self.connection.cursor() as cursor:
            tables = set(self.connection.introspection.table_names(cursor))

            def columns(table):
                if table not in tables:
                    return set()
                return set(c.name for c in self.connection.introspection.get_table_description(cursor, table))

            effects = []
            for op in migration.operations:
                kind = type(op).__name__
                entry = {'operation': op.describe(), 'type': kind}
                try:
                    if kind in ('AddField', 'RemoveField'):
                        state = after if kind == 'AddField' else before
                        model = state.get_model(app, op.model_name)
                        field = model._meta.get_field(op.name)
                        if field.many_to_many or not field.column:
                            entry['checked'] = False
                        else:
                            entry.update(table=model._meta.db_table, column=field.column, checked=True)
                            present = field.column in columns(model._meta.db_table)
                            entry.update(present=present, changed=effect_left(kind, present, backwards))
                    elif kind in ('CreateModel', 'DeleteModel'):
                        state = after if kind == 'CreateModel' else before
                        table = state.get_model(app, op.name)._meta.db_table
                        present = table in tables
                        entry.update(table=table, checked=True, present=present,
                                     changed=effect_left(kind, present, backwards))
                    else:
                        entry['checked'] = False
                except LookupError:
                    entry['checked'] = False
                effects.append(entry)
        return effects


# -- commands -----------------------------------------------------------------------------------

def _database_facts(project):
    from django.conf import settings
    s = project.connection.settings_dict
    name = s.get('NAME')
    if project.connection.vendor == 'sqlite' and name and isinstance(name, (str, os.PathLike)) \
            and str(name) != ':memory:' and not str(name).startswith('file:'):
        name = os.path.abspath(str(name))  # Django opens it relative to the cwd, which is the project
    options = {}
    for key, value in (s.get('OPTIONS') or {}).items():
        options[str(key)] = MASK if 'pass' in str(key).lower() else _jsonable(value)
    return {
        'alias': project.alias,
        'vendor': project.connection.vendor,
        'django_engine': s.get('ENGINE'),
        'name': None if name is None else str(name),
        'host': s.get('HOST') or '',
        'port': str(s.get('PORT') or ''),
        'user': s.get('USER') or '',
        'password': _text(s.get('PASSWORD')),
        'options': options,
        'transactional_ddl': bool(project.connection.features.can_rollback_ddl),
        'aliases': sorted(settings.DATABASES),
    }


def _text(value):
    """Settings may hold a password as bytes (PyMySQL needs that for non-latin-1 passwords)."""
    if value is None:
        return ''
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return str(value)


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return dict((str(k), _jsonable(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)


def _run_checks(project, deploy):
    from django.core import checks
    messages = checks.run_checks(include_deployment_checks=deploy, databases=[project.alias])
    out = []
    for m in messages:
        if m.is_silenced():
            continue
        out.append({'id': m.id, 'level': _level_name(m.level), 'msg': str(m.msg),
                    'hint': None if m.hint is None else str(m.hint), 'obj': None if m.obj is None else str(m.obj)})
    return {
        'deploy': deploy,
        'errors': sum(1 for m in out if m['level'] in ('ERROR', 'CRITICAL')),
        'warnings': sum(1 for m in out if m['level'] == 'WARNING'),
        'messages': out,
    }


def _level_name(level):
    from django.core import checks
    for name in ('CRITICAL', 'ERROR', 'WARNING', 'INFO', 'DEBUG'):
        if level >= getattr(checks, name):
            return name
    return 'DEBUG'


def cmd_info(project, req):
    from django.apps import apps
    from django.conf import settings
    gather = set(req.get('gather') or ['settings', 'migrations', 'model_changes', 'checks'])
    out = {
        'django_version': project.django.get_version(),
        'settings_module': os.environ.get('DJANGO_SETTINGS_MODULE'),
        'python': sys.executable,
        'python_version': '.'.join(str(x) for x in sys.version_info[:3]),
        'database': _database_facts(project),
        'media_root': str(settings.MEDIA_ROOT or ''),
        'media_url': str(settings.MEDIA_URL or ''),
        'static_root': str(settings.STATIC_ROOT or ''),
        'static_url': str(settings.STATIC_URL or ''),
        'installed_apps': [a.label for a in apps.get_app_configs()],
    }
    if 'migrations' in gather:
        executor = project.executor()
        applied = project.applied()
        out['applied'] = applied
        disk = set(_mid(k) for k in executor.loader.disk_migrations)
        out['applied_not_on_disk'] = [m for m in applied if m not in disk]
        out['plan'] = project.plan(executor)
    if 'model_changes' in gather:
        out['model_changes'] = project.model_changes()
    if 'checks' in gather:
        out['checks'] = _run_checks(project, bool(req.get('check_deploy')))
    return out


def cmd_plan(project, req, executor=None):
    executor = executor or project.executor()
    out = {'applied': project.applied(), 'plan': project.plan(executor, req.get('app'), req.get('target')),
           'transactional_ddl': bool(project.connection.features.can_rollback_ddl)}
    if req.get('model_changes'):
        out['model_changes'] = project.model_changes()
    return out


def unrecorded_squashes(executor):
    """Squashed migrations whose replaced migrations are all applied but which are not recorded themselves.
    Django's migrate records them (MigrationExecutor.check_replacements) even when it has nothing to run;
    unrecorded, the squash is applied again (CREATE TABLE of existing tables) once the replaced files go."""
    applied = executor.recorder.applied_migrations()
    return sorted('%s.%s' % key for key, migration in executor.loader.replacements.items()
                  if key not in applied and all(t in applied for t in migration.replaces))


def cmd_migrate(project, req):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError
    executor = project.executor()
    out = cmd_plan(project, req, executor)
    problems = plan_problems(out['plan'], req.get('allow_irreversible', True), req.get('allow_destructive', True))
    if req.get('fail_on_model_changes') and out.get('model_changes'):
        problems.append('models have changes without a migration: %s' % '; '.join(
            '%s: %s' % (a, ', '.join(c)) for a, c in sorted(out['model_changes'].items())))
    if problems:
        raise HelperError('refused', 'refusing to migrate, nothing was run: ' + ' | '.join(problems), **out)
    if not out['plan'] and not req.get('fake_initial') and not unrecorded_squashes(executor):
        out['applied_after'] = out['applied']
        return out
    project.connect(create=True)
    project.missing_sqlite = False
    text = io.StringIO()
    try:
        call_command('migrate', *[a for a in (req.get('app'), req.get('target')) if a],
                     database=project.alias, fake=bool(req.get('fake')), fake_initial=bool(req.get('fake_initial')),
                     interactive=False, verbosity=1, stdout=text, stderr=text)
    except SystemCheckError as e:
        raise HelperError('checks', 'Django system checks failed, nothing was migrated: %s' % e, **out)
    except BaseException as e:  # pylint: disable=broad-except
        error = '%s: %s' % (type(e).__name__, e)
        tb = traceback.format_exc()
        # The failed migration may have left the connection in an aborted transaction.
        project.connection.close()
        after = project.applied()
        out['applied_after'] = after
        out['output'] = text.getvalue().splitlines()[-200:]
        step = failed_step(out['plan'], set(after))
        extra = dict(out, traceback=tb, django_error=error)
        if step is not None:
            extra['failed_migration'] = step['id']
            extra['schema_effects'] = project.schema_effects(project.executor(create=True), step)
        raise HelperError('migration_failed', 'migration %s failed: %s'
                          % (step['id'] if step else '(unknown)', error), **extra)
    out['applied_after'] = project.applied()
    out['output'] = text.getvalue().splitlines()[-200:]
    return out


def _precise_encoder():
    """Django's JSON encoder cuts datetimes and times to milliseconds; a snapshot must give back
    what it took, and loaddata reads microseconds just as well."""
    import datetime
    from django.core.serializers.json import DjangoJSONEncoder

    class PreciseJSONEncoder(DjangoJSONEncoder):
        def default(self, o):
            if isinstance(o, (datetime.datetime, datetime.time)) and not (
                    isinstance(o, datetime.time) and o.utcoffset() is not None):
                text = o.isoformat()
                return text[:-6] + 'Z' if text.endswith('+00:00') else text
            return super().default(o)

    return PreciseJSONEncoder


@contextlib.contextmanager
def _counting(attr, counts, key):
    """Wrap django.core.serializers.<attr> so every object passing through is counted per model."""
    from django.core import serializers
    original = getattr(serializers, attr)

    def counted(iterable):
        for obj in iterable:
            label = key(obj)
            counts[label] = counts.get(label, 0) + 1
            yield obj

    def wrapper(fmt, objects, *args, **kwargs):
        if attr == 'serialize':
            if fmt in ('json', 'jsonl'):
                kwargs.setdefault('cls', _precise_encoder())
            return original(fmt, counted(objects), *args, **kwargs)
        return counted(original(fmt, objects, *args, **kwargs))

    setattr(serializers, attr, wrapper)
    try:
        yield counts
    finally:
        setattr(serializers, attr, original)


def _check_labels(labels, what):
    from django.apps import apps
    for label in labels or []:
        app_label, _dot, model = label.partition('.')
        try:
            config = apps.get_app_config(app_label)
            if model:
                config.get_model(model)
        except LookupError:
            raise HelperError('unknown_app', 'unknown %s %r: no installed app or model by that label' % (what, label))


@contextlib.contextmanager
def _consistent_read(project):
    """One snapshot for every table dumped, so a running application cannot make the fixture
    inconsistent (PostgreSQL's default isolation would give each query its own snapshot)."""
    from django.db import transaction
    with transaction.atomic(using=project.alias):
        if project.connection.vendor == 'postgresql':
            with project.connection.cursor() as c:
                c.execute('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        yield


def cmd_dumpdata(project, req, stdout):
    from django.core.management import call_command
    _check_labels(req.get('apps'), 'app')
    _check_labels(req.get('exclude'), 'exclude')
    project.connect()
    if req.get('dry_run'):
        return {'counts': None, 'objects': None, 'django_version': project.django.get_version(),
                'vendor': project.connection.vendor}
    counts = {}
    with _consistent_read(project), _counting('serialize', counts, lambda o: o._meta.label_lower):
        call_command('dumpdata', *(req.get('apps') or []), database=project.alias, format=req.get('format', 'jsonl'),
                     exclude=req.get('exclude') or [], use_natural_foreign_keys=bool(req.get('natural_foreign')),
                     use_natural_primary_keys=bool(req.get('natural_primary')), indent=None, stdout=stdout,
                     verbosity=0)
    stdout.flush()
    return {'counts': counts, 'objects': sum(counts.values()), 'format': req.get('format', 'jsonl'),
            'django_version': project.django.get_version(), 'vendor': project.connection.vendor}


def cmd_loaddata(project, req):
    from django.core.management import call_command
    from django.db import transaction
    project.connect()
    out = {'flushed': False, 'vendor': project.connection.vendor,
           'django_version': project.django.get_version()}
    counts = {}
    text = io.StringIO()
    # Flush and load in one transaction: where the database can roll back the flush (PostgreSQL,
    # SQLite), a fixture that fails to load leaves the old data, not an empty database.
    with transaction.atomic(using=project.alias):
        if req.get('flush'):
            call_command('flush', database=project.alias, interactive=False, verbosity=0)
            out['flushed'] = True
        with _counting('deserialize', counts, lambda o: o.object._meta.label_lower):
            call_command('loaddata', '-', format=req.get('format', 'jsonl'), database=project.alias,
                         verbosity=1, stdout=text, stderr=text)
    out['counts'] = counts
    out['objects'] = sum(counts.values())
    out['output'] = text.getvalue().splitlines()[-50:]
    out['table_counts'] = cmd_count(project, {'models': sorted(counts)})['counts']
    return out


def cmd_count(project, req):
    """Rows per model label in the database: every row (the base manager), whatever a default manager hides."""
    from django.apps import apps
    project.connect()
    counts = {}
    for label in req.get('models') or []:
        try:
            model = apps.get_model(label)
        except LookupError:
            counts[label] = None
            continue
        counts[label] = model._base_manager.using(project.alias).count()
    return {'counts': counts}


COMMANDS = {'info': cmd_info, 'plan': cmd_plan, 'migrate': cmd_migrate, 'loaddata': cmd_loaddata,
            'count': cmd_count}


def main(argv):
    request_path, result_path = argv[1], argv[2]
    with open(request_path, encoding='utf-8') as f:
        req = json.load(f)
    # What manage.py gets for free: its own directory (the project, our cwd) first on sys.path,
    # instead of this helper's temporary directory.
    sys.path[0] = os.getcwd()
    # Stdout carries only the fixture of dumpdata; a print() in a migration or settings must not.
    data_out = io.TextIOWrapper(os.fdopen(os.dup(1), 'wb'), encoding='utf-8', newline='\n')
    sys.stdout = sys.stderr
    project = Project(req)
    result = {'ok': True}
    try:
        project.setup()
        if req['command'] == 'dumpdata':
            result.update(cmd_dumpdata(project, req, data_out))
        else:
            result.update(COMMANDS[req['command']](project, req))
    except HelperError as e:
        result = {'ok': False, 'error': dict(e.extra, kind=e.kind, message=str(e))}
    except BaseException as e:  # pylint: disable=broad-except
        result = {'ok': False, 'error': {'kind': 'django', 'message': '%s: %s' % (type(e).__name__, e),
                                         'traceback': traceback.format_exc()}}
    # The password leaves only in its own field, which the module hands on or drops; every other
    # occurrence (an error message quoting a DSN, say) is masked.
    password = result.get('database', {}).pop('password', None) if result.get('ok') else None
    text = scrub(json.dumps(result, default=str), project.secrets)
    if password:
        result = json.loads(text)
        result['database']['password'] = password
        text = json.dumps(result)
    with open(result_path, 'w', encoding='utf-8') as f:
        f.write(text)
    try:
        data_out.close()
    except OSError:
        pass
    return 0 if result['ok'] else 3


if __name__ == '__main__':
    raise SystemExit(main(sys.argv))
