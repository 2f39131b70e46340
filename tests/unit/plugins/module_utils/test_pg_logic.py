# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the PostgreSQL engine: client choice and version rules, passfile escaping, argv pieces."""

from __future__ import annotations

import sys

import pytest

from support.modules import COLLECTIONS_PATH, ensure_collection_link

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

# pylint: disable=wrong-import-position
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import EngineError  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_postgresql import (  # noqa: E402
    FooterTap, directory_compress_args, version_from_num)
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_load import split_toc  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import ToolError  # noqa: E402
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_client import (  # noqa: E402
    archive_reader_problem, choose_bin_dir, dump_client_problem, major, restore_client_problem)
from ansible_collections.djangoops.maintenance.plugins.module_utils._pg_connect import (  # noqa: E402
    dbname_option, is_unreachable, passfile_line)


def test_version_from_server_version_num():
    assert version_from_num(150018) == (15, 18)
    assert version_from_num(170000) == (17, 0)
    assert version_from_num(90624) == (9, 6, 24)


def test_major_versions_before_and_after_10():
    assert major((15, 18)) == (15,)
    assert major((9, 6, 24)) == (9, 6)
    assert major((9, 6, 24)) < major((10, 1))


@pytest.mark.parametrize('client, server, ok', [
    ((15, 18), (15, 2), True),
    ((16, 4), (15, 18), True),
    ((15, 18), (16, 0), False),
    ((15, 18), (9, 6, 24), True),
    ((9, 6, 24), (10, 23), False),
])
def test_pg_dump_must_be_at_least_the_server_major(client, server, ok):
    problem = dump_client_problem('pg_dump', client, server)
    if ok:
        assert problem is None
    else:
        assert 'pg_dump %s is older than the PostgreSQL server %s' % (
            '.'.join(map(str, client)), '.'.join(map(str, server))) in problem
        assert 'postgresql-client-%s' % '.'.join(map(str, major(server))) in problem


def test_unknown_client_version_is_a_problem():
    assert 'could not tell the version' in dump_client_problem('pg_dump', (), (15, 1))


def test_pg_restore_must_read_the_archive_version():
    assert archive_reader_problem('pg_restore', (15, 18), (15, 2)) is None
    assert archive_reader_problem('pg_restore', (17, 1), (15, 2)) is None
    problem = archive_reader_problem('pg_restore', (15, 18), (16, 3))
    assert 'pg_restore 15.18 cannot read this snapshot, which pg_dump 16.3 wrote' in problem


def test_client_dir_is_the_servers_own_version_else_the_closest_newer_one():
    dirs = {(13,): '/usr/lib/postgresql/13/bin', (15,): '/usr/lib/postgresql/15/bin',
            (17,): '/usr/lib/postgresql/17/bin', (9, 6): '/usr/lib/postgresql/9.6/bin'}
    assert choose_bin_dir((15, 4), dirs) == '/usr/lib/postgresql/15/bin', 'the server\'s own, not the newest'
    assert choose_bin_dir((14, 2), dirs) == '/usr/lib/postgresql/15/bin', 'the closest newer one'
    assert choose_bin_dir((9, 6, 1), dirs) == '/usr/lib/postgresql/9.6/bin'
    assert choose_bin_dir((16, 1), dirs) == '/usr/lib/postgresql/17/bin'
    assert choose_bin_dir((18, 0), dirs) is None, 'none new enough: fall back to PATH'
    assert choose_bin_dir((15, 4), {}) is None
    assert choose_bin_dir((), dirs) == '/usr/lib/postgresql/17/bin', 'server version unknown: the newest'


@pytest.mark.parametrize('client, server', [((17, 12), (15, 18)), ((18, 1), (16, 4)), ((17, 0), (9, 6, 24))])
def test_pg_dump_17_or_later_of_an_older_server_is_refused(client, server):
    """Only pg_restore 17 or later reads what pg_dump 17 writes, and it sets transaction_timeout in every session,
    which a server before 17 refuses: such a snapshot could not be restored into the server it comes from."""
    problem = dump_client_problem('pg_dump', client, server)
    assert problem.startswith('pg_dump %s would take a snapshot that cannot be restored into the PostgreSQL server %s'
                              % ('.'.join(map(str, client)), '.'.join(map(str, server)))), problem
    assert 'transaction_timeout (new in PostgreSQL 17)' in problem
    assert 'postgresql-client-%s' % '.'.join(map(str, major(server))) in problem


@pytest.mark.parametrize('client, server', [((17, 12), (17, 2)), ((18, 1), (17, 6)), ((16, 4), (15, 18))])
def test_pg_dump_newer_than_the_server_is_fine_where_it_sets_nothing_new(client, server):
    assert dump_client_problem('pg_dump', client, server) is None


@pytest.mark.parametrize('fmt, tool, writer, server, expected', [
    ('custom', (15, 18), (15, 2), (15, 18), None),
    ('custom', (17, 12), (15, 18), (17, 6), None),
    ('directory', (18, 1), (17, 12), (18, 0), None),
    ('plain', None, (15, 18), (15, 18), None),
    ('plain', None, (17, 12), (18, 1), None),
    ('custom', (17, 12), (15, 18), (15, 18),
     'pg_restore 17.12 cannot restore into the PostgreSQL server 15.18: it sets transaction_timeout (new in PostgreSQL '
     '17) in every session, which the server refuses. Install the PostgreSQL 15 client tools (Debian/Ubuntu: '
     'postgresql-client-15) or point client_bin_dir at them'),
    ('custom', (17, 12), (17, 12), (16, 4),
     'this snapshot, which pg_dump 17.12 wrote, can only be read by pg_restore 17 or newer, which sets '
     'transaction_timeout (new in PostgreSQL 17) in every session; the PostgreSQL server 16.4 refuses it: restore it '
     'into PostgreSQL 17 or later'),
    ('custom', (15, 18), (16, 3), (16, 3), 'pg_restore 15.18 cannot read this snapshot, which pg_dump 16.3 wrote'),
    ('plain', None, (17, 12), (15, 18),
     "this snapshot's SQL script, which pg_dump 17.12 wrote, sets transaction_timeout (new in PostgreSQL 17), which "
     "the PostgreSQL server 15.18 refuses: restore it into PostgreSQL 17 or later"),
    ('plain', None, (), (15, 18), None),
    # \\restrict: written by pg_dump 13.22, 14.19, 15.14, 16.10, 17.6 and 18 on, known to psql of the same
    ('plain', (15, 13), (15, 14), (15, 18),
     "psql 15.13 cannot run this snapshot's SQL script, which pg_dump 15.14 wrote: it begins with \\restrict, which "
     "psql knows since PostgreSQL 13.22, 14.19, 15.14, 16.10, 17.6 and 18, and an older psql stops there. Install a "
     "newer psql (Debian/Ubuntu: postgresql-client-15) or point client_bin_dir at one"),
    ('plain', (14, 1), (18, 0), (18, 1), "psql 14.1 cannot run this snapshot's SQL script, which pg_dump 18.0 wrote"),
    ('plain', (17, 5), (16, 10), (16, 10), "psql 17.5 cannot run this snapshot's SQL script"),
    ('plain', (9, 6, 24), (13, 22), (13, 22), "psql 9.6.24 cannot run this snapshot's SQL script"),
    ('plain', (15, 13), (15, 13), (15, 18), None),  # the script has no \\restrict
    ('plain', (17, 5), (16, 9), (16, 10), None),
    ('plain', (13, 22), (17, 6), (17, 6), None),  # an older major that knows it
    ('plain', (14, 19), (15, 14), (15, 14), None),
    ('plain', (18, 0), (12, 22), (15, 18), None),
    ('plain', (15, 13), (12, 22), (12, 22), None),  # no release of 12 writes it
    ('plain', (), (15, 14), (15, 18), None),  # psql's version unknown: nothing to say
])
def test_what_can_restore_a_snapshot_into_a_server(fmt, tool, writer, server, expected):
    problem = restore_client_problem(fmt, tool, writer, server)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected), problem


@pytest.mark.parametrize('password, line', [
    ('simple', '*:*:*:*:simple\n'),
    ('a:b', '*:*:*:*:a\\:b\n'),
    ('back\\slash', '*:*:*:*:back\\\\slash\n'),
    ('\\:', '*:*:*:*:\\\\\\:\n'),
    ('p\'a"s s$w#o\\r:d-\u00e9\u00df\u2603', '*:*:*:*:p\'a"s s$w#o\\\\r\\:d-\u00e9\u00df\u2603\n'),
])
def test_passfile_escapes_backslash_and_colon(password, line):
    assert passfile_line(password) == line


def test_passfile_refuses_line_breaks_without_echoing_the_password():
    with pytest.raises(EngineError) as e:
        passfile_line('secret\nsecond-line')
    assert 'secret' not in str(e.value) and 'line break' in str(e.value)


@pytest.mark.parametrize('name, option', [
    ('shop', '--dbname=shop'),
    ('-shop', '--dbname=-shop'),
    ('a=b', "--dbname=dbname='a=b'"),
    ("it's=x", "--dbname=dbname='it\\'s=x'"),
    ('postgresql://evil', "--dbname=dbname='postgresql://evil'"),
])
def test_database_names_are_never_read_as_connection_strings(name, option):
    assert dbname_option(name) == option


def test_directory_compression_arguments():
    assert directory_compress_args('none', None, (15, 1)) == ['-Z', '0']
    assert directory_compress_args('gzip', 6, (15, 1)) == ['-Z', '6']
    assert directory_compress_args('zstd', 3, (16, 2)) == ['--compress=zstd:3']
    with pytest.raises(EngineError) as e:
        directory_compress_args('zstd', 3, (15, 18))
    assert 'needs pg_dump 16 or later' in str(e.value) and '15.18' in str(e.value)


def test_which_connection_errors_are_not_worth_a_second_try():
    assert is_unreachable('connection to server at "10.0.0.1", port 5432 failed: Connection refused')
    assert is_unreachable('FATAL:  password authentication failed for user "shop"')
    assert not is_unreachable('FATAL:  database "shop" does not exist')
    assert not is_unreachable('FATAL:  no pg_hba.conf entry for host "10.0.0.2", user "shop", database "shop"')


def test_plain_dump_needs_its_footer_at_the_end():
    complete = FooterTap()
    for chunk in (b'x' * 10000, b'\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n'):
        complete.observe(memoryview(chunk))
    complete.finish()
    cut = FooterTap()
    cut.observe(memoryview(b'-- PostgreSQL database dump complete\n' + b'COPY t FROM stdin;\n' * 400))
    with pytest.raises(ToolError) as e:
        cut.finish()
    assert 'incomplete' in str(e.value) and str(cut.total) in str(e.value)


def test_toc_listing_splits_extensions_from_everything_else():
    listing = """;
; Selected TOC Entries:
;
2; 3079 16385 EXTENSION - dblink
3441; 0 0 COMMENT - EXTENSION dblink
217; 1259 16512 TABLE public t postgres
3440; 0 0 COMMENT public TABLE t postgres
3434; 0 16512 TABLE DATA public t postgres
"""
    ext, rest = split_toc(listing)
    assert ext == ['2; 3079 16385 EXTENSION - dblink', '3441; 0 0 COMMENT - EXTENSION dblink']
    assert '217; 1259 16512 TABLE public t postgres' in rest and '3440; 0 0 COMMENT public TABLE t postgres' in rest
    assert not any('dblink' in line for line in rest)
