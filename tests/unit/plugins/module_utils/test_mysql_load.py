# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the parallel MySQL loader routes a dump's statements, with recording clients instead of processes (the
real clients against a real MariaDB are in tests/integration/test_db_mysql.py): what each client gets, in
which order, wherever the stream is cut into chunks."""

from __future__ import annotations

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _mysql_load as L
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import Step

HEADER = (b"/*M!999999\\- enable the sandbox mode */ \n"
          b"-- MariaDB dump 10.19\n--\n\n"
          b"/*!40101 SET NAMES utf8mb4 */;\n"
          b"/*!40103 SET TIME_ZONE='+00:00' */;\n"
          b"/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n"
          b"/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n"
          b"/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\n")


def table(name, statements, trigger=False):
    q = b'`' + name + b'`'
    out = (b'DROP TABLE IF EXISTS ' + q + b';\nCREATE TABLE ' + q + b' (\n  `id` int NOT NULL\n);\n\n'
           b'LOCK TABLES ' + q + b' WRITE;\n/*!40000 ALTER TABLE ' + q + b' DISABLE KEYS */;\n')
    for n in range(statements):
        # rows with what must not end a statement: ';' in a value, an escaped newline
        out += b'INSERT INTO ' + q + b' VALUES\n(%d,\'a;b\\n\'),\n(%d,\'x);\');\n' % (2 * n, 2 * n + 1)
    out += b'/*!40000 ALTER TABLE ' + q + b' ENABLE KEYS */;\nUNLOCK TABLES;\n'
    if trigger:
        out += (b'DELIMITER ;;\n/*!50003 CREATE*/ /*!50003 TRIGGER t_' + name + b' AFTER INSERT ON ' + q +
                b' FOR EACH ROW SET @x = 1 */;;\nDELIMITER ;\n')
    return out


FOOTER = b'/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n\n-- Dump completed on 2026-11-25 10:00:00\n'


class Recorder(object):
    """Stands in for a client process: keeps what it is sent, answers a marker SELECT at once."""

    made = []

    def __init__(self, step, answers=False):
        self.step = step
        self.main = answers
        self.data = []
        self.closed = False
        self.killed = False
        self.answers = self
        self.pending = []
        self.queue = self
        self.stderr = self
        Recorder.made.append(self)

    # the queue and answers interfaces the loader uses
    def qsize(self):
        return 0

    def get(self):
        return self.pending.pop(0)

    def send(self, data):
        assert not self.closed
        self.data.append(bytes(data))
        if data.startswith(b"SELECT '" + L._MARKER):
            self.pending += [b'djangoops_sync\n', data.split(b"'")[1] + b'\n']

    def dead(self):
        return False

    def close(self):
        self.closed = True

    def wait(self):
        self.proc = type('P', (), {'returncode': 0})()
        return 0

    def kill(self):
        pass

    def text(self):
        """stderr's text (nothing) for the loader; what was sent is ``sent()``."""
        return ''

    def sent(self):
        return b''.join(self.data)


def load(dump, jobs=2, chunk=None):
    Recorder.made = []
    loader = L.ParallelSqlLoader(lambda main: Step(['client']), jobs, client=Recorder)
    if chunk is None:
        loader.write(dump)
    else:
        for at in range(0, len(dump), chunk):
            loader.write(dump[at:at + chunk])
    loader.finish()
    main = Recorder.made[0]
    return loader, main, Recorder.made[1:]


def test_quoted_name():
    assert L.quoted_name(b'INSERT INTO `a``b` VALUES', L._INSERT) == b'`a``b`'
    assert L.quoted_name(b'LOCK TABLES `t` WRITE;', L._LOCK) == b'`t`'
    assert L.quoted_name(b'INSERT INTO t VALUES', L._INSERT) is None


def test_a_large_table_goes_to_the_workers_and_everything_else_to_the_main_client_in_order():
    dump = HEADER + table(b'small', 1) + table(b'big', 5, trigger=True) + table(b'empty', 0) + FOOTER
    loader, main, workers = load(dump)
    assert len(workers) == 2 and all(w.closed for w in workers) and main.closed
    got = main.sent()
    # the main client: everything but the big table's rows and its lock, in the dump's order, plus one marker
    marker = b"SELECT 'djangoops-sync-1' AS djangoops_sync;\n"
    expected = dump.replace(b'LOCK TABLES `big` WRITE;\n', b'')
    for n in range(5):
        expected = expected.replace(b'INSERT INTO `big` VALUES\n(%d,\'a;b\\n\'),\n(%d,\'x);\');\n'
                                    % (2 * n, 2 * n + 1), b'')
    expected = expected.replace(b'/*!40000 ALTER TABLE `big` DISABLE KEYS */;\n',
                                b'/*!40000 ALTER TABLE `big` DISABLE KEYS */;\n' + marker)
    assert got == expected
    assert b'LOCK TABLES `small` WRITE;' in got and b'INSERT INTO `small`' in got
    # each worker: the session header first, then only whole INSERT statements of the big table
    rows = []
    for w in workers:
        assert w.data[0] == HEADER
        for statement in w.data[1:]:
            assert statement.startswith(b'INSERT INTO `big` VALUES\n') and statement.endswith(b');\n')
            assert statement.count(b';\n') == 1
            rows.append(statement)
    assert sorted(rows) == sorted(b'INSERT INTO `big` VALUES\n(%d,\'a;b\\n\'),\n(%d,\'x);\');\n' % (2 * n, 2 * n + 1)
                                  for n in range(5))
    assert loader.loaded == {b'`big`': 5}
    assert loader.describe() == 'rows loaded by 2 clients at once for `big` (5 statements)'


@pytest.mark.parametrize('chunk', [1, 2, 3, 7, 64, 1000])
def test_any_chunking_gives_the_same_routing(chunk):
    dump = HEADER + table(b'a', 3) + table(b'b', 1, trigger=True) + table(b'c', 4) + FOOTER
    dummy, main, workers = load(dump)
    whole = (main.sent(), sorted(b''.join(w.data[1:]) for w in workers))
    dummy, main, workers = load(dump, chunk=chunk)
    # one client per big table and job; markers counted the same way
    assert main.sent() == whole[0]
    assert len(workers) == 4  # two for `a`, two for `c`
    assert sorted(b''.join(w.data[1:]) for w in workers) == whole[1]
    assert all(s.startswith(b'INSERT INTO `a`') for w in workers[:2] for s in w.data[1:])
    assert all(s.startswith(b'INSERT INTO `c`') for w in workers[2:] for s in w.data[1:])


def test_a_header_without_the_session_settings_loads_on_the_main_client_alone():
    header = HEADER.replace(b"/*!40103 SET TIME_ZONE='+00:00' */;\n", b'')
    dump = header + table(b'big', 4) + FOOTER
    notes = []
    Recorder.made = []
    loader = L.ParallelSqlLoader(lambda main: Step(['client']), 2, record=notes.append, client=Recorder)
    loader.write(dump)
    loader.finish()
    assert len(Recorder.made) == 1 and Recorder.made[0].sent() == dump
    assert notes and 'TIME_ZONE' in notes[0]


def test_one_job_loads_on_the_main_client_alone():
    dump = HEADER + table(b'big', 4) + FOOTER
    dummy, main, workers = load(dump, jobs=1)
    assert workers == [] and main.sent() == dump


def test_inserts_inside_a_routine_body_stay_with_the_main_client():
    """A routine, trigger or event is written between DELIMITER ;; and DELIMITER ; - its body may hold INSERT
    lines of its own, which are part of the definition, never rows to load."""
    routine = (b'DELIMITER ;;\n/*!50003 CREATE*/ /*!50020 DEFINER=`u`@`%`*/ /*!50003 PROCEDURE `fill`()\n'
               b'BEGIN\nINSERT INTO `big` VALUES\n(1,\'a\');\nINSERT INTO `big` VALUES\n(2,\'b\');\nEND */;;\n'
               b'DELIMITER ;\n')
    dump = HEADER + table(b'big', 1) + routine + table(b'after', 3) + FOOTER
    loader, main, workers = load(dump)
    assert routine in main.sent()
    assert len(workers) == 2 and all(s.startswith(b'INSERT INTO `after`') for w in workers for s in w.data[1:])
    assert loader.loaded == {b'`after`': 3}
