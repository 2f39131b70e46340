# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: an SQL script on its way into the ONE psql transaction of a restore (a plain dump,
or what pg_restore writes of an archive): ``PlainDumpFilter``."""

from __future__ import annotations

import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Tap


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


# What PlainDumpFilter looks for in the SQL.
_SQL_SPECIAL = re.compile(rb'[-/\'"$;()]')
_SPACE = re.compile(rb'[ \t\r\n\f\v]*')
_IDENT_BYTE = re.compile(rb'[A-Za-z_0-9$\x80-\xff]')
_DOLLAR_TAG = re.compile(rb'\$(?:[A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*)?\$')
_DOLLAR_START = re.compile(rb'\$[A-Za-z_0-9\x80-\xff]*\Z')  # the start of a tag the chunk cuts off
_E_STRING_SPECIAL = re.compile(rb"[\\']")
_COMMENT_MARK = re.compile(rb'/\*|\*/|[/*]\Z')
_NEED = -1  # a scanner's answer: the bytes left cannot be judged before more of the stream arrives

# Statements of the script, judged by their start: pg_dump writes them at the start of a line, in capitals.
_DROPPED = (b'BEGIN;', b'COMMIT;')  # a large objects' section brackets itself; inside ONE transaction it must not
# Statements a superuser runs as itself when it restores for the owner role: extensions only a superuser may
# create (and their comments, which only their owner may set), and privileges, which a superuser grants and
# revokes "as though it were issued by the owner of the affected object", so the owner's own objects end up the
# same and an extension's objects (which the owner may not grant on) right.
_AS_LOGIN_USER = (b'CREATE EXTENSION ', b'COMMENT ON EXTENSION ', b'GRANT ', b'REVOKE ', b'ALTER DEFAULT PRIVILEGES ',
                  b'CREATE EVENT TRIGGER ', b'ALTER EVENT TRIGGER ', b'COMMENT ON EVENT TRIGGER ')
# pg_dump writes a grant of a role other than the owner between these two, as that role.
_OTHER_GRANTOR, _GRANTOR_END = b'SET SESSION AUTHORIZATION ', b'RESET SESSION AUTHORIZATION;'
# Names as pg_dump writes them (schema-qualified, quoted where needed), and the tables and sequences the script
# creates: a COPY into (or a setval of) any other is an extension's configuration table (or sequence), which the
# extension created and the owner may not write.
_IDENT = rb'(?:"(?:[^"]|"")*"|[A-Za-z_\x80-\xff][A-Za-z_0-9$\x80-\xff]*)'
_QUALIFIED = rb'(%s(?:\.%s)*)' % (_IDENT, _IDENT)
_CREATED = (
    re.compile(rb'CREATE (?:UNLOGGED |FOREIGN )?TABLE %s[ (;\r\n]' % _QUALIFIED),
    re.compile(rb'CREATE (?:UNLOGGED )?SEQUENCE %s[ ;\r\n]' % _QUALIFIED),
    re.compile(rb'ALTER TABLE (?:ONLY )?%s ALTER COLUMN %s ADD GENERATED (?:ALWAYS|BY DEFAULT) AS IDENTITY '
               rb'\(\r?\n    SEQUENCE NAME %s\r?\n' % (_QUALIFIED, _IDENT, _QUALIFIED)))
_TABLES, _SEQUENCES = 0, 1  # which set a _CREATED pattern adds to: the first, the others
_COPY = re.compile(rb'COPY %s[ ;]' % _QUALIFIED)
_SETVAL_START = b'SELECT pg_catalog.setval('
_SETVAL = re.compile(rb"SELECT pg_catalog\.setval\('((?:[^']|'')*)'")
# The head of a statement read before it is judged: a statement start, or the longest of the names above.
_HEAD, _WIDE_HEAD = max(len(p) for p in _DROPPED), 1024

# PlainDumpFilter's states
_SQL, _QUOTE, _E_QUOTE, _IDENT_STATE, _DOLLAR, _COMMENT, _LINE, _COPY_DATA = range(8)


def _progress(pos, start):
    return pos if pos > start else _NEED


class PlainDumpFilter(Tap):
    """Leaves out the top-level ``BEGIN;`` and ``COMMIT;`` of an SQL script that psql runs as ONE transaction
    (``--single-transaction``): pg_dump brackets the large objects' data with them (pg_restore too, writing a
    script), and that ``COMMIT`` would end the restore's transaction half-way, the rest then running without one.

    With ``set_role`` (a superuser restoring for the owner role, which psql runs the script as: the SQL statement
    that takes that role), the statements that must run as the login user do, each between ``RESET ROLE;`` and
    ``set_role``: ``CREATE EXTENSION``, ``COMMENT ON EXTENSION``, ``GRANT``, ``REVOKE``, ``ALTER
    DEFAULT PRIVILEGES``, and the ``COPY`` (up to its ``\\.`` line) and ``SELECT pg_catalog.setval`` of a table or
    sequence the script does not create (an extension's configuration table). A grant pg_dump writes as another
    role (``SET SESSION AUTHORIZATION`` ... ``RESET SESSION AUTHORIZATION;``) runs as that role as before; the
    owner role is taken again after it. (An archive's restore for the owner restores the same in passes.)

    Only statements are judged, never text inside one: the filter follows the script as psql reads it, through
    quoted strings (``'...'``, ``E'...'``), quoted names, dollar-quoted bodies, comments, psql's backslash
    commands (``\\restrict``) and ``COPY ... FROM stdin;`` data up to its ``\\.`` line. A statement starts at its
    first byte outside all of them after a ``;`` at parenthesis depth 0; pg_dump writes the statements above at
    the start of a line, in capitals, and nothing before them on it. A ``'...'`` string is read as
    standard-conforming: where pg_dump writes ``standard_conforming_strings = off`` it doubles every backslash in
    a string, so the string ends at the same quote either way. (A ``;`` inside a ``BEGIN ATOMIC`` function body
    ends a statement for this filter and not for psql; no statement that the filter changes may stand in such a
    body.) The stream is never held: at most the head of a statement (1 KiB with ``set_role``, a few bytes without)
    or a few bytes of a token cut by a chunk boundary wait for the next chunk, and table data passes at the speed
    of ``bytes.find``. What it hands on is its input with the inserted statements added and the left out ones
    removed, byte for byte."""

    def __init__(self, set_role=None):
        self.reset = b'RESET ROLE;\n'
        self.set_role = ('\n%s;' % set_role).encode('utf-8') if set_role else None
        self.head_size = _WIDE_HEAD if set_role else _HEAD
        self.wrapped = 0  # statements run as the login user
        self.dropped = 0
        self.created = (set(), set())  # the tables and the sequences the script creates
        self.other_grantor = False  # between SET and RESET SESSION AUTHORIZATION
        self.state = _SQL
        self.fresh = True  # between statements
        self.take_role = False  # the owner role is taken again after this statement (a COPY: after its data)
        self.copy = False  # in a COPY statement: its data follows
        self.depth = 0
        self.tag = None  # the delimiter of the dollar-quoted string
        self.nesting = 0  # of /* */ comments
        self.after_line = _SQL  # the state after the rest of the line (_LINE)
        self.line_start = False  # in COPY data: at the start of a line
        self.carry = b''  # bytes that could not be judged yet
        self.before = b''  # the last two bytes handed on before ``carry``
        self._out = None
        self._sent = 0

    def observe(self, chunk):
        pass  # pass_on does the work

    def pass_on(self, chunk):
        return self._feed(self.carry + bytes(chunk), False)

    def flush(self):
        return self._feed(self.carry, True) if self.carry else b''

    def describe(self):
        """What the filter did, for the restore's ``commands``: a list of lines (none: nothing to tell)."""
        said = []
        if self.set_role:
            said.append('statements run as the login user: %d' % self.wrapped)
        if self.dropped:
            said.append('BEGIN and COMMIT statements left out (the restore is one transaction): %d' % self.dropped)
        return said

    def _feed(self, data, final):
        self._out, self._sent = [], 0
        scanners = (self._sql, self._quote, self._e_quote, self._ident, self._dollar, self._comment, self._line,
                    self._copy_data)
        pos = 0
        while pos < len(data):
            nxt = scanners[self.state](data, pos, final)
            if nxt == _NEED:
                break
            pos = nxt
        self._out.append(data[self._sent:pos])
        self.carry = data[pos:]
        self.before = (self.before + data[max(0, pos - 2):pos])[-2:]
        return b''.join(self._out)

    def _insert(self, data, pos, text):
        self._out += [data[self._sent:pos], text]
        self._sent = pos

    def _behind(self, data, pos, n):
        """The ``n`` bytes before ``pos`` (from the previous chunk at its start)."""
        return (self.before + data[max(0, pos - n):pos])[-n:]

    # -- between and in statements ---------------------------------------------------------
    def _sql(self, data, pos, final):
        if self.fresh:
            return self._between(data, pos, final)
        m = _SQL_SPECIAL.search(data, pos)
        if m is None:
            return len(data)
        i = m.start()
        c = data[i:i + 1]
        if c in (b'-', b'/'):
            return self._comment_start(data, i, pos, final, True)
        if c == b"'":
            e = self._behind(data, i, 2)
            escaped = e[-1:] in (b'E', b'e') and not _IDENT_BYTE.match(e[:1] if len(e) == 2 else b' ')
            self.state = _E_QUOTE if escaped else _QUOTE
        elif c == b'"':
            self.state = _IDENT_STATE
        elif c == b'$':
            return self._dollar_start(data, i, pos, final)
        elif c == b'(':
            self.depth += 1
        elif c == b')':
            self.depth = max(0, self.depth - 1)
        elif not self.depth:
            self._statement_end(data, i + 1)
        return i + 1

    def _comment_start(self, data, i, pos, final, skip_other):
        """At ``-`` or ``/``: a comment starts, or (``skip_other``) the byte is an operator."""
        pair = data[i:i + 2]
        if len(pair) < 2 and not final:
            return _progress(i, pos)
        if pair == b'--':
            self.state, self.after_line = _LINE, _SQL
        elif pair == b'/*':
            self.state, self.nesting = _COMMENT, 1
        else:
            return i + 1 if skip_other else None
        return i + 2

    def _dollar_start(self, data, i, pos, final):
        if _IDENT_BYTE.match(self._behind(data, i, 1) or b' '):
            return i + 1  # in a name, or a parameter ($1)
        m = _DOLLAR_TAG.match(data, i)
        if m:
            self.state, self.tag = _DOLLAR, m.group()
            return m.end()
        if not final and _DOLLAR_START.match(data, i):
            return _progress(i, pos)
        return i + 1

    def _between(self, data, pos, final):
        i = _SPACE.match(data, pos).end()
        if i == len(data):
            return i
        c = data[i:i + 1]
        if c == b'\\':  # a psql command (\restrict, \connect): the rest of the line
            self.state, self.after_line = _LINE, _SQL
            return i + 1
        if c in (b'-', b'/'):
            nxt = self._comment_start(data, i, pos, final, False)
            if nxt is not None:
                return nxt
        head = data[i:i + self.head_size]
        if len(head) < self.head_size and not final:
            return _progress(i, pos)
        if head.startswith(_DROPPED):
            return self._drop(data, i, head.index(b';') + 1)
        self.fresh, self.depth = False, 0
        self.copy = head.startswith(b'COPY ')
        if self.set_role:
            self._judge(data, i, head)
        return i

    def _drop(self, data, i, size):
        self._out.append(data[self._sent:i])
        self._sent = i + size
        self.dropped += 1
        return i + size

    def _judge(self, data, i, head):
        """Runs the statement at ``i`` as the login user if it must, and notes what it creates."""
        if self.other_grantor:
            if head.startswith(_GRANTOR_END):
                self.other_grantor, self.take_role = False, True
            return
        if head.startswith(_OTHER_GRANTOR):
            self.other_grantor = True
            return
        self._note_created(head)
        if head.startswith(_AS_LOGIN_USER) or self._extension_data(head):
            self._insert(data, i, self.reset)
            self.take_role = True
            self.wrapped += 1

    def _note_created(self, head):
        for n, pattern in enumerate(_CREATED):
            m = pattern.match(head)
            if m:
                self.created[min(n, _SEQUENCES)].add(m.group(m.lastindex))
                return

    def _extension_data(self, head):
        """Whether the statement loads a table, or sets a sequence, that the script did not create."""
        if head.startswith(b'COPY '):
            m = _COPY.match(head)
            return not m or m.group(1) not in self.created[_TABLES]
        if head.startswith(_SETVAL_START):
            m = _SETVAL.match(head)
            return not m or m.group(1).replace(b"''", b"'") not in self.created[_SEQUENCES]
        return False

    def _statement_end(self, data, pos):
        self.fresh = True
        if self.copy:  # the data starts on the next line
            self.state, self.after_line = _LINE, _COPY_DATA
        elif self.take_role:
            self._take_role(data, pos)

    def _take_role(self, data, pos):
        self._insert(data, pos, self.set_role)
        self.take_role = False

    # -- inside a token ------------------------------------------------------------------------
    def _quote(self, data, pos, final):
        i = data.find(b"'", pos)
        return self._close(i, data, 1)

    def _ident(self, data, pos, final):
        i = data.find(b'"', pos)
        return self._close(i, data, 1)

    def _close(self, i, data, size):
        if i < 0:
            return len(data)
        self.state = _SQL
        return i + size

    def _e_quote(self, data, pos, final):
        """In ``E'...'``: a backslash escapes the next byte, ``''`` is a quote."""
        m = _E_STRING_SPECIAL.search(data, pos)
        if m is None:
            return len(data)
        i = m.start()
        if i + 1 == len(data) and not final:
            return _progress(i, pos)
        if data[i:i + 1] == b'\\' or data[i + 1:i + 2] == b"'":
            return i + 2
        return self._close(i, data, 1)

    def _dollar(self, data, pos, final):
        i = data.find(self.tag, pos)
        if i >= 0:
            return self._close(i, data, len(self.tag))
        if final:
            return len(data)
        return _progress(len(data) - len(self.tag) + 1, pos)  # the end may be a cut delimiter

    def _comment(self, data, pos, final):
        m = _COMMENT_MARK.search(data, pos)
        if m is None:
            return len(data)
        i = m.start()
        if m.end() - i == 1:  # a / or * at the end of the chunk
            return len(data) if final else _progress(i, pos)
        self.nesting += 1 if m.group() == b'/*' else -1
        if not self.nesting:
            self.state = _SQL
        return m.end()

    def _line(self, data, pos, final):
        i = data.find(b'\n', pos)
        if i < 0:
            return len(data)
        self.state, self.line_start = self.after_line, True
        return i + 1

    def _copy_data(self, data, pos, final):
        """COPY data up to the line ``\\.`` (a data line never starts with a backslash and a period)."""
        if self.line_start:
            head = data[pos:pos + 2]
            if head == b'\\.':
                self.state, self.after_line, self.copy = _LINE, _SQL, False
                if self.take_role:
                    self._take_role(data, pos + 2)
                return pos + 2
            if len(head) < 2 and not final:
                return _NEED
            self.line_start = False
        i = data.find(b'\n\\.', pos)
        if i >= 0:
            self.line_start = True
            return i + 1
        end = len(data)
        if data.endswith(b'\n'):
            self.line_start = True
        elif data.endswith(b'\n\\') and not final:
            end -= 1
            self.line_start = True
        return max(end, pos)
