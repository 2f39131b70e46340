# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: what a PostgreSQL plain (SQL) dump needs on its way into psql when it is
restored for the owner role by a superuser (``ExtensionRoleFilter``)."""

from __future__ import annotations

import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Tap


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


# What ExtensionRoleFilter looks for in the SQL of a plain dump.
_SQL_SPECIAL = re.compile(rb'[-/\'"$;()]')
_SPACE = re.compile(rb'[ \t\r\n\f\v]*')
_IDENT_BYTE = re.compile(rb'[A-Za-z_0-9$\x80-\xff]')
_DOLLAR_TAG = re.compile(rb'\$(?:[A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*)?\$')
_DOLLAR_START = re.compile(rb'\$[A-Za-z_0-9\x80-\xff]*\Z')  # the start of a tag the chunk cuts off
_E_STRING_SPECIAL = re.compile(rb"[\\']")
_COMMENT_MARK = re.compile(rb'/\*|\*/|[/*]\Z')
_EXTENSION_STATEMENTS = (b'CREATE EXTENSION ', b'COMMENT ON EXTENSION ')
_HEAD = max(len(p) for p in _EXTENSION_STATEMENTS)
_NEED = -1  # a scanner's answer: the bytes left cannot be judged before more of the stream arrives

# ExtensionRoleFilter's states
_SQL, _QUOTE, _E_QUOTE, _IDENT, _DOLLAR, _COMMENT, _LINE, _COPY = range(8)


def _progress(pos, start):
    return pos if pos > start else _NEED


class ExtensionRoleFilter(Tap):
    """Runs the ``CREATE EXTENSION`` and ``COMMENT ON EXTENSION`` statements of a plain dump, which psql runs as
    the owner role (``SET ROLE``), as the login user: ``RESET ROLE;`` before each, ``SET ROLE <owner>;`` after it.
    An extension only a superuser may create (and the comment on it, which only its owner may set) then restores
    too, as in the first pass of an archive's restore for the owner.

    Only statements are judged, never text inside one: the filter follows the script as psql reads it, through
    quoted strings (``'...'``, ``E'...'``), quoted names, dollar-quoted bodies, comments, psql's backslash
    commands (``\\restrict``) and ``COPY ... FROM stdin;`` data up to its ``\\.`` line. A statement starts at its
    first byte outside all of them after a ``;`` at parenthesis depth 0; pg_dump writes the two statements at
    the start of a line, in capitals, and nothing before them on it. A ``'...'`` string is read as
    standard-conforming: where pg_dump writes ``standard_conforming_strings = off`` it doubles every backslash in
    a string, so the string ends at the same quote either way. (A ``;`` inside a ``BEGIN ATOMIC`` function body
    ends a statement for this filter and not for psql; no statement that the filter changes may stand in such a
    body.) The stream is never held: at most a few bytes of a token cut by a chunk boundary wait for the next
    chunk, and table data passes at the speed of ``bytes.find``."""

    def __init__(self, role):
        self.reset = b'RESET ROLE;\n'
        self.set_role = ('\nSET ROLE %s;' % quote_ident(role)).encode('utf-8')
        self.wrapped = 0
        self.state = _SQL
        self.fresh = True  # between statements
        self.wrapping = False  # in a statement this filter wraps
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
        return 'extension statements run as the login user: %d' % self.wrapped

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
            self.state = _IDENT
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
        head = data[i:i + _HEAD]
        if len(head) < _HEAD and b'\n' not in head and not final:
            return _progress(i, pos)
        self.fresh, self.depth = False, 0
        self.copy = head.startswith(b'COPY ')
        self.wrapping = head.startswith(_EXTENSION_STATEMENTS)
        if self.wrapping:
            self._insert(data, i, self.reset)
        return i

    def _statement_end(self, data, pos):
        self.fresh = True
        if self.wrapping:
            self._insert(data, pos, self.set_role)
            self.wrapped += 1
        if self.copy:  # the data starts on the next line
            self.state, self.after_line = _LINE, _COPY

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
