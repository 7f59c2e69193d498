"""Faults of the shared-memory path found under attack (issue 16), each on real processes.

Rogue processes here write into the service segment as any process of the same user could.
The suite runs once per shared-memory path (compiled, and SPEEDYSVC_PURE_PYTHON=1 in CI); the
tests that differ by path say so.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import posix_ipc
import pytest

from speedysvc import CallTimeout, ProtocolError, connect, naming, serve
from speedysvc.shm import service_segment as ss
from support_services import Echo
from waiting import wait_until

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, **kwargs)


def call_in_thread(fn, join_s: float = 30.0):
    """Run fn in a thread; return its result or exception -- and fail if it hangs."""
    out = {}

    def run():
        try:
            out["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(join_s)
    assert not t.is_alive(), f"call still blocked after {join_s}s"
    return out


# -- 1: a client killed or stopped inside the queue's critical section -------------------
def test_a_lock_holder_that_is_stopped_or_killed_never_blocks_other_callers_past_their_timeout(scope):
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address, timeout=1.0) as c:
        assert c.echo("before") == "before!"
        # a same-user process takes the queue lock (as a client does while queueing a call)
        rogue = python(f"""
            import sys, time
            from speedysvc.shm.service_segment import ServiceSegment
            seg = ServiceSegment.open({scope!r}, "echo")
            assert seg.lock.acquire(5)
            print("locked", flush=True)
            time.sleep(600)
        """)
        try:
            assert rogue.stdout.readline().strip() == "locked"
            os.kill(rogue.pid, signal.SIGSTOP)
            out = call_in_thread(lambda: c.echo("while stopped"))
            if c.provider.segment.mode == ss.MODE_ATOMIC:
                assert out == {"result": "while stopped!"}  # the compiled queue takes no lock
            else:  # the fallback: the callers' timeouts hold, with an error that says why
                assert isinstance(out.get("error"), CallTimeout), out
                assert "stayed locked" in str(out["error"])
            os.kill(rogue.pid, signal.SIGKILL)  # the kernel releases its lock
            rogue.wait(10)
            assert wait_until(lambda: call_in_thread(lambda: c.echo("after")).get("result") == "after!",
                              timeout=10, message="calls to work again after the holder died")
        finally:
            if rogue.poll() is None:
                rogue.kill()
                rogue.wait(10)
            rogue.stdout.close()
            rogue.stdin.close()


def test_clients_killed_mid_call_again_and_again_never_hang_the_others(scope):
    with serve(Echo, workers=2, scope=scope) as svc, connect(Echo, svc.shm_address, timeout=5.0) as c:
        for kill in range(15):
            victim = python(f"""
                from speedysvc import connect
                from support_services import Echo
                c = connect(Echo, "shm://{scope}")
                print("calling", flush=True)
                while True:
                    c.echo_raw(b"x" * 100)
            """)
            try:
                assert victim.stdout.readline().strip() == "calling"
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
            finally:
                victim.stdout.close()
                victim.stdin.close()
            out = call_in_thread(lambda kill=kill: c.echo(kill))
            assert out == {"result": kill}, f"after kill {kill}: {out}"
        naming.sweep_dead_clients(scope)


# -- 2: call slots naming channels that are empty, tiny or garbage -------------------------
def test_slots_naming_empty_tiny_or_garbage_channels_never_kill_a_worker(scope, capfd):
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        worker = svc.worker_pids()[0]
        seg = ss.ServiceSegment.open(scope, "echo")
        me = os.getpid()
        made = []
        try:
            for no, size in enumerate([0, 64, 200, 4096], start=900_000):
                name = naming.channel_segment(scope, me, no, 1)
                shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=size)
                made.append(name)
                if size:
                    import mmap
                    m = mmap.mmap(shm.fd, size)
                    m[:] = random.Random(no).randbytes(size)
                    m.close()
                shm.close_fd()
                slot = seg.register(me, no, 1, time.monotonic() + 5)
                seg.post(slot, time.monotonic() + 5)
                made.append((slot, me << 32 | no))
            # a channel that looks real (its client pid, a semaphore, a waiting call) but
            # claims a request longer than itself
            from speedysvc.shm import channel as ch
            no = 900_100
            name = naming.channel_segment(scope, me, no, 1)
            liar = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096)
            made.append(name)
            import mmap
            import struct
            m = mmap.mmap(liar.fd, 4096)
            liar.close_fd()
            for word, value in ((ch.C_CLIENT_PID, me), (ch.C_REQ_LEN, 1 << 40), (ch.C_SEQ, 1),
                                (ch.C_STATE, ch.REQUEST)):
                struct.pack_into("<Q", m, word * 8, value)
            m.close()
            posix_ipc.Semaphore(naming.channel_base(scope, me, no), posix_ipc.O_CREX).close()
            made.append("sem:" + naming.channel_base(scope, me, no))
            slot = seg.register(me, no, 1, time.monotonic() + 5)
            made.append((slot, me << 32 | no))
            for _ in range(3):  # and the same again, and again
                for item in made:
                    if isinstance(item, tuple):
                        seg.post(item[0], time.monotonic() + 5)
            assert c.echo("still served") == "still served!"
            wait_until(lambda: seg.queue_depth() == 0, message="the forged calls to be taken")
            assert c.echo("and again") == "and again!"
            assert svc.worker_pids() == [worker]  # the same worker, never restarted
        finally:
            for item in made:
                if isinstance(item, tuple):
                    seg.unregister(*item)
                elif item.startswith("sem:"):
                    posix_ipc.unlink_semaphore(item[4:])
                else:
                    posix_ipc.unlink_shared_memory(item)
            seg.close()
    err = capfd.readouterr().err
    assert "cannot be mapped" in err or "is not a channel" in err, err[-2000:]
    assert "exceeds channel" in err, err[-2000:]


# -- 3: a supervisor killed with SIGKILL and started again ---------------------------------
OWNER = """
    import sys
    from speedysvc import serve
    from support_services import Echo
    svc = serve(Echo, scope={scope!r})
    print("up", flush=True)
    sys.stdin.read()
    svc.stop()
"""


def test_clients_follow_a_service_across_a_supervisor_sigkill_and_restart(scope):
    first = python(OWNER.format(scope=scope))
    second = None
    try:
        assert first.stdout.readline().strip() == "up"
        with connect(Echo, f"shm://{scope}", unavailable_after=10.0) as c:
            assert c.echo("first") == "first!"
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            second = python(OWNER.format(scope=scope))
            assert second.stdout.readline().strip() == "up"
            # the same client object: its segment was replaced without a shutdown flag
            assert c.echo("second") == "second!"
            assert c.echo("and on") == "and on!"
    finally:
        for proc in (first, second):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.communicate("", timeout=30)
            proc.stdout.close()
    naming.sweep_dead_clients(scope)


# -- 8: a corrupted segment header is detected and bounded ---------------------------------
def test_garbage_in_the_pending_bits_and_call_slots_costs_nobody_a_call(scope):
    """The layout-3 ring could be wedged by moving its tail ahead; layout 4 has no head or tail:
    garbage in the bitmap and slot table is validated away, calls keep working."""
    with serve(Echo, workers=2, scope=scope) as svc, connect(Echo, svc.shm_address, timeout=10) as c:
        assert c.echo("before") == "before!"
        workers = sorted(svc.worker_pids())
        seg = ss.ServiceSegment.open(scope, "echo")
        rnd = random.Random(8)
        q = seg.q
        for w in range(ss.PENDING_WORD, ss.PENDING_WORD + ss.PENDING_WORDS):
            q[w] = rnd.getrandbits(64)
        mine = c.provider.thread_channel().slot  # garbage everywhere but in this client's own slot
        for slot in range(ss.SLOT_COUNT):
            if slot != mine:
                base = ss.SLOTS_WORD + slot * ss.SLOT_WORDS
                q[base] = rnd.getrandbits(64)
                q[base + 1] = rnd.getrandbits(64)
        for _ in range(50):
            seg.queue_sem.release()
        for i in range(20):
            assert c.echo(i) == i
        assert sorted(svc.worker_pids()) == workers
        seg.close()


def test_a_garbage_method_table_is_a_clear_error_not_a_msgpack_exception(scope):
    with serve(Echo, workers=1, scope=scope) as svc:
        seg = ss.ServiceSegment.open(scope, "echo")
        saved = bytes(seg.seg.buf[ss.HEADER_BYTES:ss.HEADER_BYTES + 256])
        try:
            seg.seg.buf[ss.HEADER_BYTES:ss.HEADER_BYTES + 256] = random.Random(1).randbytes(256)
            with pytest.raises(ProtocolError, match="method table .* is corrupted.*restart"):
                connect("echo", svc.shm_address, connect_timeout=1)
            seg.q[ss.H_METHODS_LEN] = 10 ** 9
            with pytest.raises(ProtocolError, match="corrupted"):
                connect("echo", svc.shm_address, connect_timeout=1)
        finally:
            seg.seg.buf[ss.HEADER_BYTES:ss.HEADER_BYTES + 256] = saved
        seg.q[ss.H_MAGIC] = ss.MAGIC - ss.LAYOUT + 3  # a peer of an older layout
        try:
            with pytest.raises(ProtocolError, match="layout 3.*same speedysvc version"):
                connect("echo", svc.shm_address, connect_timeout=1)
        finally:
            seg.q[ss.H_MAGIC] = ss.MAGIC
            seg.close()


# -- 9: threads that end release their channels --------------------------------------------
def _worker_channel_mappings(pid: int, scope: str) -> int:
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for line in f if f"ssvc_{scope}_c" in line)


def test_threads_that_end_release_their_channels_without_being_told(scope):
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        assert c.echo("warm") == "warm!"
        worker = svc.worker_pids()[0]
        objects0 = len(naming.list_objects(scope))
        import psutil
        fds0 = psutil.Process().num_fds()
        for _batch in range(30):
            threads = [threading.Thread(target=c.echo, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wait_until(lambda: len(naming.list_objects(scope)) <= objects0,
                   message="channels of ended threads to be unlinked")
        assert psutil.Process().num_fds() <= fds0
        assert c.echo("idle now") == "idle now!"
        wait_until(lambda: _worker_channel_mappings(worker, scope) <= 2, timeout=10,
                   message="the worker to unmap channels of ended threads")
