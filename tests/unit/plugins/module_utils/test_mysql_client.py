# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the MySQL/MariaDB client side: flavours, flags, compatibility, option files."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.modules import COLLECTIONS_PATH, ensure_collection_link
from support.servers import TRICKY_PASSWORD

ensure_collection_link()
sys.path.insert(0, COLLECTIONS_PATH)

from ansible_collections.djangoops.maintenance.plugins.module_utils import _mysql_client as mc  # noqa: E402


class FakeTool(mc.ClientInfo):
    def __init__(self, version_output, name='mysqldump'):
        super().__init__('/usr/bin/' + name, version_output)


MARIADB_1011 = 'mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)'
MARIADB_114 = 'mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux (x86_64)'
MYSQL_80 = 'mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'
MYSQL_84 = 'mysqldump  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)'
MYSQL_57 = 'mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)'
PERCONA = "mysqldump  Ver 8.0.35-27 for Linux on x86_64 (Percona Server (GPL), Release '27', Revision 'abc')"


@pytest.mark.parametrize('text,expected', [
    (MARIADB_1011, ('mariadb', (10, 11, 19))),
    (MARIADB_114, ('mariadb', (11, 4, 2))),
    ('mariadb  Ver 15.1 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64) using  EditLine wrapper',
     ('mariadb', (10, 11, 19))),
    (MYSQL_80, ('mysql', (8, 0, 36))),
    (MYSQL_57, ('mysql', (5, 7, 44))),
    (PERCONA, ('mysql', (8, 0, 35))),
    ('garbage', ('mysql', ())),
])
def test_client_version_names_the_product_not_the_protocol(text, expected):
    assert mc.parse_client_version(text) == expected


def test_server_flavour():
    assert mc.server_flavour('10.11.19-MariaDB-0+deb12u1', 'Debian 12') == 'mariadb'
    assert mc.server_flavour('11.4.2', 'mariadb.org binary distribution') == 'mariadb'
    assert mc.server_flavour('8.0.36', 'MySQL Community Server - GPL') == 'mysql'


def test_dump_flags_per_flavour_and_version():
    assert mc.dump_flags(FakeTool(MARIADB_1011)) == []
    assert mc.dump_flags(FakeTool(MYSQL_80)) == ['--set-gtid-purged=OFF', '--column-statistics=0']
    assert mc.dump_flags(FakeTool(MYSQL_57)) == ['--set-gtid-purged=OFF']


@pytest.mark.parametrize('tool,server,version,refused', [
    (MARIADB_1011, 'mariadb', (10, 11, 6), False),
    (MARIADB_1011, 'mariadb', (10, 6, 1), False),
    (MARIADB_1011, 'mariadb', (11, 4, 2), True),
    (MYSQL_57, 'mysql', (8, 0, 36), True),
    (MYSQL_80, 'mysql', (8, 0, 40), False),
    (MYSQL_80, 'mysql', (8, 4, 0), True),
    (MYSQL_84, 'mysql', (8, 0, 36), False),
    (MYSQL_80, 'mariadb', (10, 11, 6), False),
    (MARIADB_1011, 'mysql', (8, 0, 36), False),
    ('mariadb-dump  Ver 10.16 Distrib 10.2.44-MariaDB, for Linux', 'mysql', (8, 0, 36), True),
    ('mysqldump  Ver 10.13 Distrib 5.6.51, for Linux', 'mariadb', (10, 11, 6), True),
    ('garbage', 'mariadb', (10, 11, 6), True),
])
def test_client_compatibility(tool, server, version, refused):
    problem = mc.client_problem(FakeTool(tool), server, version)
    assert bool(problem) == refused, problem


def test_mysql_client_refuses_a_mariadb_dump():
    assert mc.restore_problem('mariadb', FakeTool(MYSQL_80, 'mysql'))
    assert mc.restore_problem('mysql', FakeTool(MARIADB_1011, 'mariadb')) is None
    assert mc.restore_problem('mariadb', FakeTool(MARIADB_1011, 'mariadb')) is None


@pytest.mark.parametrize('mode,mysql,mariadb', [
    ('disable', ['ssl-mode=DISABLED'], ['skip-ssl']),
    ('require', ['ssl-mode=REQUIRED'], ['ssl']),
    ('verify-ca', ['ssl-mode=VERIFY_CA'], ['ssl', 'ssl-verify-server-cert']),
    ('verify-full', ['ssl-mode=VERIFY_IDENTITY'], ['ssl', 'ssl-verify-server-cert']),
    (None, [], []),
])
def test_ssl_mode_mapping(mode, mysql, mariadb):
    conn = {'ssl_mode': mode}
    assert mc.ssl_lines('mysql', conn) == mysql
    assert mc.ssl_lines('mariadb', conn) == mariadb


@pytest.mark.parametrize('mode', [None, 'allow', 'prefer'])
def test_a_mariadb_client_that_requires_tls_by_itself_speaks_plain_text_to_a_server_without(mode):
    """MariaDB's clients require TLS from 11.4 on: against a server without TLS they would refuse to connect,
    where older clients (and the module's own connection) speak plain text. Where TLS is not asked for,
    they are told to do as the older ones; a server with TLS keeps their default (TLS, verified)."""
    conn = {'ssl_mode': mode}
    assert mc.ssl_lines('mariadb', conn, (11, 8, 9), server_tls=False) == ['skip-ssl']
    assert mc.ssl_lines('mariadb', conn, (11, 4, 0), server_tls=False) == ['skip-ssl']
    default = mc.ssl_lines('mariadb', conn)
    assert mc.ssl_lines('mariadb', conn, (11, 8, 9), server_tls=True) == default
    assert mc.ssl_lines('mariadb', conn, (11, 3, 2), server_tls=False) == default, 'before 11.4: plain text anyway'
    assert mc.ssl_lines('mysql', conn, (8, 4, 0), server_tls=False) == mc.ssl_lines('mysql', conn)


@pytest.mark.parametrize('mode', ['require', 'verify-ca', 'verify-full'])
def test_tls_that_was_asked_for_is_never_dropped(mode):
    conn = {'ssl_mode': mode}
    assert mc.ssl_lines('mariadb', conn, (11, 8, 9), server_tls=False) == mc.ssl_lines('mariadb', conn)
    assert 'skip-ssl' not in mc.option_file('mariadb', {'host': 'db', 'port': 3306}, 'u', 'p', conn, (11, 8, 9),
                                            server_tls=False)


def test_a_ca_alone_means_verify_ca_and_files_are_quoted():
    conn = {'ssl_ca': '/etc/ssl/my ca.pem', 'ssl_cert': '/c.pem', 'ssl_key': '/k.pem'}
    assert mc.ssl_lines('mysql', conn) == ['ssl-mode=VERIFY_CA', 'ssl-ca="/etc/ssl/my ca.pem"', 'ssl-cert="/c.pem"',
                                           'ssl-key="/k.pem"']


def test_endpoint_socket_wins_then_default_socket_then_tcp():
    assert mc.resolve_endpoint({'login_unix_socket': '/s', 'login_host': 'h'}) == {'socket': '/s'}
    assert mc.resolve_endpoint({}, exists=lambda p: p == '/var/lib/mysql/mysql.sock') == {
        'socket': '/var/lib/mysql/mysql.sock'}
    assert mc.resolve_endpoint({}, exists=lambda p: False) == {'host': 'localhost', 'port': 3306}
    assert mc.resolve_endpoint({'login_host': 'db1', 'login_port': 3307}) == {'host': 'db1', 'port': 3307}


VALUES = [TRICKY_PASSWORD, ' leading', 'trailing ', '#comment', 'a#b', '\\', '\\n', 'q"', "'", '""', 'x\\', '$HOME',
          'tab\there', '=eq', '[client]', '\u2603 \U0001F600']


def test_option_file_values_survive_the_real_parser(tmp_path):
    """my_print_defaults is the option-file parser the client tools use, run for real."""
    path = tmp_path / 'my.cnf'
    endpoint = {'host': 'db.example', 'port': 3307}
    text = mc.option_file('mariadb', endpoint, 'us"er', VALUES[0], {'ssl_mode': 'require'})
    text += ''.join('password=%s\n' % mc.option_value(v) for v in VALUES[1:])
    path.write_text(text, encoding='utf-8')
    out = subprocess.run(['my_print_defaults', '--defaults-file=%s' % path, 'client'], stdout=subprocess.PIPE,
                         check=True).stdout.decode('utf-8')
    lines = out.split('\n')
    assert lines[:5] == ['--user=us"er', '--password=' + VALUES[0], '--host=db.example', '--port=3307',
                         '--protocol=tcp']
    assert lines[5] == '--ssl'
    got = [line[len('--password='):] for line in lines[6:] if line.startswith('--password=')]
    assert got == VALUES[1:]


def test_option_file_without_password_has_no_password_line():
    text = mc.option_file('mysql', {'socket': '/run/mysqld/mysqld.sock'}, 'root', None, {})
    assert 'password' not in text and 'protocol=socket' in text


def test_client_bin_dir_wins_over_path(tmp_path):
    tool = tmp_path / 'mysqldump'
    tool.write_text('#!/bin/sh\n')
    os.chmod(str(tool), 0o755)
    assert mc.find_client_tool(mc.DUMP_TOOLS, str(tmp_path), lambda n, required: '/usr/bin/' + n) == str(tool)
    assert mc.find_client_tool(mc.DUMP_TOOLS, None, lambda n, required: '/usr/bin/' + n) == '/usr/bin/mariadb-dump'
    assert mc.find_client_tool(mc.DUMP_TOOLS, None, lambda n, required: None) is None
