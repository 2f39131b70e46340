# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: rewrite the DEFINER of every view, routine, trigger and event in a
mysqldump/mariadb-dump stream to CURRENT_USER while it flows into the client, and, for a restore into
another database, the database named by the dump's ``ALTER DATABASE`` lines.

Around a routine, trigger or event whose recorded database collation differs from the database's, both
dump tools write ``ALTER DATABASE `<db>` CHARACTER SET ... COLLATE ...`` (and back afterwards), naming the
database dumped. Restored into another database, those lines would change the source database (on the
same server) or fail (on another), so they are given the target's name.

Only the lines where the dump tools put a DEFINER clause are touched: they start with ``/*!``
(views, triggers, events) or ``CREATE `` (routines). Table data never does - it is on
``INSERT ...`` lines and, from MariaDB 10.11 on, on row lines starting with ``(`` - so a value that
happens to contain ``DEFINER=`x`@`y``` is never changed. A candidate line is held until its end (at
most ``MAX_HELD`` bytes; the clause is always near its start); every other line streams through
without being held, so a 1 GiB row costs no memory.
"""

from __future__ import annotations

import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Tap

_PREFIXES = (b'/*!', b'CREATE ')
_DEFINER_RE = re.compile(rb'DEFINER=`(?:[^`]|``)*`(?:@`(?:[^`]|``)*`)?')
_CURRENT_USER = b'DEFINER=CURRENT_USER'
_ALTER_DATABASE = b'ALTER DATABASE '


def quote_name(name):
    """A database name as the dump tools quote it."""
    return b'`' + name.encode('utf-8').replace(b'`', b'``') + b'`'


class DefinerRewriter(Tap):
    MAX_HELD = 64 * 1024

    def __init__(self, definers=True, rename=None):
        """``definers``: rewrite DEFINER clauses; ``rename``: ``(dumped database, target database)``."""
        self.rewritten = 0
        self.renamed = 0
        self._definers = definers
        prefixes = list(_PREFIXES) if definers else []
        self._rename = None
        if rename and rename[0] != rename[1]:
            self._rename = (re.compile(rb'^' + re.escape(_ALTER_DATABASE + quote_name(rename[0]) + b' ')),
                            _ALTER_DATABASE + quote_name(rename[1]) + b' ')
            prefixes.append(_ALTER_DATABASE)
        self._prefixes = tuple(prefixes)
        self._longest = max([len(p) for p in prefixes] or [0])
        self._held = bytearray()
        self._passing = False  # inside a line already judged (or flushed): copy until its end

    def observe(self, chunk):
        raise NotImplementedError('DefinerRewriter changes the stream; use pass_on')

    def _verdict(self):
        """True when the held line is a candidate, False when it cannot be, None when too short to tell."""
        held = bytes(self._held[:self._longest])
        if any(held.startswith(p) for p in self._prefixes):
            return True
        if any(p.startswith(held) for p in self._prefixes) and not held.endswith(b'\n'):
            return None
        return False

    def _release(self, rewrite):
        data = bytes(self._held)
        self._held = bytearray()
        self._passing = True
        if rewrite and self._rename is not None and data.startswith(_ALTER_DATABASE):
            data, n = self._rename[0].subn(self._rename[1], data, count=1)
            self.renamed += n
        elif rewrite and self._definers:
            data, n = _DEFINER_RE.subn(_CURRENT_USER, data, count=1)
            self.rewritten += n
        return data

    def pass_on(self, chunk):
        data = bytes(chunk)
        out = []
        pos = 0
        while pos < len(data):
            nl = data.find(b'\n', pos)
            stop = len(data) if nl < 0 else nl + 1
            piece = data[pos:stop]
            pos = stop
            if self._passing:
                out.append(piece)
            else:
                self._held += piece
                verdict = self._verdict()
                if verdict is False:
                    out.append(self._release(False))
                elif verdict and (nl >= 0 or len(self._held) >= self.MAX_HELD):
                    out.append(self._release(True))
            if nl >= 0:
                self._passing = False
        return b''.join(out)

    def flush(self):
        if not self._held:
            return b''
        return self._release(bool(self._verdict()))
