# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The off-host snapshot store, shared by snapshot_copy, snapshot_remote_info and snapshot_remote_prune.
    DOCUMENTATION = r'''
options:
  remote:
    description:
      - The off-host store - an SSH backup host (V(ssh)) or an S3-compatible object store (V(s3)).
      - Either way it holds snapshots in the collection's format; a snapshot there is complete only once its
        C(manifest.json) arrived, which is always sent last. See docs/offhost.md.
    type: dict
    required: true
    suboptions:
      type:
        description: Kind of store.
        type: str
        required: true
        choices: [ssh, s3]
      host:
        description: (ssh) Backup host name or address.
        type: str
      port:
        description: (ssh) SSH port.
        type: int
        default: 22
      user:
        description: (ssh) Login user on the backup host; defaults to the SSH client's default.
        type: str
      path:
        description:
          - (ssh) Absolute path of the snapshot root on the backup host (letters, digits and C(_./@+-)); created
            with mode 0700 when missing. Give each application host a directory of its own (for example
            C(/srv/backups/{{ inventory_hostname }})) so retention applies per host.
        type: str
      ssh_key:
        description: (ssh) Path, on the managed host, of the private key to log in with.
        type: path
      ssh_key_content:
        description:
          - (ssh) The private key itself (for example from Ansible Vault); written to a 0600 file in a private
            directory removed when the task ends.
        type: str
      known_hosts:
        description: (ssh) C(known_hosts) file that holds the backup host's key.
        type: path
      host_key_checking:
        description:
          - (ssh) C(StrictHostKeyChecking) - V(yes) needs the backup host's key in O(remote.known_hosts) (or the
            user's), V(accept-new) trusts it on first use, V(no) never checks (test rigs only).
        type: str
        default: 'yes'
        choices: ['yes', 'accept-new', 'no']
      ssh_options:
        description: (ssh) Further C(ssh -o) options, such as V(ProxyJump=bastion).
        type: list
        elements: str
        default: []
      bwlimit:
        description: (ssh) Bandwidth limit of rsync, in KiB per second.
        type: int
      io_timeout:
        description:
          - Seconds without any progress after which a transfer is given up (rsync C(--timeout), SSH keep-alives,
            S3 read timeout). A cut network then fails the task instead of hanging it.
        type: int
        default: 60
      endpoint_url:
        description: (s3) Endpoint of an S3-compatible store (MinIO, Ceph RGW, Garage...); omit for AWS.
        type: str
      bucket:
        description: (s3) Bucket name; it must exist.
        type: str
      prefix:
        description: (s3) Key prefix under which snapshots live (one per application host, for example).
        type: str
        default: ''
      region:
        description: (s3) Region; defaults to V(us-east-1).
        type: str
      access_key:
        description: (s3) Access key id. Without O(remote.access_key) and O(remote.secret_key) boto3 takes
          credentials from the environment or the instance profile.
        type: str
      secret_key:
        description: (s3) Secret access key.
        type: str
      session_token:
        description: (s3) Session token of temporary credentials.
        type: str
      validate_certs:
        description: (s3) Verify the endpoint's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: (s3) CA bundle to verify the endpoint's certificate with.
        type: path
      part_size_mb:
        description:
          - (s3) Size of one upload part in MiB (at least 5). Larger objects are sent as multipart uploads; one
            part is held in memory at a time.
        type: int
        default: 16
requirements:
  - rsync and an OpenSSH client on the managed host (ssh).
  - The Python library boto3 on the managed host (s3).
'''
