# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real S3-speaking server for the off-host tests: moto's server mode (``moto_server``, PyPI moto[server]).

Why moto: it installs from PyPI into the test venv in seconds, speaks the S3 REST API over HTTP
(SigV4 signatures, multipart uploads, ListObjectsV2, batch delete) and, with
``INITIAL_NO_AUTH_ACTION_COUNT``, checks credentials for real: after the first few requests (used
here to create an IAM user and its access key) every request must be signed with a key that
exists, so wrong credentials fail as they do on AWS, MinIO or Ceph. MinIO, Garage and Ceph RGW are
not packaged in Debian or PyPI; rclone's ``serve s3`` is newer than Debian's rclone. moto does not
check Content-MD5 on upload (the module compares ETags itself, which moto computes as S3 does).

Runs as a child process on 127.0.0.1 and a free port; ``stop()`` ends it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import socket

import boto3

from support.servers import free_port

ALLOW_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'


class S3Server(object):
    def __init__(self):
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.proc = None
        self.log = None
        self.access_key = self.secret_key = None

    def start(self):
        moto = os.path.join(os.path.dirname(sys.executable), 'moto_server')
        fd, self.log = tempfile.mkstemp(prefix='moto-', suffix='.log')
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT='3')
        self.proc = subprocess.Popen([moto, '-H', '127.0.0.1', '-p', str(self.port)], env=env,  # pylint: disable=consider-using-with
                                     stdin=subprocess.DEVNULL, stdout=fd, stderr=fd)
        os.close(fd)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('moto_server exited %s:\n%s' % (self.proc.returncode, self.read_log()))
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError('moto_server did not listen:\n%s' % self.read_log())
                time.sleep(0.1)
        # The three unauthenticated requests: a user, its key, its policy. From then on, keys are checked.
        iam = boto3.client('iam', endpoint_url=self.url, aws_access_key_id='bootstrap', aws_secret_access_key='x',
                           region_name='us-east-1')
        iam.create_user(UserName='backup')
        key = iam.create_access_key(UserName='backup')['AccessKey']
        iam.put_user_policy(UserName='backup', PolicyName='all', PolicyDocument=ALLOW_ALL)
        self.access_key, self.secret_key = key['AccessKeyId'], key['SecretAccessKey']
        return self

    def client(self):
        return boto3.client('s3', endpoint_url=self.url, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name='us-east-1')

    def bucket(self, name):
        self.client().create_bucket(Bucket=name)
        return name

    def remote(self, bucket, prefix='', **kw):
        """The module's ``remote`` option for this server."""
        r = dict(type='s3', endpoint_url=self.url, bucket=bucket, prefix=prefix, access_key=self.access_key,
                 secret_key=self.secret_key, part_size_mb=5)
        r.update(kw)
        return r

    def read_log(self):
        try:
            with open(self.log, encoding='utf-8', errors='replace') as f:
                return f.read()[-3000:]
        except (OSError, TypeError):
            return ''

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log and os.path.exists(self.log):
            os.unlink(self.log)
