# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every error message the collection can fail a task with, read from the code itself.

    python scripts/docs_errors.py REPO            # Markdown index on stdout (docs/reference/errors.md)
    python scripts/docs_errors.py REPO --json     # the same as JSON, for tests

Python: the message of every ``raise <Something>Error(...)`` / ``ModuleFailure(...)`` and every
``fail_json(msg=...)`` under plugins/ (for the Django helper's ``HelperError(kind, msg)``, the second
argument). Roles and playbooks: the ``msg`` of ``ansible.builtin.fail`` and the ``fail_msg`` of
``ansible.builtin.assert``. Values filled in at run time show as ``<…>``. Read from source text, never
by importing it, so the index can be made without Ansible or Django installed."""

from __future__ import annotations

import ast
import json
import os
import re
import sys

import yaml

HOLE = '<…>'
PERCENT = re.compile(r'%(\([^)]*\))?[-#0 +]*\d*(\.\d+)?[sdrfixXgeE]')
JINJA = re.compile(r'\{\{.*?\}\}|\{%.*?%\}', re.S)


def _template(node):
    """The literal text of a message expression, with ``<…>`` where a value is filled in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        left = _template(node.left)
        return PERCENT.sub(HOLE, left.replace('%%', '\0')).replace('\0', '%') if left is not None else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        return (left if left is not None else HOLE) + (right if right is not None else HOLE)
    if isinstance(node, ast.JoinedStr):
        return ''.join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'format':
        base = _template(node.func.value)
        return re.sub(r'\{[^{}]*\}', HOLE, base) if base is not None else None
    return None


def _name(func):
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ''


def _tidy(text):
    text = re.sub(r'\s+', ' ', text).strip()
    return re.sub(r'(%s\s*)+' % re.escape(HOLE), lambda m: HOLE + (' ' if m.group(0).endswith(' ') else ''), text)


class _Finder(ast.NodeVisitor):
    def __init__(self, path):
        self.path = path
        self.scope = []
        self.found = []

    def _visit_scope(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_scope

    def _add(self, node, kind, expr, error_kind=None):
        text = _template(expr) if expr is not None else None
        if text is None or len(re.findall(r'[A-Za-z]', text.replace(HOLE, ''))) < 3:
            return  # a message computed elsewhere (re-raised, or passed through): its origin is listed
        self.found.append(dict(source=self.path, where='.'.join(self.scope) or '(module)', raised=kind,
                               message=_tidy(text), django_error_kind=error_kind))

    def visit_Raise(self, node):
        exc = node.exc
        if isinstance(exc, ast.Call):
            name = _name(exc.func)
            if name.endswith(('Error', 'Failure', 'Exception')) and exc.args:
                if name == 'HelperError' and len(exc.args) > 1:
                    kind = exc.args[0].value if isinstance(exc.args[0], ast.Constant) else None
                    self._add(node, name, exc.args[1], kind)
                else:
                    self._add(node, name, exc.args[0])
        self.generic_visit(node)

    def visit_Call(self, node):
        if _name(node.func) == 'fail_json':
            for kw in node.keywords:
                if kw.arg == 'msg':
                    self._add(node, 'fail_json', kw.value)
        self.generic_visit(node)


def python_errors(repo):
    found = []
    base = os.path.join(repo, 'plugins')
    for top, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(top, name)
                with open(path, encoding='utf-8') as f:
                    tree = ast.parse(f.read(), path)
                finder = _Finder(os.path.relpath(path, repo))
                finder.visit(tree)
                found.extend(finder.found)
    return found


def _tasks(node):
    """Every task dict in a parsed tasks file or playbook, blocks and rescue/always included."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ('tasks', 'pre_tasks', 'post_tasks', 'handlers', 'block', 'rescue', 'always'):
            if key in node:
                yield from _tasks(node[key])


def yaml_errors(repo):
    found = []
    files = []
    for sub in ('roles', 'playbooks'):
        for top, dirs, names in os.walk(os.path.join(repo, sub)):
            dirs.sort()
            files += [os.path.join(top, n) for n in sorted(names)
                      if n.endswith(('.yml', '.yaml')) and os.sep + 'meta' not in top and os.sep + 'defaults' not in top]
    for path in files:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
        for task in _tasks(data):
            for module, key in (('ansible.builtin.fail', 'msg'), ('ansible.builtin.assert', 'fail_msg')):
                args = task.get(module)
                if isinstance(args, dict) and isinstance(args.get(key), str):
                    found.append(dict(source=os.path.relpath(path, repo), where=task.get('name', ''),
                                      raised=module.rsplit('.', 1)[1], message=_tidy(JINJA.sub(HOLE, args[key])),
                                      django_error_kind=None))
    return found


def collect(repo):
    return python_errors(repo) + yaml_errors(repo)


def markdown(errors):
    out = ['<!-- Generated by `make docs` (scripts/docs_errors.py) from the code: do not edit. -->', '',
           '# Every error message, by where it is raised', '',
           'What an operator can see in a failed task\'s `msg`, read from the code (`%s` marks a value filled '
           'in at run time). [troubleshooting.md](../troubleshooting.md) says, situation by situation, what '
           'to do about them. Django errors also carry `django_error_kind` (shown in brackets).' % HOLE, '',
           '%d messages.' % len(errors)]
    current = None
    for e in errors:
        if e['source'] != current:
            current = e['source']
            out += ['', '## `%s`' % current, '']
        kind = ' [`%s`]' % e['django_error_kind'] if e['django_error_kind'] else ''
        where = e['where'].replace('`', "'")
        out.append('- `%s`%s - %s' % (e['message'].replace('`', "'"), kind, where))
    return '\n'.join(out) + '\n'


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    errors = collect(os.path.abspath(argv[1]))
    if '--json' in argv[2:]:
        json.dump(errors, sys.stdout, indent=1)
        sys.stdout.write('\n')
    else:
        sys.stdout.write(markdown(errors))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
