"""Start and stop the shop under gunicorn, the way an init system would, for hosts without one.

    python bin/appctl.py start --bind 127.0.0.1:8000 --pidfile /srv/shop/run/app.pid [--env-file F] [--log F]
    python bin/appctl.py stop --pidfile /srv/shop/run/app.pid
    python bin/appctl.py status --pidfile /srv/shop/run/app.pid

`start` returns once the server accepts connections (or fails with the end of its log); `stop` waits for the
old processes to exit. The project directory is the one this script lives in (the live release)."""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

PROJECT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def read_pid(pidfile):
    try:
        with open(pidfile, encoding='ascii') as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def load_env(path):
    env = dict(os.environ)
    if path:
        with open(path, encoding='utf-8') as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith('#') and '=' in line:
                    key, value = line.split('=', 1)
                    env[key.strip()] = value
    return env


def wait_listening(bind, seconds):
    host, port = bind.rsplit(':', 1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def start(args):
    if read_pid(args.pidfile):
        print('already running (pid %s)' % read_pid(args.pidfile))
        return 0
    os.makedirs(os.path.dirname(args.pidfile), exist_ok=True)
    log = args.log or os.path.join(os.path.dirname(args.pidfile), 'app.log')
    argv = [sys.executable, '-m', 'gunicorn', 'shopsite.wsgi', '--bind', args.bind, '--pid', args.pidfile,
            '--daemon', '--chdir', PROJECT, '--workers', str(args.workers), '--error-logfile', log,
            '--access-logfile', log, '--graceful-timeout', '5',
            # gunicorn's control socket defaults to one path per user: several shops on a host would share it.
            '--no-control-socket']
    subprocess.run(argv, env=load_env(args.env_file), check=True, cwd=PROJECT)
    if not wait_listening(args.bind, args.wait):
        with open(log, encoding='utf-8', errors='replace') as f:
            tail = f.read()[-3000:]
        print('the shop did not start listening on %s within %ss; log:\n%s' % (args.bind, args.wait, tail))
        return 1
    print('started on %s (pid %s)' % (args.bind, read_pid(args.pidfile)))
    return 0


def stop(args):
    pid = read_pid(args.pidfile)
    if not pid:
        print('not running')
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and read_pid(args.pidfile) == pid:
        time.sleep(0.1)
    if read_pid(args.pidfile) == pid:
        os.kill(pid, signal.SIGKILL)
    try:
        os.unlink(args.pidfile)
    except FileNotFoundError:
        pass
    print('stopped (pid %s)' % pid)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('action', choices=['start', 'stop', 'status'])
    p.add_argument('--pidfile', required=True)
    p.add_argument('--bind', default='127.0.0.1:8000')
    p.add_argument('--env-file')
    p.add_argument('--log')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--wait', type=int, default=20)
    args = p.parse_args()
    # gunicorn daemonizes into the project directory: relative paths would land there.
    for name in ('pidfile', 'env_file', 'log'):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if args.action == 'status':
        pid = read_pid(args.pidfile)
        print('running (pid %s)' % pid if pid else 'not running')
        return 0 if pid else 3
    return start(args) if args.action == 'start' else stop(args)


if __name__ == '__main__':
    sys.exit(main())
