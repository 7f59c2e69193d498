"""Semantics of the shared-memory call path that both paths (compiled and fallback) keep:
closing a client from another thread mid-call, and zero-copy array arguments."""
from __future__ import annotations

import threading

import numpy as np

from speedysvc import ServiceUnavailable, connect, naming, serve
from support_services import ArrayViews, Echo
from waiting import wait_until


def test_closing_a_client_from_another_thread_ends_its_call_in_progress(scope, tmp_path):
    release = str(tmp_path / "release")
    with serve(Echo, workers=1, scope=scope) as svc:
        c = connect(Echo, svc.shm_address)
        assert c.echo("warm") == "warm!"
        outcome = {}

        def slow():
            try:
                outcome["result"] = c.block_until(release, 60)
            except ServiceUnavailable as exc:
                outcome["error"] = exc
        t = threading.Thread(target=slow)
        t.start()
        try:
            wait_until(lambda: any(w["state"] == "busy" for w in c.provider.segment.workers()),
                       message="the call to run")
            c.close()
            t.join(10)
        finally:
            open(release, "w").close()  # the worker finishes the abandoned call; stop is prompt
        assert not t.is_alive(), "the call outlived the client's close"
        assert "closed during the call" in str(outcome.get("error")), outcome
    wait_until(lambda: not naming.list_objects(scope), message="every object of the scope to go")


def test_zero_copy_methods_read_the_array_in_place_and_others_get_a_copy(scope):
    arr = np.arange(1_000_000, dtype=np.float64)
    with serve(ArrayViews, workers=1, scope=scope) as svc, connect(ArrayViews, svc.shm_address) as c:
        for _ in range(3):
            owns, total = c.in_place(arr)
            assert not owns and total == float(arr.sum())
            owns, total = c.copied(arr)
            assert owns and total == float(arr.sum())


def test_call_encoded_forwards_encoded_arguments_and_returns_the_encoded_reply(scope):
    """The entry point for fronts that relay calls (TCP) without decoding them."""
    from speedysvc import dispatch, serialisers
    msgpack = serialisers.SERIALISERS["msgpack"]
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        payload = serialisers.join_parts(msgpack.encode_call(["hi"], {"suffix": "?"}))
        reply = c.provider.call_encoded("echo", payload, timeout=10)
        assert isinstance(reply, bytes)
        assert dispatch.decode_reply(memoryview(reply), msgpack) == "hi?"
        error = c.provider.call_encoded("fail_builtin", serialisers.join_parts(msgpack.encode_call(["x"], {})))
        try:
            dispatch.decode_reply(memoryview(error), msgpack)
        except ValueError as exc:
            assert "x" in str(exc)
        else:
            raise AssertionError("the remote exception did not come back")
