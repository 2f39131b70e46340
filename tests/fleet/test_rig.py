# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet rig is what the fleet tests assume: real SSH to every host, a hostname and /srv of each
host's own, databases on one host reachable from the others, a host that goes down fails fast and
comes back, and nothing of a rig outlives it — nor of a rig whose owner died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from support import rig as rig_module
from support import rig_net
from support.rig import Rig, sweep_stale_rigs

ALL = ['h1', 'h2', 'h3']
OWNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'rig_owner.py')


def _connections_to(rig):
    """Controller connections still open to the rig's hosts (a persisted ssh master would be one)."""
    p = subprocess.run(['ss', '-Htnp', 'state', 'established', 'dst', str(rig.subnet)], stdout=subprocess.PIPE,
                       universal_newlines=True, check=True)
    return [line for line in p.stdout.splitlines() if line.strip()]


def test_ansible_reaches_every_host_over_ssh(rig):
    r = rig.ansible('all', 'ansible.builtin.setup', {'gather_subset': ['!all', 'network']})
    assert r.rc == 0 and r.ok == ALL, r
    for h in rig.hosts:
        facts = r.last(h.name)['ansible_facts']
        assert facts['ansible_hostname'] == h.name, facts['ansible_hostname']
        assert facts['ansible_python']['executable'] == '/usr/bin/python3'
        assert facts['ansible_user_id'] == 'root'
        assert facts['ansible_all_ipv4_addresses'] == [h.address]
        # No default route: nothing a host sends can leave the rig's bridge.
        assert not facts.get('ansible_default_ipv4'), facts.get('ansible_default_ipv4')
    # One master connection per host stays after the run (ControlPersist, as Ansible's default), its socket in the
    # rig's directory; the rig ends them when it stops (test_teardown_leaves_nothing_even_when_the_test_fails).
    assert len(_connections_to(rig)) == len(rig.hosts), _connections_to(rig)
    assert len(rig.master_sockets()) == len(rig.hosts), rig.master_sockets()
    again = rig.ansible('all', 'ansible.builtin.ping')
    assert again.rc == 0 and again.ok == ALL and len(_connections_to(rig)) == len(rig.hosts), again
    rig.stop_masters()
    assert _connections_to(rig) == [] and rig.master_sockets() == []


def test_each_host_has_its_own_hostname_and_srv(rig):
    h1, h2, h3 = rig.hosts
    with open(os.path.join(h1.srv, 'only-on-h1'), 'w', encoding='utf-8') as f:
        f.write('written by the controller into h1.srv')
    assert h1.run(['cat', '/srv/only-on-h1']).stdout == 'written by the controller into h1.srv'
    for other in (h2, h3):
        assert other.run(['test', '-e', '/srv/only-on-h1'], check=False).returncode == 1
    assert not os.path.exists('/srv/only-on-h1'), "the controller's own /srv is untouched"

    # The same over SSH as a playbook sees it, on an inventory with a group and host variables of the
    # test's own; and a task's write lands in that host's srv.
    inventory = rig.write_inventory(os.path.join(rig.dir, 'groups.ini'), groups={'db': ['h1']},
                                    hostvars={h.name: {'marker': 'by-task-%s' % h.name} for h in rig.hosts})
    playbook = os.path.join(rig.dir, 'srv.yml')
    with open(playbook, 'w', encoding='utf-8') as f:
        f.write(PLAYBOOK)
    r = rig.playbook(playbook, inventory=inventory)
    assert r.rc == 0 and r.ok == ALL, r
    assert {h: r.last(h)['stdout'].split() for h in ALL} == {
        'h1': ['h1', 'present', 'db'], 'h2': ['h2', 'absent', 'fleet'], 'h3': ['h3', 'absent', 'fleet']}
    for h in rig.hosts:
        with open(os.path.join(h.srv, 'by-task-' + h.name), encoding='utf-8') as f:
            assert f.read() == h.name + '\n'
        assert sorted(os.listdir(h.srv)) == sorted(['by-task-' + h.name] + (['only-on-h1'] if h is h1 else []))

    for h in rig.hosts:
        assert h.run(['hostname']).stdout.strip() == h.name
        routes = h.run(['ip', '-4', 'route']).stdout
        assert 'default' not in routes and str(rig.subnet) in routes, routes


PLAYBOOK = """\
- name: Every host reports its name, what it sees in /srv, its groups; and writes into its /srv
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Look and write
      ansible.builtin.shell: >-
        hostname; test -e /srv/only-on-h1 && echo present || echo absent;
        echo {{ group_names | difference(['fleet']) | first | default('fleet') }};
        hostname > /srv/{{ marker }}
      changed_when: true
"""


def _listening(text, port):
    return [line for line in text.splitlines() if line.split() and line.split()[3].endswith(':%d' % port)]


@pytest.mark.parametrize('engine', ['postgresql', 'mariadb'])
def test_database_inside_h1_is_reachable_from_h2_and_the_controller(rig, engine):
    h1, h2 = rig['h1'], rig['h2']
    if engine == 'postgresql':
        server = h1.start_postgres()
        client = ['psql', '-h', h1.address, '-p', server.port, '-U', server.superuser, '-d', 'rigcheck',
                  '-v', 'ON_ERROR_STOP=1', '-Atc']
        secret = {'PGPASSWORD': server.password}
        peer_sql = 'SELECT host(inet_client_addr())'
    else:
        server = h1.start_mariadb()
        client = ['mariadb', '-h', h1.address, '-P', server.port, '-u', server.user, '-N', '-B', 'rigcheck', '-e']
        secret = {'MYSQL_PWD': server.password}
        peer_sql = "SELECT SUBSTRING_INDEX(USER(), '@', -1)"
    server.create_database('rigcheck')
    server.sql('CREATE TABLE t (v text)', database='rigcheck')

    # It runs inside h1: listening on h1's address there, on nothing in the controller's namespace.
    assert _listening(h1.run(['ss', '-ltnH']).stdout, server.port) != []
    controller_ss = subprocess.run(['ss', '-ltnH'], stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert _listening(controller_ss.stdout, server.port) == []

    # From h2, over the bridge, with the database's own client (password in the environment, not argv).
    out = h2.run(client + [peer_sql], env=secret).stdout.strip()
    assert out == h2.address
    h2.run(client + ["INSERT INTO t VALUES ('from h2')"], env=secret)
    # From the controller, which is 10.213.X.1 on the bridge.
    assert server.sql(peer_sql)[0][0] == str(rig.gateway)
    assert [tuple(row) for row in server.sql('SELECT v FROM t', database='rigcheck')] == [('from h2',)]


def test_a_downed_host_fails_fast_and_comes_back(rig):
    warm = rig.ansible('all', 'ansible.builtin.ping')
    assert warm.rc == 0 and warm.ok == ALL, warm

    rig['h2'].down()
    assert not rig['h2'].is_up
    r = rig.ansible('all', 'ansible.builtin.ping')
    assert r.unreachable == ['h2'] and r.ok == ['h1', 'h3'], r
    assert r.rc != 0
    # The master connection of the warm run notices the loss within ServerAliveInterval x ServerAliveCountMax (6 s),
    # then ssh tries a connection of its own, bounded by ConnectTimeout=3: about 9 s, not the minutes a master
    # without ServerAlive* would hang (Ansible's own ConnectTimeout, 10 s, would not pass this either).
    assert r.seconds < warm.seconds + 12, (r.seconds, warm.seconds)
    assert 'Connection timed out' in r.last('h2')['msg'] or 'No route to host' in r.last('h2')['msg'], r

    rig['h2'].up()
    assert rig['h2'].is_up
    r = rig.ansible('all', 'ansible.builtin.ping')
    assert r.rc == 0 and r.ok == ALL, r


def test_a_host_going_down_mid_task_is_unreachable_within_seconds(rig):
    h2 = rig['h2']
    runs = []
    t = threading.Thread(target=lambda: runs.append(rig.ansible('h2', 'ansible.builtin.command', 'sleep 120')))
    t.start()
    deadline = time.monotonic() + 60
    while not _sleeping_in(h2, b'120') and time.monotonic() < deadline:
        time.sleep(0.05)
    started = _sleeping_in(h2, b'120')
    h2.down()  # also when the task did not start: the run then ends at once instead of in 120 s
    cut = time.monotonic()
    t.join(180)
    took = time.monotonic() - cut
    assert started, 'the task never started on h2: %r' % runs
    r = runs[0]
    assert r.unreachable == ['h2'], r
    # ServerAliveInterval=2 x ServerAliveCountMax=3: the dead connection is noticed in about 6 s (8 s
    # measured idle). Without them ssh would wait on the silent TCP connection for hours.
    assert took < 30, took


def _sleeping_in(host, seconds):
    for pid in rig_net.netns_pids(host.netns):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                if f.read().split(b'\0')[:2] == [b'sleep', seconds]:
                    return True
        except OSError:
            pass
    return False


def test_teardown_leaves_nothing_even_when_the_test_fails(rig_available):  # pylint: disable=unused-argument
    with open('/proc/sys/net/ipv4/ip_forward', encoding='ascii') as f:
        forward_before = f.read()
    ssh_client = None
    with pytest.raises(RuntimeError, match='the test failed'):
        with Rig(2) as r:
            rig_id, subnet = r.id, r.subnet
            r.start_postgres('h1')
            r['h2'].popen(['sleep', '600'])
            ssh_client = subprocess.Popen(r.ssh_argv('h1', ['sleep', '600']), stdin=subprocess.DEVNULL)
            r['h2'].down()
            before = r.remnants()
            # The remnant finder sees every kind of thing a rig makes, or its empty answer below means nothing.
            assert sorted(before) == ['links', 'mounts', 'netns', 'pids', 'state_dir'], before
            assert len(before['netns']) == 2 and len(before['links']) == 3, before
            assert len(before['pids']) >= 5, before  # 2 sshd, an ssh session, sleep, postgres
            raise RuntimeError('the test failed')
    assert rig_net.remnants(rig_id) == {}
    assert subnet not in rig_net.subnets_in_use()
    assert not [n for n in rig_net.link_list() + rig_net.netns_list() if rig_id in n]
    ssh_client.wait(timeout=10)  # its server side is gone, so the client ends too
    with open('/proc/sys/net/ipv4/ip_forward', encoding='ascii') as f:
        assert f.read() == forward_before


def test_a_rig_that_fails_to_start_says_why_and_leaves_nothing(rig_available, monkeypatch):  # pylint: disable=unused-argument
    monkeypatch.setattr(rig_module, 'SSHD', '/bin/false')  # every host's "sshd" exits at once
    r = Rig(2)
    with pytest.raises(rig_net.RigError, match='sshd of h[12] exited 1'):
        r.start()
    assert r.id and rig_net.remnants(r.id) == {}


def _start_owner(*args):
    p = subprocess.Popen([sys.executable, OWNER] + list(args), stdout=subprocess.PIPE, universal_newlines=True)
    line = p.stdout.readline().strip()
    assert len(line) == 6, 'rig owner printed %r (rc=%s)' % (line, p.poll())
    return p, line


def test_sigterm_runs_the_teardown(rig_available):  # pylint: disable=unused-argument
    p, rig_id = _start_owner('1')
    assert rig_net.remnants(rig_id).get('netns')
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert rig_net.remnants(rig_id) == {}


def test_a_dead_owners_rig_is_swept_and_live_rigs_are_not(rig, make_rig):
    other = make_rig(2)
    assert other.subnet != rig.subnet and other.id != rig.id
    p, dead_id = _start_owner('2', 'postgres')
    p.kill()
    p.wait()
    left = rig_net.remnants(dead_id)
    assert left.get('netns') and left.get('pids') and left.get('state_dir'), left
    assert not rig_net.owner_alive(dead_id) and rig_net.owner_alive(rig.id)

    removed = sweep_stale_rigs()
    assert dead_id in removed and rig.id not in removed and other.id not in removed
    assert rig_net.remnants(dead_id) == {}

    # Both live rigs are whole and still work, and each is cut off from the other.
    for live in (rig, other):
        assert sorted(live.remnants()) == ['links', 'mounts', 'netns', 'pids', 'state_dir']
        p = live.ssh('h1', ['hostname'])
        assert p.returncode == 0 and p.stdout.strip() == 'h1', p
    # A host has a route to its own rig's subnet only: another rig's host is not even tried.
    probe = 'import socket; socket.create_connection((%r, 22), timeout=3)' % other['h1'].address
    out = rig['h1'].run(['/usr/bin/python3', '-c', probe], check=False)
    assert out.returncode != 0 and 'Network is unreachable' in out.stderr, out
