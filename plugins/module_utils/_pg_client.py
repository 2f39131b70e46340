# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: which PostgreSQL client tools to run, and whether they are new enough.

pg_dump can dump servers of its own major version and older, never newer; pg_restore can read
archives written by its own major version and older. Distributions install several client
versions side by side (Debian ``/usr/lib/postgresql/<N>/bin``, PGDG RPMs ``/usr/pgsql-<N>/bin``)
while PATH holds whichever the packager chose, so the directory is picked by the server's version.
"""

from __future__ import annotations

import glob
import os
import re

from ansible_collections.djangoops.maintenance.plugins.module_utils._engine_base import (
    EngineError, parse_version, version_text)
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import ToolError, find_tool, run

VERSIONED_BIN_GLOBS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin')

# What pg_restore sets at the start of every session (and pg_dump at the top of a plain SQL script), by the
# major version that began to set it: a server older than that refuses it ("unrecognized configuration
# parameter") and the restore fails at its first statement, whatever the archive holds.
SESSION_SETTINGS = (((17,), 'transaction_timeout'),)

# The minor release of each major from which pg_dump begins a plain SQL script with ``\\restrict <key>`` (and ends
# it with ``\\unrestrict``), and psql understands both (CVE-2025-8714, 2025-08-14); every release of 18 and later
# does. An older psql stops at the script's first command ("invalid command \\restrict").
RESTRICT_SINCE = {(13,): 22, (14,): 19, (15,): 14, (16,): 10, (17,): 6}
RESTRICT_ALWAYS = (18,)


def major(version):
    """Major version of a version tuple: (15, 18) -> 15, (9, 6, 24) -> (9, 6)."""
    if not version:
        return None
    if version[0] >= 10:
        return (version[0],)
    return tuple(version[:2])


def major_text(version):
    return version_text(major(version) or ())


def versioned_bin_dirs():
    """``{major version tuple: directory}`` of the side-by-side client installations on this host."""
    found = {}
    for pattern in VERSIONED_BIN_GLOBS:
        for path in glob.glob(pattern):
            m = re.search(r'(\d+(?:\.\d+)?)/bin$|pgsql-(\d+(?:\.\d+)?)/bin$', path)
            if m and os.path.isdir(path):
                found[tuple(int(x) for x in (m.group(1) or m.group(2)).split('.'))] = path
    return found


def choose_bin_dir(server_version, candidates):
    """The candidate directory of the server's own major version, else the oldest newer one, else None (then
    PATH). The server's own version: its pg_dump writes archives that version's pg_restore reads, and its
    pg_restore sets nothing in a session that the server does not know (``SESSION_SETTINGS``); where none
    is installed, the newer version closest to the server."""
    want = major(server_version)
    if want is None:
        return candidates[max(candidates)] if candidates else None
    usable = [v for v in candidates if v >= want]
    if not usable:
        return None
    return candidates[min(usable)]


def _install_hint(server_version):
    return ('Install the PostgreSQL %s client tools (Debian/Ubuntu: postgresql-client-%s) or point client_bin_dir '
            'at them' % (major_text(server_version), major_text(server_version)))


def session_setting(tool_version, server_version):
    """``(setting, the major version that added it)`` that a client of ``tool_version`` sets in every session
    and a server of ``server_version`` does not know, or None."""
    if not tool_version or not server_version:
        return None
    for since, setting in SESSION_SETTINGS:
        if major(tool_version) >= since > major(server_version):
            return setting, since
    return None


def knows_restrict(version):
    """Whether pg_dump of ``version`` writes, and psql of ``version`` understands, ``\\restrict``."""
    if major(version) >= RESTRICT_ALWAYS:
        return True
    since = RESTRICT_SINCE.get(major(version))
    return since is not None and len(version) > 1 and version[1] >= since


def _restrict_releases():
    return ', '.join('%s.%d' % (version_text(m), n) for m, n in sorted(RESTRICT_SINCE.items())) + \
        ' and %s' % version_text(RESTRICT_ALWAYS)


def dump_client_problem(tool, tool_version, server_version):
    """Why ``tool`` (pg_dump) of ``tool_version`` cannot dump a server of ``server_version`` into a snapshot
    that can be restored into that server, or None."""
    if not tool_version:
        return 'could not tell the version of %s' % tool
    if major(tool_version) < major(server_version):
        return ('%s %s is older than the PostgreSQL server %s: pg_dump must be at least the server\'s major version '
                '(%s). %s' % (tool, version_text(tool_version), version_text(server_version),
                              major_text(server_version), _install_hint(server_version)))
    newer = session_setting(tool_version, server_version)
    if newer:
        return ('%s %s would take a snapshot that cannot be restored into the PostgreSQL server %s: only the %s client '
                'tools or newer read it, and they set %s (new in PostgreSQL %s) in every session, which the server '
                'refuses. %s' % (tool, version_text(tool_version), version_text(server_version),
                                 major_text(tool_version), newer[0], version_text(newer[1]),
                                 _install_hint(server_version)))
    return None


def archive_reader_problem(tool, tool_version, writer_version):
    """Why ``tool`` (pg_restore) of ``tool_version`` cannot read an archive written by pg_dump
    ``writer_version``, or None."""
    if not tool_version:
        return 'could not tell the version of %s' % tool
    if writer_version and major(tool_version) < major(writer_version):
        return ('%s %s cannot read this snapshot, which pg_dump %s wrote: install the PostgreSQL %s client tools '
                '(Debian/Ubuntu: postgresql-client-%s) or point client_bin_dir at them'
                % (tool, version_text(tool_version), version_text(writer_version), major_text(writer_version),
                   major_text(writer_version)))
    return None


def restore_client_problem(fmt, tool_version, writer_version, server_version):
    """Why a snapshot in format ``fmt`` that pg_dump ``writer_version`` wrote cannot be restored into a server
    of ``server_version`` with the client tool of ``tool_version`` (psql for ``plain``, else pg_restore), or None.
    A plain SQL script holds what its pg_dump set and the psql commands it wrote; an archive gets what the
    pg_restore reading it sets."""
    if fmt == 'plain':
        if tool_version and writer_version and knows_restrict(writer_version) and not knows_restrict(tool_version):
            return ('psql %s cannot run this snapshot\'s SQL script, which pg_dump %s wrote: it begins with '
                    '\\restrict, which psql knows since PostgreSQL %s, and an older psql stops there. Install a newer '
                    'psql (Debian/Ubuntu: postgresql-client-%s) or point client_bin_dir at one'
                    % (version_text(tool_version), version_text(writer_version), _restrict_releases(),
                       major_text(writer_version)))
        newer = session_setting(writer_version, server_version)
        if newer:
            return ('this snapshot\'s SQL script, which pg_dump %s wrote, sets %s (new in PostgreSQL %s), which the '
                    'PostgreSQL server %s refuses: restore it into PostgreSQL %s or later'
                    % (version_text(writer_version), newer[0], version_text(newer[1]), version_text(server_version),
                       version_text(newer[1])))
        return None
    problem = archive_reader_problem('pg_restore', tool_version, writer_version)
    if problem:
        return problem
    newer = session_setting(tool_version, server_version)
    if not newer:
        return None
    if writer_version and session_setting(writer_version, server_version):
        return ('this snapshot, which pg_dump %s wrote, can only be read by pg_restore %s or newer, which sets %s '
                '(new in PostgreSQL %s) in every session; the PostgreSQL server %s refuses it: restore it into '
                'PostgreSQL %s or later'
                % (version_text(writer_version), major_text(writer_version), newer[0], version_text(newer[1]),
                   version_text(server_version), version_text(newer[1])))
    return ('pg_restore %s cannot restore into the PostgreSQL server %s: it sets %s (new in PostgreSQL %s) in every '
            'session, which the server refuses. %s' % (version_text(tool_version), version_text(server_version),
                                                       newer[0], version_text(newer[1]),
                                                       _install_hint(server_version)))


class ClientTools(object):
    """Finds pg_dump, pg_restore and psql for one server and remembers their versions."""

    def __init__(self, client_bin_dir, server_version):
        self.explicit = client_bin_dir
        self.server_version = server_version
        if client_bin_dir:
            if not os.path.isdir(client_bin_dir):
                raise EngineError('client_bin_dir %s is not a directory' % client_bin_dir)
            self.bin_dir = client_bin_dir
        else:
            self.bin_dir = choose_bin_dir(server_version, versioned_bin_dirs())
        self._paths = {}
        self._versions = {}

    def path(self, tool):
        if tool not in self._paths:
            if self.explicit:
                candidate = os.path.join(self.explicit, tool)
                if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
                    raise EngineError('%s was not found in client_bin_dir %s' % (tool, self.explicit))
                self._paths[tool] = candidate
            else:
                try:
                    self._paths[tool] = find_tool(tool, paths=[self.bin_dir] if self.bin_dir else [])
                except ToolError:
                    raise EngineError(
                        '%s was not found on this host (looked in %s and PATH); install the PostgreSQL client '
                        'tools (Debian/Ubuntu: postgresql-client) or set client_bin_dir'
                        % (tool, self.bin_dir or ' or '.join(VERSIONED_BIN_GLOBS)))
        return self._paths[tool]

    def version(self, tool):
        if tool not in self._versions:
            out, _err = run([self.path(tool), '--version'], timeout=30)
            self._versions[tool] = parse_version(out)
        return self._versions[tool]
