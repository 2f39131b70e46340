# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DEFINER rewriter, fed in every possible split of the stream."""

from __future__ import annotations

import sys

from support.modules import COLLECTIONS_PATH, ensure_collection_link

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.djangoops.maintenance.plugins.module_utils._mysql_definers import DefinerRewriter  # noqa: E402

# The shapes mysqldump and mariadb-dump write, and data that must not change.
DUMP = (
    b"/*!50001 CREATE ALGORITHM=UNDEFINED */\n"
    b"/*!50013 DEFINER=`app`@`%` SQL SECURITY DEFINER */\n"
    b"/*!50001 VIEW `v` AS select 1 AS `one` */;\n"
    b"INSERT INTO `t` VALUES (1,'DEFINER=`x`@`y`'),(2,'CREATE DEFINER=`x`@`y`');\n"
    b"INSERT INTO `t` VALUES\n"
    b"(3,'/*!50013 DEFINER=`x`@`y`'),\n"
    b"(4,'plain');\n"
    b"/*!50003 CREATE*/ /*!50017 DEFINER=`we``ird`@`local host`*/ /*!50003 TRIGGER `tr` BEFORE INSERT ON `t` */;;\n"
    b"CREATE DEFINER=`root`@`localhost` PROCEDURE `p`()\n"
    b"BEGIN SELECT 'DEFINER=`a`@`b`'; END ;;\n"
    b"/*!50106 CREATE*/ /*!50117 DEFINER=`some_role`*/ /*!50106 EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1 */ ;;\n"
    b"-- Dump completed on 2026-01-01"
)
EXPECTED = (
    b"/*!50001 CREATE ALGORITHM=UNDEFINED */\n"
    b"/*!50013 DEFINER=CURRENT_USER SQL SECURITY DEFINER */\n"
    b"/*!50001 VIEW `v` AS select 1 AS `one` */;\n"
    b"INSERT INTO `t` VALUES (1,'DEFINER=`x`@`y`'),(2,'CREATE DEFINER=`x`@`y`');\n"
    b"INSERT INTO `t` VALUES\n"
    b"(3,'/*!50013 DEFINER=`x`@`y`'),\n"
    b"(4,'plain');\n"
    b"/*!50003 CREATE*/ /*!50017 DEFINER=CURRENT_USER*/ /*!50003 TRIGGER `tr` BEFORE INSERT ON `t` */;;\n"
    b"CREATE DEFINER=CURRENT_USER PROCEDURE `p`()\n"
    b"BEGIN SELECT 'DEFINER=`a`@`b`'; END ;;\n"
    b"/*!50106 CREATE*/ /*!50117 DEFINER=CURRENT_USER*/ /*!50106 EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1 */ ;;\n"
    b"-- Dump completed on 2026-01-01"
)


def run(chunks):
    r = DefinerRewriter()
    out = b''.join(r.pass_on(memoryview(c)) for c in chunks) + r.flush()
    return out, r.rewritten


def test_whole_stream():
    assert run([DUMP]) == (EXPECTED, 4)


def test_every_two_way_split():
    for i in range(len(DUMP) + 1):
        assert run([DUMP[:i], DUMP[i:]]) == (EXPECTED, 4), i


def test_byte_by_byte():
    assert run([DUMP[i:i + 1] for i in range(len(DUMP))]) == (EXPECTED, 4)


def test_a_long_data_line_is_not_held():
    r = DefinerRewriter()
    out = r.pass_on(b'(1,0x' + b'ab' * 100000)
    assert len(out) == 5 + 200000 and not r._held


def test_an_overlong_candidate_line_is_released_rewritten():
    r = DefinerRewriter()
    line = b'/*!50013 DEFINER=`a`@`b` */ ' + b'x' * (DefinerRewriter.MAX_HELD + 10)
    out = r.pass_on(line[:DefinerRewriter.MAX_HELD + 5]) + r.pass_on(line[DefinerRewriter.MAX_HELD + 5:] + b'\n')
    assert out == line.replace(b'DEFINER=`a`@`b`', b'DEFINER=CURRENT_USER') + b'\n'


RENAME_DUMP = (
    b"INSERT INTO `t` VALUES (1,'ALTER DATABASE `shop` CHARACTER SET latin1 ');\n"
    b"ALTER DATABASE `shop` CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci ;\n"
    b"/*!50003 CREATE*/ /*!50017 DEFINER=`app`@`%`*/ /*!50003 TRIGGER `tr` BEFORE INSERT ON `t` */;;\n"
    b"ALTER DATABASE `shop` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ;;\n"
    b"ALTER DATABASE `shop_old` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci ;\n"
)


def renamed(chunks, **kw):
    r = DefinerRewriter(**kw)
    return b''.join(r.pass_on(memoryview(c)) for c in chunks) + r.flush(), r.renamed, r.rewritten


def test_alter_database_lines_get_the_target_name():
    expected = RENAME_DUMP.replace(b"ALTER DATABASE `shop` CHARACTER SET utf8mb", b"ALTER DATABASE `new``db` CHARACTER "
                                   b"SET utf8mb")
    assert expected.count(b'`new``db`') == 2  # the two statements, not the value in the row nor `shop_old`
    for i in range(len(RENAME_DUMP) + 1):  # every two-way split
        assert renamed([RENAME_DUMP[:i], RENAME_DUMP[i:]], definers=False, rename=('shop', 'new`db')) == (
            expected, 2, 0), i
    # with the definers rewritten too, and byte by byte
    both = expected.replace(b'DEFINER=`app`@`%`', b'DEFINER=CURRENT_USER')
    assert renamed([RENAME_DUMP[i:i + 1] for i in range(len(RENAME_DUMP))], rename=('shop', 'new`db')) == (both, 2, 1)
    # the same name: nothing to rename
    assert renamed([RENAME_DUMP], definers=False, rename=('shop', 'shop')) == (RENAME_DUMP, 0, 0)
