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
    """The newest candidate directory whose major version is at least the server's, or None (then PATH)."""
    want = major(server_version)
    usable = [v for v in candidates if want is None or v >= want]
    if not usable:
        return None
    return candidates[max(usable)]


def dump_client_problem(tool, tool_version, server_version):
    """Why ``tool`` (pg_dump) of ``tool_version`` cannot dump a server of ``server_version``, or None."""
    if not tool_version:
        return 'could not tell the version of %s' % tool
    if major(tool_version) < major(server_version):
        return ('%s %s is older than the PostgreSQL server %s: pg_dump must be at least the server\'s major version '
                '(%s). Install the PostgreSQL %s client tools (Debian/Ubuntu: postgresql-client-%s) or point '
                'client_bin_dir at them' % (tool, version_text(tool_version), version_text(server_version),
                                            major_text(server_version), major_text(server_version),
                                            major_text(server_version)))
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
