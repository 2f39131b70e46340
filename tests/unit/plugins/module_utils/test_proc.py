# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pipeline runner's judgement: which step failed, and why, with coreutils as the processes."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import threading
import time

import pytest

from ansible_collections.djangoops.maintenance.plugins.module_utils import _proc
from ansible_collections.djangoops.maintenance.plugins.module_utils._proc import (
    Step, TailTap, ToolError, private_dir, run, run_pipeline)


class Sink(object):
    def __init__(self):
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data):
        self.h.update(data)
        self.n += len(data)


def test_pipeline_streams_through_steps_into_sink():
    sink = Sink()
    r = run_pipeline([Step(['seq', '1', '100000']), Step(['gzip', '-1', '-c']), Step(['gzip', '-d', '-c'])], sink=sink)
    expected = ''.join('%d\n' % i for i in range(1, 100001)).encode()
    assert sink.n == len(expected) == r.bytes_out
    assert sink.h.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert r.returncodes == [0, 0, 0]


def test_first_real_failure_is_reported_not_the_broken_pipe():
    # head exits early; seq then dies of SIGPIPE. The failure that matters is `false` later on.
    with pytest.raises(ToolError) as e:
        run_pipeline([Step(['seq', '1', '10000000']), Step(['head', '-c', '10']), Step(['false'])], sink=Sink())
    assert e.value.command == 'false'
    assert 'false failed with exit status 1' in str(e.value)


def test_a_dying_producer_fails_the_pipeline_even_if_consumers_succeed():
    with pytest.raises(ToolError) as e:
        run_pipeline([Step(['sh', '-c', 'echo partial; exit 3'], name='dumper'), Step(['cat'])], sink=Sink())
    assert 'dumper failed with exit status 3' in str(e.value)


def test_error_on_stderr_fails_a_step_that_exits_zero():
    with pytest.raises(ToolError) as e:
        run_pipeline([Step(['sh', '-c', 'echo data; echo "mysqldump: Got error: 2013" >&2; exit 0'],
                           error_patterns=[r'Got error'], name='mysqldump')], sink=Sink())
    assert 'mysqldump reported an error although it exited 0' in str(e.value)
    assert 'Got error: 2013' in str(e.value)


def test_killed_step_is_named_with_its_signal():
    with pytest.raises(ToolError) as e:
        run_pipeline([Step(['sh', '-c', 'kill -9 $$'], name='pg_dump'), Step(['cat'])], sink=Sink())
    assert 'pg_dump was killed by signal 9' in str(e.value)


def test_tap_sees_the_stream_between_steps_and_can_veto():
    class FooterTap(TailTap):
        def finish(self):
            if not self.tail.rstrip().endswith(b'-- done'):
                raise ToolError('dump has no completion footer')

    tap = FooterTap()
    sink = Sink()
    run_pipeline([Step(['printf', 'a\\nb\\n-- done\\n']), tap, Step(['gzip', '-c'])], sink=sink)
    assert tap.total == len(b'a\nb\n-- done\n') and sink.n > 0
    with pytest.raises(ToolError, match='no completion footer'):
        run_pipeline([Step(['printf', 'a\\nb\\n']), FooterTap(), Step(['gzip', '-c'])], sink=Sink())
    trailing = FooterTap()
    run_pipeline([Step(['printf', 'x\\n-- done\\n']), trailing], sink=Sink())
    assert trailing.tail.endswith(b'-- done\n')


def _pipe_of(argv):
    import subprocess
    p = subprocess.Popen(argv, stdout=subprocess.PIPE)
    return p, _proc._widen_pipe(p.stdout)


def test_a_reader_of_small_writes_takes_them_in_batches_and_intact():
    # Dump tools write a few KiB at a time. A reader woken for every write spends its CPU on wake-ups,
    # so the pipes between steps are widened and a reader pauses after a short read: it takes the
    # writes in batches (here ~2000 writes, 0.2 ms apart: without the pause, about one read per write).
    writer = ('import os, time\n'
              'for i in range(2000):\n'
              '    os.write(1, (b"%06d" % i) * 512)\n'
              '    time.sleep(0.0002)\n')
    p, wide = _pipe_of([sys.executable, '-c', writer])
    reader = _proc._PipeReader(p.stdout, wide)
    data, reads = [], 0
    while True:
        chunk = reader.read()
        if not chunk:
            break
        reads += 1
        data.append(bytes(chunk))
    reader.close()
    assert p.wait() == 0
    assert b''.join(data) == b''.join((b'%06d' % i) * 512 for i in range(2000))
    if sys.platform.startswith('linux'):
        assert wide
        assert reads < 1000, reads


def test_pipeline_with_a_tap_passes_small_writes_through_intact():
    writer = ('import os\n'
              'for i in range(4000):\n'
              '    os.write(1, (b"%06d" % i) * 512)\n')
    sink = Sink()
    tap = TailTap()
    run_pipeline([Step([sys.executable, '-c', writer]), tap, Step(['cat'])], sink=sink)
    expected = b''.join((b'%06d' % i) * 512 for i in range(4000))
    assert tap.total == sink.n == len(expected)
    assert sink.h.hexdigest() == hashlib.sha256(expected).hexdigest()


@pytest.mark.parametrize('how', ['splice', 'copy', 'splice refused'])
def test_a_counting_tap_between_steps_counts_and_passes_everything(monkeypatch, how):
    # Between two steps a CountingTap's stream is moved with splice(2) where it can be (Linux), copied
    # through Python where it cannot; either way every byte arrives, in order, and is counted.
    if how == 'copy':
        monkeypatch.setattr(_proc, '_SPLICE', None)
    elif how == 'splice refused':
        def refuse(*args):
            raise OSError(errno.EINVAL, 'Invalid argument')
        monkeypatch.setattr(_proc, '_SPLICE', refuse)
    elif _proc._SPLICE is None:
        pytest.skip('no splice(2) here')
    calls = []
    if how == 'splice':
        real = _proc._SPLICE

        def counted(*args):
            calls.append(1)
            return real(*args)
        monkeypatch.setattr(_proc, '_SPLICE', counted)
    writer = ('import os\n'
              'for i in range(3000):\n'
              '    os.write(1, (b"%06d" % i) * 700)\n')
    expected = b''.join((b'%06d' % i) * 700 for i in range(3000))
    tap = _proc.CountingTap()
    sink = Sink()
    run_pipeline([Step([sys.executable, '-c', writer]), tap, Step(['gzip', '-1', '-c']), Step(['gzip', '-d', '-c'])],
                 sink=sink)
    assert tap.total == sink.n == len(expected)
    assert sink.h.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert bool(calls) == (how == 'splice')


def test_stdin_file_and_stdout_file(tmp_path):
    src = tmp_path / 'in'
    src.write_bytes(os.urandom(300000))
    out = tmp_path / 'out'
    run_pipeline([Step(['gzip', '-c']), Step(['gzip', '-d', '-c'])], stdin_path=str(src), stdout_path=str(out))
    assert out.read_bytes() == src.read_bytes()


def test_sink_failure_kills_the_processes():
    class FullDisk(object):
        def write(self, data):
            raise OSError(28, 'No space left on device')

    with pytest.raises(OSError, match='No space left'):
        run_pipeline([Step(['yes'])], sink=FullDisk())


def test_children_run_in_the_c_locale_with_extra_env():
    out, _err = run(['sh', '-c', 'echo "$LC_ALL $PGPASSFILE"'], env={'PGPASSFILE': '/x'})
    assert out.strip() == 'C.UTF-8 /x'


def test_run_reports_missing_tool_and_timeout():
    with pytest.raises(ToolError, match='could not start'):
        run(['/nonexistent/tool'])
    with pytest.raises(ToolError, match='timed out after 1s'):
        run(['sleep', '5'], timeout=1)


def test_a_tool_that_never_writes_is_stopped_at_the_timeout():
    # As pg_dump waiting for a table lock: nothing comes out, so the reader would wait for ever.
    started = time.monotonic()
    with pytest.raises(ToolError, match=r'timed out after 1s and stopped \(still running: waiter, gzip\)') as e:
        run_pipeline([Step(['sleep', '60'], name='waiter'), Step(['gzip', '-c'])], sink=Sink(), timeout=1)
    assert time.monotonic() - started < 10
    assert 'sleep 60 | ' in e.value.command


def test_a_blocked_sink_is_stopped_through_on_timeout_and_then_is_inside_the_deadline():
    # As the MySQL loader waiting on a client blocked by a lock: the sink takes nothing more until
    # on_timeout (called from the deadline's thread) ends its wait; the error is the timeout, not the
    # sink's own complaint about it.
    released = threading.Event()

    class BlockedSink(object):
        def write(self, data):
            released.wait(60)
            raise OSError(errno.EPIPE, 'client gone')

    started = time.monotonic()
    with pytest.raises(ToolError, match='timed out after 1s') as e:
        run_pipeline([Step(['yes'])], sink=BlockedSink(), timeout=1, on_timeout=released.set)
    assert time.monotonic() - started < 10 and released.is_set()
    assert isinstance(e.value.__cause__, OSError)

    # ``then`` (loading still under way after the stream ended) counts against the same timeout.
    released.clear()

    def then():
        released.wait(60)

    with pytest.raises(ToolError, match=r'timed out after 1s and stopped \(still running: none of the tools'):
        run_pipeline([Step(['echo', 'x'])], sink=Sink(), timeout=1, then=then, on_timeout=released.set)
    assert released.is_set()


def test_a_step_started_after_the_time_ran_out_is_stopped_too(monkeypatch):
    # The deadline kills what it finds running; a step that starts just after must not outlive it.
    real_popen = _proc.subprocess.Popen

    def slow_popen(*args, **kw):
        time.sleep(0.3)
        return real_popen(*args, **kw)

    monkeypatch.setattr(_proc.subprocess, 'Popen', slow_popen)
    started = time.monotonic()
    with pytest.raises(ToolError, match='timed out after 0.1s'):
        run_pipeline([Step(['sleep', '60']), Step(['sleep', '60'])], sink=Sink(), timeout=0.1)
    assert time.monotonic() - started < 10


def test_a_pipeline_that_ends_in_time_is_not_touched_by_its_deadline():
    calls = []
    sink = Sink()
    r = run_pipeline([Step(['seq', '1', '1000']), Step(['cat'])], sink=sink, timeout=5,
                     then=lambda: calls.append('then'), on_timeout=lambda: calls.append('timeout'))
    assert r.returncodes == [0, 0] and sink.n == len(''.join('%d\n' % i for i in range(1, 1001)))
    time.sleep(5.5)  # past the deadline: it was cancelled, nothing fires late
    assert calls == ['then']


def test_stderr_is_bounded():
    with pytest.raises(ToolError) as e:
        run(['sh', '-c', 'seq 1 100000 >&2; exit 1'])
    assert len(str(e.value)) < 10000
    assert 'earlier lines' in str(e.value) and '100000' in str(e.value)


def test_find_tool():
    assert _proc.find_tool('sh').endswith('/sh')
    assert _proc.find_tool('no-such-tool-here', required=False) is None
    with pytest.raises(ToolError, match="'no-such-tool-here' was not found"):
        _proc.find_tool('no-such-tool-here')


def test_private_dir_is_private_and_removed():
    with private_dir() as d:
        path = d.write('pgpass', 'secret')
        assert stat.S_IMODE(os.stat(d.path).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with pytest.raises(FileExistsError):
            d.write('pgpass', 'again')
        kept = d.path
    assert not os.path.exists(kept)
    with pytest.raises(RuntimeError):
        with private_dir() as d:
            kept = d.path
            raise RuntimeError('boom')
    assert not os.path.exists(kept)


def test_display_quotes_arguments():
    assert _proc.display(['pg_dump', '--dbname', "it's a db"]) == "pg_dump --dbname 'it'\"'\"'s a db'"
