"""connect()'s method attributes over shared memory.

On the compiled path a raw or msgpack method is a _fastpath.Caller: it makes a steady-state
call without a Python frame and hands everything else to the Python path (before sending) or
to SHMClient._resume (after). These tests drive every hand-over a user can cause -- threads,
fork, close, overflow, growth, timeouts, a restarted service, re-entry -- and check that the
caller sees what the Python path would give. CI runs them again with SPEEDYSVC_PURE_PYTHON=1,
where the attributes are MethodProxy objects and the same assertions hold.
"""
from __future__ import annotations

import os
import threading

import pytest

from speedysvc import CallTimeout, ServiceUnavailable, connect, naming, serve
from speedysvc.client import MethodProxy
from speedysvc.shm import native
from speedysvc.shm.channel import INITIAL_CAPACITY
from support_services import Echo, Shapes
from waiting import wait_until


def test_raw_and_msgpack_attributes_are_compiled_callers_on_the_compiled_path(scope):
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        compiled = native.active()
        for name in ("echo", "echo_raw"):
            method = getattr(c, name)
            assert (type(method).__name__ == "Caller") == compiled, type(method)
            assert repr(method) == f"<remote method {name} of 'echo'>"
        assert isinstance(c.echo_json, MethodProxy)  # other encoders keep the Python proxy
        assert c.echo("a") == "a!" and c.echo("b", "?") == "b?" and c.echo("c", suffix="") == "c"
        assert c.echo_raw(b"\x00raw") == b"\x00raw"
        assert c.echo_raw(bytearray(b"bytes-like")) == b"bytes-like"  # not bytes: the Python path
        if compiled:  # this thread's route, armed by the first call
            assert c.provider._local.route.armed()


def test_with_timeout_gives_a_caller_whose_calls_time_out(scope, tmp_path):
    release = str(tmp_path / "release")
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        quick = c.block_until.with_timeout(0.3)
        assert "block_until" in repr(quick)
        try:
            with pytest.raises(CallTimeout, match="timed out after 0.3s"):
                quick(release, 60)
        finally:
            open(release, "w").close()  # the worker finishes the abandoned call
        # the next call gets its own reply, not the late one of the call that timed out
        assert c.echo.with_timeout(30)("after") == "after!"


def test_threads_sharing_one_attribute_each_get_their_own_replies(scope):
    with serve(Echo, workers=2, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        errors = []

        def run(tid: int) -> None:
            try:
                for i in range(300):
                    assert c.tagged(tid, i)[:2] == [tid, i]
                    assert c.echo_raw(b"%d:%d" % (tid, i)) == b"%d:%d" % (tid, i)
            except BaseException as exc:  # reported below, with the thread's number
                errors.append((tid, repr(exc)))
        threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert errors == []


def test_a_forked_child_calls_through_the_parents_attributes(scope):
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        assert c.echo("parent") == "parent!"
        pid = os.fork()
        if pid == 0:  # the child: its own channel, never the parent's
            code = 1
            try:
                ok = c.echo("child") == "child!" and c.echo_raw(b"child") == b"child"
                code = 0 if ok else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert c.echo("parent again") == "parent again!"


def test_overflowing_replies_and_growing_requests_then_steady_calls(scope):
    with serve(Shapes, workers=1, scope=scope) as svc, connect(Shapes, svc.shm_address) as c:
        size = INITIAL_CAPACITY * 2
        assert c.raw_big(str(size).encode()) == b"x" * size      # an overflow segment
        assert c.raw_echo(b"small") == b"small"                   # the channel grows first
        big = b"z" * (INITIAL_CAPACITY * 3)
        assert c.raw_echo(big) == big                             # a request longer than the channel
        assert c.args_back("x" * (INITIAL_CAPACITY * 3))[0] == "x" * (INITIAL_CAPACITY * 3)
        assert c.raw_echo(b"steady") == b"steady"
        assert c.args_back(1) == [1, 2, [], {}]


class Reentrant(dict):
    """A dict whose items() calls the service while its caller is packing it: msgpack calls
    items() for a dict subclass, so the inner call happens inside the outer call's pack."""

    def __init__(self, method, *args):
        super().__init__(*args)
        self.method = method
        self.inner = None

    def items(self):
        self.inner = self.method("inner")
        return super().items()


def test_a_call_made_while_the_same_method_packs_its_arguments(scope):
    with serve(Shapes, workers=1, scope=scope) as svc, connect(Shapes, svc.shm_address) as c:
        arg = Reentrant(c.args_back, {"k": 1})
        assert c.args_back(arg) == [{"k": 1}, 2, [], {}]
        assert arg.inner == ["inner", 2, [], {}]
        assert c.args_back(2) == [2, 2, [], {}]


def test_a_closed_client_and_a_service_stopped_and_started_again(scope):
    svc = serve(Echo, workers=1, scope=scope)
    c = connect(Echo, svc.shm_address, unavailable_after=10.0)
    try:
        assert c.echo("one") == "one!"
        svc.stop()
        svc = serve(Echo, workers=1, scope=scope)
        assert c.echo("two") == "two!"        # followed to the new segment
        assert c.echo_raw(b"two") == b"two"
        c.close()
        with pytest.raises(ServiceUnavailable, match="closed"):
            c.echo("three")
        with pytest.raises(ServiceUnavailable, match="closed"):
            c.echo_raw(b"three")
    finally:
        c.close()
        svc.stop()
    wait_until(lambda: not naming.list_objects(scope), message="every object of the scope to go")
