# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: load a mysqldump / mariadb-dump stream with the rows of large tables spread
over several clients.

One ``mysql``/``mariadb`` client (the main one) gets the whole dump in order, as a plain restore would,
except the ``INSERT`` statements of a table that has more than one of them: from the second such statement
on, the table's statements go to ``jobs`` more clients at once, each started with the dump's session header
(character set, ``TIME_ZONE='+00:00'``, ``UNIQUE_CHECKS=0``, ``FOREIGN_KEY_CHECKS=0``, ``SQL_MODE``). The
server then parses and inserts on several threads instead of one, which is where a MySQL restore spends its
time.

Order is kept where it matters:

- a table's rows are sent only after the main client has created the table (a marker ``SELECT`` it
  answers on its standard output proves that every statement before it has run);
- the main client goes on (``ENABLE KEYS``, the table's triggers, the next table) only after every client
  that loaded the table has finished and exited 0, so no trigger fires on restored rows;
- the dump's ``LOCK TABLES <t> WRITE`` of such a table is left out (it would shut the other clients out);
  ``UNLOCK TABLES`` is harmless and passes.

Statements are found by the layout both dump tools write: a statement starts at the beginning of a line and
an ``INSERT`` ends at the first ``;`` that ends a line (values never hold a raw newline: the tools escape
it); between ``DELIMITER ;;`` and ``DELIMITER ;`` (the body of a routine, trigger or event) nothing is an
``INSERT`` of rows. A dump whose header does not hold the settings above is loaded by the main client alone.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    ToolError, _StderrReader, _child_env, _judge)

QUEUE_DEPTH = 2  # statements waiting per client (about 1 MiB each): enough to keep it busy, little memory
# What the session header of the dump must set for rows loaded by another client to mean the same thing.
HEADER_NEEDS = (re.compile(br'SET NAMES '), re.compile(br"TIME_ZONE='\+00:00'"),
                re.compile(br'FOREIGN_KEY_CHECKS=0'), re.compile(br'UNIQUE_CHECKS=0'),
                re.compile(br'SQL_MODE='))
_INSERT = b'INSERT INTO '
_LOCK = b'LOCK TABLES '
_MARKER = b'djangoops-sync-'
_QUOTED = re.compile(br'`(?:[^`]|``)+`')


def quoted_name(line, prefix):
    """The backquoted table name right after ``prefix`` in ``line`` (bytes, quotes included), or None."""
    m = _QUOTED.match(line, len(prefix))
    return m.group(0) if m else None


class _Client(object):
    """One client process fed through a bounded queue by a writer thread, so the reader of the dump never
    waits on one slow client while another idles."""

    def __init__(self, step, answers=False):
        self.step = step
        self.proc = subprocess.Popen(step.argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE if answers else subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=_child_env(step.env), close_fds=True)
        self.stderr = _StderrReader(self.proc.stderr)
        self.stderr.start()
        self.queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.answers = queue.Queue() if answers else None
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.writer.start()
        if answers:
            threading.Thread(target=self._read, daemon=True).start()
        self.killed = False

    def _write(self):
        broken = False
        while True:
            item = self.queue.get()
            if item is None:
                break
            if broken:
                continue  # keep taking items, so that whoever feeds this client never blocks on it
            try:
                self.proc.stdin.write(item)
                self.proc.stdin.flush()  # a marker must reach the client now, not when a buffer fills
            except (BrokenPipeError, OSError):
                broken = True  # the client died: its exit status and stderr say why
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def _read(self):
        for line in iter(self.proc.stdout.readline, b''):
            self.answers.put(line)
        self.answers.put(None)

    def send(self, data):
        self.queue.put(data)

    def dead(self):
        return self.proc.poll() is not None

    def close(self):
        """No more input: the client runs what it has and exits."""
        self.queue.put(None)

    def wait(self):
        self.writer.join()
        rc = self.proc.wait()
        self.stderr.join()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
                self.killed = True  # by the loader: a consequence of another failure, not a cause
            except OSError:
                pass


class ParallelSqlLoader(object):
    """A sink for ``run_pipeline``: ``write`` the dump's bytes, then ``finish`` (or ``abort`` on failure).

    ``make_step(main)`` returns the Step of a client (the main one when ``main`` is true: it must flush its
    output after every statement, ``--unbuffered``). ``jobs`` clients load a large table's rows.
    """

    def __init__(self, make_step, jobs, record=None, client=_Client):
        self.make_step = make_step
        self.jobs = jobs
        self.record = record or (lambda message: None)
        self.client = client  # the class of a client process (the unit tests give a recorder)
        self.main = client(make_step(True), answers=True)
        self.clients = [self.main]
        self.buf = bytearray()
        self.header = bytearray()
        self.in_header = True
        self.delimited = False  # between DELIMITER ;; and DELIMITER ; (a routine, trigger or event body)
        self.parallel_ok = None  # decided when the header ends
        self.held = []  # LOCK TABLES / DISABLE KEYS lines of a table not yet known to be large
        self.pending = None  # (table, first INSERT statement) of that table
        self.table = None  # the table whose rows the workers are loading now
        self.workers = []
        self.markers = 0
        self.loaded = {}  # table name -> INSERT statements sent to the workers

    # -- the stream --------------------------------------------------------------------------
    def write(self, chunk):
        self.buf += chunk
        self._parse(final=False)
        if self.main.dead():
            self._fail_fast()

    def _parse(self, final):
        buf = self.buf
        pos = 0
        while pos < len(buf):
            if buf.startswith(_INSERT, pos) and not self.in_header and not self.delimited:
                end = buf.find(b';\n', pos)
                if end < 0:
                    break  # the statement is not complete yet
                self._insert(bytes(buf[pos:end + 2]))
                pos = end + 2
                continue
            end = buf.find(b'\n', pos)
            if end < 0:
                break
            self._line(bytes(buf[pos:end + 1]))
            pos = end + 1
        del buf[:pos]
        if final and buf:
            self._line(bytes(buf))  # a last line without a newline
            del buf[:]

    def _line(self, line):
        if self.in_header:
            stripped = line.strip()
            if not stripped or stripped.startswith(b'--') or stripped.startswith(b'/*'):
                self.header += line
                self.main.send(line)
                return
            self.in_header = False
            missing = [p.pattern.decode() for p in HEADER_NEEDS if not p.search(self.header)]
            self.parallel_ok = self.jobs > 1 and not missing
            if missing and self.jobs > 1:
                self.record('the dump\'s header does not set %s: loaded by one client' % ', '.join(missing))
        if self.table is not None:
            self._end_table()
        if line.startswith(b'DELIMITER '):
            self.delimited = line.strip() != b'DELIMITER ;'
        if line.startswith(_LOCK) and self.parallel_ok:
            self._release()
            self.held.append(line)
            return
        if self.held and line.startswith(b'/*!40000 ALTER TABLE ') and line.rstrip().endswith(b'DISABLE KEYS */;'):
            self.held.append(line)
            return
        self._release()
        self.main.send(line)

    def _insert(self, statement):
        name = quoted_name(statement, _INSERT)
        if self.table is not None:
            if name == self.table:
                self._to_worker(statement)
                return
            self._end_table()
        if not self.parallel_ok or name is None:
            self._release()
            self.main.send(statement)
            return
        if self.pending is not None and self.pending[0] == name:
            self._start_table(name, statement)
            return
        if self.pending is not None:  # another table's one statement (not the layout of a dump; kept in order)
            self._release()
        self.pending = (name, statement)  # the lines held for this table stay held with it

    def _release(self):
        """What was held back goes to the main client as it came: the table was not a large one."""
        for line in self.held:
            self.main.send(line)
        self.held = []
        if self.pending is not None:
            self.main.send(self.pending[1])
            self.pending = None

    # -- a large table -----------------------------------------------------------------------
    def _start_table(self, name, statement):
        first = self.pending[1]
        self.pending = None
        for line in self.held:
            if not line.startswith(_LOCK):  # the lock would shut the other clients out
                self.main.send(line)
        self.held = []
        self._sync_main()
        self.table = name
        self.workers = [self.client(self.make_step(False)) for dummy in range(self.jobs)]
        self.clients.extend(self.workers)
        for worker in self.workers:
            worker.send(bytes(self.header))
        self.loaded[name] = 0
        self._to_worker(first)
        self._to_worker(statement)

    def _to_worker(self, statement):
        worker = min(self.workers, key=lambda w: w.queue.qsize())
        worker.send(statement)
        self.loaded[self.table] += 1
        if any(w.dead() for w in self.workers) or self.main.dead():
            self._fail_fast()

    def _end_table(self):
        """Every client of the table finishes before the main client goes on (triggers come next)."""
        for worker in self.workers:
            worker.close()
        for worker in self.workers:
            worker.wait()
        failed = [w for w in self.workers if w.proc.returncode != 0 or self._errors(w)]
        self.workers = []
        self.table = None
        if failed:
            self._fail_fast()

    def _sync_main(self):
        """Return once the main client has run everything sent to it so far."""
        self.markers += 1
        marker = _MARKER + str(self.markers).encode()
        self.main.send(b"SELECT '" + marker + b"' AS djangoops_sync;\n")
        while True:
            answer = self.main.answers.get()
            if answer is None:
                self._fail_fast()  # the main client ended: it failed (we did not close it)
            if answer.rstrip(b'\n') == marker:
                return

    # -- the end -------------------------------------------------------------------------------
    def finish(self):
        """The stream ended well: run the rest, wait for every client, raise ToolError for one that failed."""
        self._parse(final=True)
        if self.table is not None:
            self._end_table()
        self._release()
        self.main.close()
        self.main.wait()
        self._judge()

    def kill(self):
        """Kill every client now; returns the names of those that were still running. Called from another
        thread (the pipeline's deadline passed): whatever the thread feeding this loader waits on (a queue,
        an answer, an exit) then ends, and it fails."""
        running = [c.step.name for c in list(self.clients) if not c.dead()]
        for client in list(self.clients):
            client.kill()
        return running

    def abort(self):
        for client in self.clients:
            client.kill()
        for client in self.clients:
            client.close()
        for client in self.clients:
            try:
                client.wait()
            except Exception:  # pylint: disable=broad-except
                pass

    def _fail_fast(self):
        """A client died: stop them all and raise the error of the one that failed first."""
        self.abort()
        self._judge()
        raise ToolError('a %s client ended before the restore was done' % self.main.step.name,
                        command=self.main.step.display())

    @staticmethod
    def _errors(client):
        text = client.stderr.text()
        return any(p.search(text) for p in client.step.error_patterns)

    def _judge(self):
        done = [c for c in self.clients if c.proc.returncode is not None]
        # A client this loader killed is not the cause; one that exited on its own (or reported an
        # error) is. _judge reports the first real failure with its stderr.
        own = [c for c in done if not c.killed or self._errors(c)]
        if own:
            _judge([c.step for c in own], [c.proc.returncode for c in own], [c.stderr.text() for c in own], [])

    def describe(self):
        if not self.loaded:
            return 'rows of every table loaded by the main client'
        return 'rows loaded by %d clients at once for %s' % (self.jobs, ', '.join(
            '%s (%d statements)' % (name.decode('utf-8', 'replace'), n) for name, n in self.loaded.items()))
