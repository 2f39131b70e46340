# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet of SSH hosts on one machine, for the fleet tests (docs/testing.md, "The fleet rig").

``with Rig(3) as rig:`` gives hosts h1..h3. Each host is a network namespace joined by a veth pair
to a bridge of the rig's own, with its own address in a private 10.213.X.0/24, its own sshd
(root by key), its own hostname and its own /srv (a bind mount of ``host.srv``); /etc, /usr, /tmp
and /root are the controller's. The controller reaches the hosts over the bridge (it has
10.213.X.1); nothing is routed anywhere else. ``rig.inventory`` is an Ansible inventory for them.

Teardown kills every process in the hosts' namespaces (sshd, sessions, database servers, whatever a
test started there), deletes namespaces, interfaces and the state directory; it runs when the block
ends however it ends, SIGTERM included. A rig whose owner died without teardown (SIGKILL, a crash)
is removed by the next rig that starts on the machine. Names and subnet are unique per rig, so
concurrent rigs never touch each other. The plumbing is in rig_net.py.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from support import rig_net
from support.modules import COLLECTIONS_PATH, ensure_collection_link, module_env
from support.servers import MariaDBServer, PostgresServer

SSHD = '/usr/sbin/sshd'
HOST_PYTHON = '/usr/bin/python3'
# What an SSH session on a Debian host gets; host.run() uses the same so both see the same tools.
HOST_ENV = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': '/root',
            'LANG': 'C.UTF-8', 'USER': 'root', 'LOGNAME': 'root', 'SHELL': '/bin/sh'}

# ConnectTimeout bounds a connection to a downed host; ServerAlive* bounds a session whose host goes down under it
# (interval x count seconds), and a master connection's too. rig.ssh() connects afresh each time (ControlMaster=no);
# Ansible on the rig shares one master connection per host, as by default (ansible_ssh_options() below).
SSH_OPTIONS = (
    'ControlMaster=no',
    'ControlPath=none',
    'StrictHostKeyChecking=no',
    'UserKnownHostsFile=/dev/null',
    'ConnectTimeout=3',
    'ServerAliveInterval=2',
    'ServerAliveCountMax=3',
    'BatchMode=yes',
    'IdentitiesOnly=yes',
    'LogLevel=ERROR',
)

MASTER_PREFIX = 'cm-'  # the master connections' sockets in the rig's directory


def ansible_ssh_options(rig_dir):
    """The rig's ssh options for Ansible: one master connection per host, kept 60 s, as Ansible's default
    (ControlPersist) - but with its socket in the rig's own directory, so that no master outlives the rig's
    hosts or reaches a later rig that reuses their addresses, and with ServerAlive* so that a master to a host
    that went down ends within seconds, failing the tasks that wait on it instead of hanging them."""
    return tuple(o for o in SSH_OPTIONS if not o.startswith('Control')) + (
        'ControlMaster=auto', 'ControlPersist=60s', 'ControlPath=%s' % os.path.join(rig_dir, MASTER_PREFIX + '%C'))


# What every test sshd (the rig's hosts, the loopback backup host of test_offhost_ssh_local.py) has besides its
# listen address and its own extras: its files, and root logs in by key only, with no PAM, no checks of the
# files' modes (they live in test directories) and no DNS lookups. A str.format template.
SSHD_COMMON_CONFIG = """\
HostKey {host_key}
PidFile {pidfile}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
"""

_SSHD_CONFIG = """\
# sshd of fleet-rig host {name} (rig {rig_id})
ListenAddress {address}:22
""" + SSHD_COMMON_CONFIG + """\
PrintLastLog no
X11Forwarding no
AcceptEnv LANG LC_*
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
LogLevel INFO
"""

# Runs between unshare and sshd: values come in as positional parameters, never spliced into the script.
_HOST_INIT = 'mount --bind "$1" /srv && hostname "$2" && exec "$3" -D -e -f "$4"'


CALLBACK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'callback_plugins')


class AnsibleRun(object):
    """An ansible or ansible-playbook run: exit status, screen output, and every task result as
    recorded by the result_lines callback (``results``: dicts with host, task, status, result)."""

    def __init__(self, argv, proc, seconds, lines_path):
        self.argv = argv
        self.rc = proc.returncode
        self.output = proc.stdout
        self.seconds = seconds
        self.results = []
        if os.path.exists(lines_path):
            with open(lines_path, encoding='utf-8') as f:
                self.results = [json.loads(line) for line in f if line.strip()]

    def __repr__(self):
        return '<AnsibleRun rc=%s %.1fs>\n%s' % (self.rc, self.seconds, self.output[-6000:])

    def statuses(self, host):
        return [r['status'] for r in self.results if r['host'] == host]

    def last(self, host):
        """The host's last task result (the module's return values)."""
        mine = [r['result'] for r in self.results if r['host'] == host]
        return mine[-1] if mine else None

    def _hosts(self, pred):
        return sorted(h for h in {r['host'] for r in self.results} if pred(self.statuses(h)))

    @property
    def unreachable(self):
        return self._hosts(lambda s: 'unreachable' in s)

    @property
    def failed(self):
        return self._hosts(lambda s: 'failed' in s)

    @property
    def ok(self):
        return self._hosts(lambda s: not {'unreachable', 'failed'} & set(s))


class Host(object):
    """One host of a rig. ``run``/``popen`` execute inside its namespaces (as an SSH session would see
    the machine, without SSH); ``srv`` is its /srv as seen from the controller."""

    def __init__(self, rig, index, address):
        self.rig = rig
        self.index = index
        self.name = 'h%d' % index
        self.address = str(address)
        self.netns = rig_net.netns_name(rig.id, index)
        self.veth = rig_net.veth_name(rig.id, index)
        self.dir = os.path.join(rig.dir, self.name)
        self.srv = os.path.join(self.dir, 'srv')
        self.sshd_config = os.path.join(self.dir, 'sshd_config')
        self.sshd_log = os.path.join(self.dir, 'sshd.log')
        self.proc = None

    def __repr__(self):
        return '<Host %s %s>' % (self.name, self.address)

    @property
    def pid(self):
        """sshd's pid: its mount, network and UTS namespaces are the host."""
        if self.proc is None:
            raise rig_net.RigError('%s has no sshd running' % self.name)
        return self.proc.pid

    def command(self, argv):
        """``argv`` prefixed to run inside this host's namespaces."""
        return ['nsenter', '-t', str(self.pid), '-m', '-n', '-u', '--'] + [str(a) for a in argv]

    def _env(self, env):
        e = dict(HOST_ENV)
        e.update(env or {})
        return e

    def run(self, argv, env=None, input=None, check=True, timeout=120):  # pylint: disable=redefined-builtin
        """Run ``argv`` inside the host with an SSH-session-like environment plus ``env``.
        Returns CompletedProcess with text stdout/stderr; raises on a non-zero exit when ``check``."""
        p = subprocess.run(self.command(argv), env=self._env(env), input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False)
        if check and p.returncode != 0:
            raise AssertionError('%s: %s exited %s\nstdout:\n%s\nstderr:\n%s'
                                 % (self.name, argv, p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
        return p

    def popen(self, argv, env=None, **kw):
        """Start a long-running process inside the host; teardown kills it if the test did not."""
        kw.setdefault('stdin', subprocess.DEVNULL)
        p = subprocess.Popen(self.command(argv), env=self._env(env), **kw)  # pylint: disable=consider-using-with
        self.rig.children.append(p)
        return p

    def down(self):
        """Cut the host off: its link to the bridge goes down, so nothing reaches it or leaves it."""
        rig_net.ip('link', 'set', self.veth, 'down')

    def up(self, wait=10.0):
        """Reconnect the host and wait until its sshd answers again."""
        rig_net.ip('link', 'set', self.veth, 'up')
        if wait:
            self.rig.wait_ssh_banner(self, wait)

    @property
    def is_up(self):
        with open('/sys/class/net/%s/operstate' % self.veth, encoding='ascii') as f:
            return f.read().strip() == 'up'

    def start_postgres(self, **kw):
        return self.rig.start_postgres(self, **kw)

    def start_mariadb(self, **kw):
        return self.rig.start_mariadb(self, **kw)


_term_lock = threading.Lock()
_term_users = [0]


def _term_as_interrupt(signum, frame):
    raise KeyboardInterrupt('SIGTERM')


class Rig(object):
    """``hosts`` SSH hosts h1..hN on a private bridge. Use as a context manager (or start()/stop())."""

    def __init__(self, hosts=3):
        if hosts < 1 or hosts > 200:
            raise ValueError('a rig has 1 to 200 hosts, not %r' % (hosts,))
        self.count = hosts
        self.id = None
        self.dir = None
        self.subnet = None
        self.bridge = None
        self.gateway = None
        self.hosts = []
        self.servers = []
        self.children = []
        self.inventory = None
        self.private_key = None
        self.timings = {}
        self._lock = None
        self._term_installed = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
        except rig_net.RigError:
            if exc_type is None:
                raise
            # The test's own failure is the news; a teardown problem on top goes to stderr.
            sys.stderr.write('fleet rig %s teardown: %s\n' % (self.id, sys.exc_info()[1]))
        return False

    def start(self):
        started = time.monotonic()
        self._install_term_handler()
        try:
            self._start()
        except BaseException:
            try:
                self.stop()
            except rig_net.RigError as e:
                # Why the rig did not come up is the news; what its cleanup could not remove goes to stderr.
                sys.stderr.write('fleet rig %s teardown after a failed start: %s\n' % (self.id, e))
            raise
        self.timings['up'] = time.monotonic() - started
        return self

    def stop(self):
        """Tear everything down; safe to call twice. Raises RigError listing what could not be removed."""
        started = time.monotonic()
        problems = []
        for server in reversed(self.servers):
            try:
                server.destroy()
            except Exception as e:  # pylint: disable=broad-except
                problems.append('stopping %s: %s' % (server.base, e))
        self.servers = []
        self.stop_masters()
        if self.id is not None:
            problems += rig_net.destroy(self.id)
        for p in self.children + [h.proc for h in self.hosts if h.proc is not None]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append('pid %s did not exit' % p.pid)
        self.children = []
        for h in self.hosts:
            h.proc = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._remove_term_handler()
        self.timings['down'] = time.monotonic() - started
        if problems:
            raise rig_net.RigError('rig %s: %s' % (self.id, '; '.join(problems)))

    def master_sockets(self):
        """The sockets of the master connections Ansible keeps to the hosts (ansible_ssh_options)."""
        names = sorted(os.listdir(self.dir)) if self.dir and os.path.isdir(self.dir) else []
        return [os.path.join(self.dir, n) for n in names if n.startswith(MASTER_PREFIX)]

    def stop_masters(self):
        """End the master connections Ansible left (ControlPersist) while their hosts still answer."""
        for path in self.master_sockets():
            subprocess.run(['ssh', '-o', 'ControlPath=' + path, '-O', 'exit', 'rig-host'],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=10, check=False)

    def _install_term_handler(self):
        # pytest dies on SIGTERM without running fixture finalizers; as KeyboardInterrupt they run.
        if threading.current_thread() is not threading.main_thread():
            return
        with _term_lock:
            if _term_users[0] == 0:
                if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                    return
                signal.signal(signal.SIGTERM, _term_as_interrupt)
            _term_users[0] += 1
            self._term_installed = True

    def _remove_term_handler(self):
        if not self._term_installed:
            return
        with _term_lock:
            _term_users[0] -= 1
            if _term_users[0] == 0 and signal.getsignal(signal.SIGTERM) is _term_as_interrupt:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._term_installed = False

    def _start(self):
        for tool in (SSHD, HOST_PYTHON):
            if not os.path.exists(tool):
                raise rig_net.RigError('%s is missing (make test installs openssh-server and python3)' % tool)
        os.makedirs('/run/sshd', exist_ok=True)  # sshd's privilege-separation directory
        os.makedirs('/srv', exist_ok=True)  # mount point for every host's own /srv
        with rig_net.FileLock(rig_net.GLOBAL_LOCK):
            rig_net.sweep_stale()
            self._claim_id()
            self.subnet = rig_net.pick_subnet()
            addresses = list(self.subnet.hosts())
            self.gateway = addresses[0]
            self.bridge = rig_net.bridge_name(self.id)
            # The bridge's address makes the subnet visible to the next rig's pick_subnet().
            rig_net.ip('link', 'add', self.bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0')
            rig_net.ip('addr', 'add', '%s/%d' % (self.gateway, self.subnet.prefixlen), 'dev', self.bridge)
            rig_net.ip('link', 'set', self.bridge, 'up')
        self.hosts = [Host(self, i, addresses[9 + i]) for i in range(1, self.count + 1)]  # .11, .12, ...
        self._write_state()
        self._make_keys()
        for h in self.hosts:
            self._plumb(h)
        for h in self.hosts:
            self._start_sshd(h)
        self._check_hosts()
        self.inventory = self.write_inventory()

    def _check_hosts(self):
        # A login costs ~0.4 s of CPU-bound key exchange here: check the hosts side by side.
        errors = []

        def check(h):
            try:
                self.wait_ssh_banner(h, 15)
                self._check_login(h)
            except Exception as e:  # pylint: disable=broad-except
                errors.append(e)

        threads = [threading.Thread(target=check, args=(h,)) for h in self.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def _claim_id(self):
        present = rig_net.rig_ids_present()
        for _attempt in range(100):
            rig_id = secrets.token_hex(3)
            if rig_id in present:
                continue
            path = rig_net.state_dir(rig_id)
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            # Database servers of the hosts live below and run as postgres/mysql: traversable.
            os.chmod(path, 0o755)
            self.id, self.dir = rig_id, path
            self._lock = rig_net.FileLock(os.path.join(path, 'lock'))
            if not self._lock.acquire(block=False):
                raise rig_net.RigError('lock of fresh rig directory %s is held by someone else' % path)
            with open(os.path.join(path, 'owner'), 'w', encoding='ascii') as f:
                f.write('%d\n' % os.getpid())
            return
        raise rig_net.RigError('could not find a free rig id')

    def _write_state(self):
        state = {'id': self.id, 'owner_pid': os.getpid(), 'subnet': str(self.subnet), 'bridge': self.bridge,
                 'hosts': [{'name': h.name, 'address': h.address, 'netns': h.netns, 'veth': h.veth}
                           for h in self.hosts]}
        with open(os.path.join(self.dir, 'rig.json'), 'w', encoding='utf-8') as f:
            json.dump(state, f, indent=2)

    def _make_keys(self):
        keydir = os.path.join(self.dir, 'ssh')
        os.mkdir(keydir, 0o700)
        self.private_key = os.path.join(keydir, 'id_ed25519')
        _quiet(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'fleet-rig-%s' % self.id,
                '-f', self.private_key])
        os.rename(self.private_key + '.pub', os.path.join(keydir, 'authorized_keys'))

    def _plumb(self, h):
        os.makedirs(h.srv, mode=0o755)
        rig_net.ip('netns', 'add', h.netns)
        # The inner end is born in the namespace as eth0: no temporary name to clash or leak.
        rig_net.ip('link', 'add', h.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.netns)
        rig_net.ip('link', 'set', h.veth, 'master', self.bridge, 'up')
        rig_net.ip('-n', h.netns, 'addr', 'add', '%s/%d' % (h.address, self.subnet.prefixlen), 'dev', 'eth0')
        rig_net.ip('-n', h.netns, 'link', 'set', 'eth0', 'up')
        rig_net.ip('-n', h.netns, 'link', 'set', 'lo', 'up')

    def _start_sshd(self, h):
        host_key = os.path.join(h.dir, 'ssh_host_ed25519_key')
        _quiet(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', h.name, '-f', host_key])
        with open(h.sshd_config, 'w', encoding='utf-8') as f:
            f.write(_SSHD_CONFIG.format(name=h.name, rig_id=self.id, address=h.address, host_key=host_key,
                                        pidfile=os.path.join(h.dir, 'sshd.pid'),
                                        authorized_keys=os.path.join(self.dir, 'ssh', 'authorized_keys')))
        argv = ['ip', 'netns', 'exec', h.netns, 'unshare', '--mount', '--uts', '--propagation', 'private',
                'sh', '-c', _HOST_INIT, 'sh', h.srv, h.name, SSHD, h.sshd_config]
        with open(h.sshd_log, 'ab') as log:
            # ip netns exec, unshare and sh all exec: the pid is sshd's. Own session: a Ctrl-C meant
            # for pytest must not kill the hosts before teardown looks at them.
            h.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def wait_ssh_banner(self, h, seconds):
        deadline = time.monotonic() + seconds
        last = None
        while time.monotonic() < deadline:
            if h.proc is not None and h.proc.poll() is not None:
                raise rig_net.RigError('sshd of %s exited %s:\n%s' % (h.name, h.proc.returncode, _tail(h.sshd_log)))
            try:
                with socket.create_connection((h.address, 22), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b'SSH-'):
                        return
            except OSError as e:
                last = e
            time.sleep(0.02)
        raise rig_net.RigError('sshd of %s did not answer on %s:22 within %ss (%s):\n%s'
                               % (h.name, h.address, seconds, last, _tail(h.sshd_log)))

    def _check_login(self, h):
        p = self.ssh(h, ['hostname'])
        if p.returncode != 0 or p.stdout.strip() != h.name:
            raise rig_net.RigError('ssh root@%s hostname gave rc=%s %r %r; sshd log:\n%s'
                                   % (h.address, p.returncode, p.stdout, p.stderr, _tail(h.sshd_log)))

    # ------------------------------------------------------------ use

    def host(self, name):
        """A host by name ('h2'), or the Host itself."""
        if isinstance(name, Host):
            return name
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError('rig %s has no host %r (hosts: %s)' % (self.id, name, ', '.join(x.name for x in self.hosts)))

    def __getitem__(self, name):
        return self.host(name)

    def ssh_argv(self, h, argv=()):
        opts = []
        for o in SSH_OPTIONS:
            opts += ['-o', o]
        return ['ssh'] + opts + ['-i', self.private_key, 'root@' + self.host(h).address, '--'] + list(argv)

    def ssh(self, h, argv, timeout=60):
        """A command on a host over real SSH (the remote side joins argv with spaces, as ssh does)."""
        return subprocess.run(self.ssh_argv(h, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False)

    def write_inventory(self, path=None, groups=None, hostvars=None):
        """An INI inventory of every host (group ``fleet``), plus ``groups`` ({'db': ['h1']}) and
        ``hostvars`` ({'h1': {'x': 1}}). Returns its path."""
        path = path or os.path.join(self.dir, 'inventory.ini')
        lines = ['# fleet rig %s: removed with the rig' % self.id, '[fleet]']
        for h in self.hosts:
            extra = ''.join(' %s=%s' % (k, json.dumps(v)) for k, v in sorted((hostvars or {}).get(h.name, {}).items()))
            lines.append('%s ansible_host=%s%s' % (h.name, h.address, extra))
        for group, members in sorted((groups or {}).items()):
            lines += ['', '[%s]' % group] + [self.host(m).name for m in members]
        lines += ['', '[fleet:vars]', 'ansible_user=root', 'ansible_port=22',
                  'ansible_ssh_private_key_file=%s' % self.private_key,
                  'ansible_python_interpreter=%s' % HOST_PYTHON,
                  # ssh_args, not ssh_common_args: ssh keeps the first value of an option and
                  # ansible puts ssh_args first, so only here does the ControlPath win over its default.
                  "ansible_ssh_args='%s'" % ' '.join('-o ' + o for o in ansible_ssh_options(self.dir)),
                  'ansible_pipelining=true', '']
        with open(path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines))
        return path

    def ansible_env(self, extra=None):
        """Environment for ansible/ansible-playbook against this rig, with this collection installed."""
        ensure_collection_link()
        env = module_env()
        env.update({'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS_PATH, 'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
                    'ANSIBLE_HOST_KEY_CHECKING': 'false', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORCE_COLOR': '0',
                    'ANSIBLE_RETRY_FILES_ENABLED': 'false', 'ANSIBLE_FORKS': str(max(5, self.count)),
                    'ANSIBLE_CALLBACK_PLUGINS': CALLBACK_DIR, 'ANSIBLE_CALLBACKS_ENABLED': 'result_lines',
                    'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1'})
        env.update(extra or {})
        return env

    def _run_ansible(self, argv, env, timeout):
        fd, lines = tempfile.mkstemp(prefix='results-', suffix='.jsonl', dir=self.dir)
        os.close(fd)
        env = self.ansible_env(dict(env or {}, DJANGOOPS_RESULT_LINES=lines))
        started = time.monotonic()
        try:
            p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)
            return AnsibleRun(argv, p, time.monotonic() - started, lines)
        finally:
            os.unlink(lines)

    def ansible(self, pattern, module, args=None, extra_args=(), inventory=None, env=None, timeout=600):
        """``ansible PATTERN -m MODULE -a ARGS`` (args: a string or a dict); returns an AnsibleRun."""
        argv = [os.path.join(os.path.dirname(sys.executable), 'ansible'), pattern, '-i', inventory or self.inventory,
                '-m', module]
        if args is not None:
            argv += ['-a', args if isinstance(args, str) else json.dumps(args)]
        return self._run_ansible(argv + list(extra_args), env, timeout)

    def playbook(self, playbook, extra_vars=None, extra_args=(), inventory=None, env=None, timeout=1200):
        """``ansible-playbook`` against the rig; returns an AnsibleRun."""
        argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', inventory or self.inventory,
                playbook]
        if extra_vars:
            argv += ['-e', json.dumps(extra_vars)]
        return self._run_ansible(argv + list(extra_args), env, timeout)

    def start_postgres(self, h, **kw):
        """A throwaway PostgreSQL inside host ``h``'s network namespace, listening on its address
        (reachable from the other hosts and the controller). Stopped at teardown."""
        h = self.host(h)
        base = tempfile.mkdtemp(prefix='pg-', dir=h.dir)
        server = PostgresServer(host=h.address, base=base, netns=h.netns, **kw)
        self.servers.append(server)
        return server.start()

    def start_mariadb(self, h, **kw):
        """A throwaway MariaDB inside host ``h``'s network namespace (see start_postgres)."""
        h = self.host(h)
        base = tempfile.mkdtemp(prefix='my-', dir=h.dir)
        server = MariaDBServer(host=h.address, base=base, netns=h.netns, **kw)
        self.servers.append(server)
        return server.start()

    def remnants(self):
        """What of this rig still exists on the machine (empty after a clean teardown)."""
        return rig_net.remnants(self.id)


def sweep_stale_rigs():
    """Remove the leftovers of every rig whose owner process is gone; returns their ids."""
    with rig_net.FileLock(rig_net.GLOBAL_LOCK):
        return rig_net.sweep_stale()


def _quiet(argv):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, check=False)
    if p.returncode != 0:
        raise rig_net.RigError('%s failed: %s' % (' '.join(argv), p.stdout.strip()))


def _tail(path, size=3000):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read()[-size:]
    except OSError:
        return ''
