# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: run external tools as argument lists and pipelines.

Never a shell. Every process of a pipeline is waited for and judged: its exit status, and its
stderr against the tool's known error patterns (some tools exit 0 after printing an error).
Stdout of the last process can be pumped through Python into a sink (a hashing file writer),
and "taps" can watch a stream between two processes (the MySQL dump-completed footer).
Secrets are never put in argv: callers pass them through files made by ``private_dir``.
"""

from __future__ import annotations

import collections
import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

CHUNK = 1024 * 1024
MESSAGE_LINES = 30  # of a failing tool's stderr, in the error message (the last ones say why)

# Tools speak English and print dates/numbers the same way on every host.
C_LOCALE = {'LANG': 'C.UTF-8', 'LC_ALL': 'C.UTF-8', 'LC_MESSAGES': 'C'}


class ToolError(Exception):
    """An external tool failed; ``str()`` is a message fit for an operator."""

    def __init__(self, msg, command=None, rc=None, stderr=None):
        super().__init__(msg)
        self.command = command
        self.rc = rc
        self.stderr = stderr


def find_tool(name, paths=None, required=True):
    """Absolute path of a tool, searching ``paths`` first, then PATH and the sbin directories."""
    search = list(paths or [])
    search += os.environ.get('PATH', '').split(os.pathsep)
    search += ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']
    for d in search:
        if not d:
            continue
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if required:
        raise ToolError('required tool %r was not found on this host (searched %s); install it '
                        '(see bindep.txt of djangoops.maintenance)' % (name, ', '.join(d for d in search if d)))
    return None


def display(argv):
    """One shell-quoted line for results and logs. Argv never holds secrets, so nothing to hide."""
    return ' '.join(shlex.quote(str(a)) for a in argv)


class Step(object):
    """One process of a pipeline.

    ``error_patterns``: regexes that mark a failure when found on stderr even if the exit status is 0.
    ``ok_returncodes``: exit statuses that are success (default: 0 only).
    """

    def __init__(self, argv, env=None, error_patterns=(), ok_returncodes=(0,), name=None, cwd=None):
        self.argv = [str(a) for a in argv]
        self.env = dict(env or {})
        self.error_patterns = [re.compile(p) for p in error_patterns]
        self.ok_returncodes = tuple(ok_returncodes)
        self.name = name or os.path.basename(self.argv[0])
        self.cwd = cwd

    def display(self):
        return display(self.argv)


class Tap(object):
    """Sits between two steps: Python pumps the stream through and lets ``observe`` see each chunk."""

    opaque = False  # True: the tap only needs the byte count (``count``), never the bytes

    def observe(self, chunk):
        raise NotImplementedError

    def finish(self):
        """Called once the stream ended; raise ToolError to fail the pipeline."""

    def pass_on(self, chunk):
        """The bytes to hand downstream for ``chunk``. A Tap only watches; a filter (a Tap that
        rewrites the stream, such as the MySQL definer rewriter) overrides this and ``flush``."""
        self.observe(chunk)
        return chunk

    def flush(self):
        """Bytes a filter still holds back when the stream ends."""
        return b''


class TailTap(Tap):
    """Keeps the last ``size`` bytes of a stream (to check a dump's completion footer)."""

    def __init__(self, size=4096):
        self.size = size
        self.tail = b''
        self.total = 0

    def observe(self, chunk):
        self.total += len(chunk)
        self.tail = (self.tail + bytes(chunk[-self.size:]))[-self.size:]


class CountingTap(Tap):
    """Counts the bytes of a stream without looking at them. Between two steps on Linux the pump then
    moves them with splice(2), pipe to pipe, without copying them through Python."""

    opaque = True

    def __init__(self):
        self.total = 0

    def observe(self, chunk):
        self.count(len(chunk))

    def count(self, n):
        self.total += n


class _StderrReader(threading.Thread):
    """Drains a stderr pipe into a bounded buffer: a chatty tool can neither block nor fill memory."""

    def __init__(self, stream, keep_lines=400):
        super().__init__(daemon=True)
        self.stream = stream
        self.lines = collections.deque(maxlen=keep_lines)
        self.dropped = 0

    def run(self):
        for raw in iter(self.stream.readline, b''):
            if len(self.lines) == self.lines.maxlen:
                self.dropped += 1
            self.lines.append(raw[:4096].decode('utf-8', 'replace').rstrip('\n'))
        self.stream.close()

    def text(self):
        head = '[... %d earlier lines]\n' % self.dropped if self.dropped else ''
        return head + '\n'.join(self.lines)


class _Pump(threading.Thread):
    """Copies src (a _PipeReader) to dst through Python, letting a tap observe. Errors are kept for the
    pipeline."""

    def __init__(self, src, dst, tap):
        super().__init__(daemon=True)
        self.src, self.dst, self.tap = src, dst, tap
        self.error = None

    def run(self):
        try:
            if self.tap.opaque and self._splice():
                return
            while True:
                chunk = self.src.read()
                if not chunk:
                    break
                out = self.tap.pass_on(chunk)
                if out:
                    self.dst.write(out)
            rest = self.tap.flush()
            if rest:
                self.dst.write(rest)
        except BrokenPipeError:
            pass  # the next process died; its exit status tells why
        except Exception as e:  # pylint: disable=broad-except
            self.error = e
        finally:
            for f in (self.dst, self.src):
                try:
                    f.close()
                except OSError:
                    pass

    def _splice(self):
        """Move the whole stream with splice(2) and count it; False (nothing moved) where splice is not
        available or refused, and the caller copies instead."""
        if _SPLICE is None:
            return False
        dst, moved = self.dst.fileno(), False
        while True:
            try:
                n = self.src.splice_into(dst)
            except OSError as e:
                if not moved and e.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    return False
                raise
            if not n:
                return True
            moved = True
            self.tap.count(n)


class PipelineResult(object):
    def __init__(self, steps, returncodes, stderr, seconds, bytes_out):
        self.steps = steps
        self.returncodes = returncodes
        self.stderr = stderr
        self.seconds = seconds
        self.bytes_out = bytes_out

    @property
    def commands(self):
        return [s.display() for s in self.steps]


PIPE_BYTES = 1024 * 1024
# After a short read from a wide pipe, a reader waits this long before the next one. Dump tools write
# in pieces of a few KiB; a reader woken for each of them spends more CPU on wake-ups than on the bytes
# (measured: mariadb-dump into Python, 1.2 GB, 65,000 reads and 0.8 s of CPU; waiting 1 ms after a short
# read, 3,000 reads and 0.2 - 0.35 s, and the dump itself finished sooner). A full pipe is read again at
# once, so a fast writer is never held back by more than one pause per MiB.
SETTLE_SECONDS = 0.001
SHORT_READ = CHUNK // 4
# Linux's fcntl commands (named in Python >= 3.10); other systems have no such call.
_LINUX = fcntl is not None and sys.platform.startswith('linux')
_F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031) if _LINUX else None
_F_GETPIPE_SZ = getattr(fcntl, 'F_GETPIPE_SZ', 1032) if _LINUX else None
_SPLICE = getattr(os, 'splice', None) if _LINUX else None  # Python >= 3.10


def _widen_pipe(f):
    """Give a pipe between steps 1 MiB of buffer (Linux; 64 KiB by default). True when it has at least
    that much now. Best effort: a kernel that refuses (pipe-max-size, another OS) keeps its default."""
    if f is None or _F_SETPIPE_SZ is None:
        return False
    try:
        fcntl.fcntl(f.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        return fcntl.fcntl(f.fileno(), _F_GETPIPE_SZ) >= PIPE_BYTES
    except (OSError, ValueError):
        return False


class _PipeReader(object):
    """Reads a child's stdout in chunks of up to CHUNK straight from its descriptor. On a wide pipe a
    short read is followed by a pause (SETTLE_SECONDS), so the writer fills the pipe instead of waking
    the reader for each of its small writes."""

    def __init__(self, f, wide):
        self.f = f
        self.fd = f.fileno()
        self.pause = SETTLE_SECONDS if wide else 0
        self.buf = None  # most readers only hand their descriptor to the next step: no buffer for those

    def read(self):
        """The next chunk as a memoryview (valid until the next call); empty at the end of the stream."""
        if self.buf is None:
            self.buf = memoryview(bytearray(CHUNK))
        return self.buf[:self._settle(os.readv(self.fd, [self.buf]))]

    def splice_into(self, fd):
        """Move the next chunk into the pipe ``fd`` with splice(2); its size, 0 at the end of the stream."""
        return self._settle(_SPLICE(self.fd, fd, CHUNK))

    def _settle(self, n):
        if self.pause and 0 < n < SHORT_READ:
            time.sleep(self.pause)
        return n

    def fileno(self):
        return self.fd

    def close(self):
        self.f.close()


def _child_env(extra):
    env = dict(os.environ)
    env.update(C_LOCALE)
    env.update(extra)
    return env


class DeadlineError(ToolError):
    """A pipeline ran out of its time and was stopped."""


class _Deadline(object):
    """Stops a pipeline when its time is up, whatever it is waiting on: a timer thread kills every process
    still running (and calls ``on_timeout``, which stops what the sink runs). A tool blocked on a lock
    produces nothing and a sink blocked on a client takes nothing, so a check between reads would never
    run; the killed processes end those waits, and the pipeline then fails with ``fail()``."""

    def __init__(self, seconds, steps, procs, on_timeout=None, said=None):
        self.seconds = seconds
        self.said = said if said is not None else seconds  # the timeout the operator set
        self.steps, self.procs = steps, procs  # procs: the list run_pipeline fills as it starts them
        self.on_timeout = on_timeout
        self.running = None  # names of the steps still running when the time was up
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self):
        with self._lock:
            self.running = [step.name for step, p in zip(self.steps, list(self.procs)) if p.poll() is None]
            for p in list(self.procs):
                if p.poll() is None:
                    try:
                        p.kill()
                    except OSError:
                        pass
            if self.on_timeout is not None:
                try:
                    self.running += list(self.on_timeout() or ())
                except Exception:  # pylint: disable=broad-except
                    pass  # the timeout is the error to report

    @property
    def fired(self):
        with self._lock:
            return self.running is not None

    def cancel(self):
        self._timer.cancel()
        with self._lock:  # an expiry under way finishes before the caller judges the pipeline
            pass

    def fail(self, cause=None):
        what = ', '.join(self.running) if self.running else 'none of the tools; the loading after them'
        raise DeadlineError('timed out after %ss and stopped (still running: %s)' % (self.said, what),
                            command=' | '.join(s.display() for s in self.steps)) from cause


def run_pipeline(items, stdin_path=None, sink=None, stdout_path=None, timeout=None, then=None, on_timeout=None,
                 timeout_total=None):
    """Run ``items`` (Steps, with optional Taps between or after them) connected by pipes.

    Children get SIGPIPE back at its default (subprocess' restore_signals), so a dead reader
    ends a writer promptly instead of leaving it in an EPIPE loop.

    Input comes from ``stdin_path`` (or /dev/null). Output of the last step goes to ``sink``
    (an object with ``write(memoryview)``), to ``stdout_path``, or is discarded. ``then``: called
    once every step ended well (a sink that still has work, such as loading clients, finishes it).
    ``timeout``: seconds for all of it, ``then`` included; when they pass, every process still running
    is killed, ``on_timeout`` is called (from another thread: it must only stop what the sink runs, so
    that the sink's waits end; it may return the names of what it stopped) and the pipeline fails
    naming what was still running. ``timeout_total``: the task's whole timeout, of which ``timeout`` is
    what is left (``_engine_base.limits``); the message names it.
    Raises ToolError naming the first step that failed; otherwise returns a PipelineResult.
    """
    if not items or not isinstance(items[0], Step):
        raise ValueError('a pipeline starts with a Step')
    steps = [i for i in items if isinstance(i, Step)]
    if isinstance(items[-1], Tap) and sink is None:
        raise ValueError('a trailing Tap needs a sink to pump into')
    procs, readers, pumps, taps = [], [], [], []
    started = time.monotonic()
    stdin_f = open(stdin_path, 'rb') if stdin_path else open(os.devnull, 'rb')
    stdout_f = open(stdout_path, 'wb') if stdout_path else None
    bytes_out = 0
    prev_out = stdin_f
    pending_tap = None
    deadline = None
    try:
        deadline = _Deadline(timeout, steps, procs, on_timeout, timeout_total) if timeout is not None else None
        for item in items:
            if isinstance(item, Tap):
                pending_tap = item
                taps.append(item)
                continue
            last = item is steps[-1]
            if last:
                out = subprocess.PIPE if sink is not None else (stdout_f or subprocess.DEVNULL)
            else:
                out = subprocess.PIPE
            if pending_tap is not None:
                stdin_arg = subprocess.PIPE
            else:
                stdin_arg = prev_out
            try:
                p = subprocess.Popen(item.argv, stdin=stdin_arg, stdout=out, stderr=subprocess.PIPE,
                                     env=_child_env(item.env), cwd=item.cwd, close_fds=True)
            except OSError as e:
                raise ToolError('could not start %s: %s' % (item.name, e), command=item.display())
            if pending_tap is not None:
                _widen_pipe(p.stdin)
                pump = _Pump(prev_out, p.stdin, pending_tap)
                pump.start()
                pumps.append(pump)
                pending_tap = None
            elif prev_out is not stdin_f:
                prev_out.close()  # the child holds its own copy; ours would keep the pipe open
            out_wide = _widen_pipe(p.stdout) if out is subprocess.PIPE else False
            procs.append(p)
            if deadline is not None and deadline.fired:
                p.kill()  # started as the time ran out: the deadline's kill did not see it
            r = _StderrReader(p.stderr)
            r.start()
            readers.append(r)
            prev_out = _PipeReader(p.stdout, out_wide) if out is subprocess.PIPE else p.stdout
        if sink is not None:
            src = prev_out
            while True:
                chunk = src.read()
                if not chunk:
                    break
                out = pending_tap.pass_on(chunk) if pending_tap is not None else chunk
                if out:
                    sink.write(out)
                    bytes_out += len(out)
            rest = pending_tap.flush() if pending_tap is not None else b''
            if rest:
                sink.write(rest)
                bytes_out += len(rest)
            src.close()
        returncodes = [p.wait() for p in procs]
        for r in readers:
            r.join()
        for pump in pumps:
            pump.join()
        if deadline is not None and deadline.fired:
            deadline.fail()
        stderr = [r.text() for r in readers]
        _judge(steps, returncodes, stderr, pumps)
        for tap in taps:
            tap.finish()
        if then is not None:
            then()
        if deadline is not None:
            deadline.cancel()
            if deadline.fired:  # it fired while ``then`` returned
                deadline.fail()
    except BaseException as e:
        for p in procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except Exception:  # pylint: disable=broad-except
                pass
        if deadline is not None:
            deadline.cancel()
            if deadline.fired and isinstance(e, Exception) and not isinstance(e, DeadlineError):
                deadline.fail(e)  # what the kill ended (a dead client, a short read) is not the cause
        raise
    finally:
        stdin_f.close()
        if stdout_f is not None:
            stdout_f.close()
    return PipelineResult(steps, returncodes, stderr, time.monotonic() - started, bytes_out)


_EARLIER_RE = re.compile(r'^\[\.\.\. (\d+) earlier lines\]\n')


def _last_lines(err):
    """The end of a tool's stderr for an error message, saying how much came before."""
    detail = err.strip()
    m = _EARLIER_RE.match(detail)
    earlier = int(m.group(1)) if m else 0
    lines = (detail[m.end():] if m else detail).splitlines()
    if len(lines) > MESSAGE_LINES:
        earlier += len(lines) - MESSAGE_LINES
        lines = lines[-MESSAGE_LINES:]
    return ('[... %d earlier lines]\n' % earlier if earlier else '') + '\n'.join(lines)


def _judge(steps, returncodes, stderr, pumps):
    """Raise for the step that really failed. A SIGPIPE death is a consequence, not a cause,
    so a later step's own failure is reported before an earlier step's broken pipe."""
    failed = []
    for step, rc, err in zip(steps, returncodes, stderr):
        if rc not in step.ok_returncodes:
            failed.append((step, rc, err))
            continue
        for pat in step.error_patterns:
            m = pat.search(err)
            if m:
                failed.append((step, rc, err))
                break
    for pump in pumps:
        if pump.error is not None:
            raise ToolError('streaming between tools failed: %s' % pump.error)
    if not failed:
        return
    causes = [f for f in failed if f[1] != -signal.SIGPIPE] or failed
    step, rc, err = causes[0]
    if rc in step.ok_returncodes:
        what = '%s reported an error although it exited %s' % (step.name, rc)
    elif rc < 0:
        what = '%s was killed by signal %s' % (step.name, -rc)
    else:
        what = '%s failed with exit status %s' % (step.name, rc)
    msg = what + (': ' + _last_lines(err) if err.strip() else '')
    raise ToolError(msg, command=step.display(), rc=rc, stderr=err)


def run(argv, env=None, error_patterns=(), ok_returncodes=(0,), stdin_path=None, timeout=None, cwd=None):
    """Run one command; return (stdout, stderr). Stdout is for small outputs (versions, JSON);
    stderr is bounded like a pipeline's."""
    step = Step(argv, env=env, error_patterns=error_patterns, ok_returncodes=ok_returncodes, cwd=cwd)
    with (open(stdin_path, 'rb') if stdin_path else open(os.devnull, 'rb')) as stdin_f:
        try:
            p = subprocess.Popen(step.argv, stdin=stdin_f, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=_child_env(step.env), cwd=cwd, close_fds=True)
        except OSError as e:
            raise ToolError('could not start %s: %s' % (step.name, e), command=step.display())
        reader = _StderrReader(p.stderr)
        reader.start()
        try:
            out = p.stdout.read() if timeout is None else _read_with_deadline(p, timeout)
            p.stdout.close()
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise ToolError('%s timed out after %ss' % (step.name, timeout), command=step.display())
        reader.join()
    err = reader.text()
    _judge([step], [rc], [err], [])
    return out.decode('utf-8', 'replace'), err


def _read_with_deadline(p, timeout):
    """Read all of stdout, killing the process when the deadline passes."""
    fired = threading.Event()

    def expire():
        fired.set()
        p.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        out = p.stdout.read()
    finally:
        timer.cancel()
    if fired.is_set():
        raise subprocess.TimeoutExpired(p.args, timeout)
    return out


class private_dir(object):
    """A 0700 temporary directory for credential files, removed on exit whatever happens.

    Lives under ``base`` (default: the system temp dir). Files are created 0600 with O_EXCL.
    """

    def __init__(self, base=None, prefix='djangoops-'):
        self.base = base
        self.prefix = prefix
        self.path = None

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix=self.prefix, dir=self.base)  # mkdtemp is 0700
        return self

    def write(self, name, content):
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(content)
        return path

    def __exit__(self, *exc):
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        return False
