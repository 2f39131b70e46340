# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: encryption at rest with age (https://age-encryption.org).

The ``age`` command-line tool (Debian/Ubuntu/Fedora package ``age``) is one more process of a
pipeline: ``dump | compressor | age -r ...`` writes only ciphertext to disk, and
``age -d -i ... | decompressor | client`` reads it back, both streaming. Recipients are public keys,
so they may appear in argv; an identity (private key) only ever lives in a file, given by the user or
written into the call's private directory (0700/0600, removed when the call ends).

age's format authenticates every 64 KiB chunk, so a wrong key fails on the header and a tampered
file fails at the damaged chunk; the manifest's sha256 is of the encrypted bytes, so integrity is
checked without any key.
"""

from __future__ import annotations

import re
import signal

from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    Step, ToolError, find_tool, run_pipeline)
from ansible_collections.djangoops.maintenance.plugins.module_utils._snapshot import SnapshotError

METHOD = 'age'
SUFFIX = '.age'
# Native X25519 recipients (bech32, any plugin HRP such as age1yubikey1...) and the SSH keys age accepts.
_AGE_RE = re.compile(r'^age1(?:[a-z0-9]+1)?[02-9ac-hj-np-z]{50,}$')
_SSH_RE = re.compile(r'^(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,3}( [^\n\r]*)?$')
_IDENTITY_RE = re.compile(r'(?m)^(AGE-SECRET-KEY-1[0-9A-Z]+|AGE-PLUGIN-[0-9A-Z-]+|-----BEGIN [A-Z ]*PRIVATE KEY-----)')
AGE_ERRORS = (r'(?m)^age: error:',)


class EncryptionError(SnapshotError):
    """Bad encryption input or a key that does not fit; the message names it (never a secret). A
    SnapshotError, so every module reports it as a clean failure."""


def validate_recipients(recipients):
    """The recipients as a clean list; refuses anything that is not an age or SSH public key."""
    out = []
    for r in recipients or []:
        text = str(r).strip() if r is not None else ''
        if text.startswith('AGE-SECRET-KEY-') or 'PRIVATE KEY' in text:
            raise EncryptionError('encrypt_recipients holds a PRIVATE key; give the public key (age-keygen -y '
                                  'prints it) and keep the private one off the hosts that take snapshots')
        if not (_AGE_RE.match(text) or _SSH_RE.match(text)):
            raise EncryptionError('invalid recipient %r in encrypt_recipients: expected an age public key '
                                  '(age1...) or an SSH public key (ssh-ed25519 ... / ssh-rsa ...)' % (text[:80],))
        if text not in out:
            out.append(text)
    return out


def encryption_options(recipients):
    """The ``encryption`` option dict engines see, or None when nothing is to be encrypted."""
    recipients = validate_recipients(recipients)
    if not recipients:
        return None
    find_tool('age')  # before a byte is written
    return {'method': METHOD, 'recipients': recipients}


def encrypt_step(encryption):
    argv = [find_tool('age')]
    for r in encryption['recipients']:
        argv += ['-r', r]
    return Step(argv, error_patterns=AGE_ERRORS, name='age')


def decrypt_step(identity_path, partial=False):
    """``age -d``; with ``partial`` the reader may hang up early (SIGPIPE is then no failure)."""
    ok = (0, -signal.SIGPIPE) if partial else (0,)
    return Step([find_tool('age'), '-d', '-i', identity_path], error_patterns=AGE_ERRORS, ok_returncodes=ok,
                name='age')


def part_encryption(part_meta):
    """The part's encryption record, or None; refuses a method this collection does not know."""
    enc = part_meta.get('encryption')
    if not enc:
        return None
    if enc.get('method') != METHOD:
        raise EncryptionError('snapshot part is encrypted with %r, which this collection cannot decrypt'
                              % (enc.get('method'),))
    return enc


def identity_file(params, secrets, option='decrypt_identity'):
    """The identity file to decrypt with: ``<option>`` (a path) or ``<option>_content`` written into the
    call's private directory. None when neither is given."""
    path, content = params.get(option), params.get(option + '_content')
    if path and content:
        raise EncryptionError('give %s or %s_content, not both' % (option, option))
    if content:
        if not _IDENTITY_RE.search(content):
            raise EncryptionError('%s_content is not an age identity (AGE-SECRET-KEY-1...) or an SSH private key'
                                  % option)
        return secrets.write('identity-%s.txt' % METHOD, content if content.endswith('\n') else content + '\n')
    return path or None


def check_identity(file_path, identity, what):
    """Decrypt the first chunk of ``file_path``: a missing or wrong key fails here, before any target is
    touched. age verifies the header's MAC with the key, so one chunk tells."""
    if not identity:
        raise EncryptionError('%s is encrypted with age; give decrypt_identity (a path on the host) or '
                              'decrypt_identity_content (no_log) holding the private key' % what)
    head = Step([find_tool('head'), '-c', '65536'], name='head')
    try:
        run_pipeline([decrypt_step(identity, partial=True), head], stdin_path=file_path)
    except ToolError as e:
        raise EncryptionError('the identity given cannot decrypt %s (%s); nothing was changed'
                              % (what, age_reason(e)))


def age_reason(error):
    """age's own error line out of a failed run (it adds a line asking for bug reports after it)."""
    lines = (error.stderr or str(error)).strip().splitlines()
    said = [line for line in lines if line.startswith('age: error:')]
    return (said or lines or [str(error)])[0]
