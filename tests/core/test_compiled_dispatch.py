"""Every shape of raw and msgpack call, served by the compiled worker loop or handed to Python.

The compiled loop (speedysvc/shm/_fastpath.c, Worker.serve) serves plain raw and msgpack calls
without the interpreter's loop; anything unusual -- a result its quick encoding cannot take, an
exception, a reply that needs an overflow segment, out-of-band arrays, an unknown method -- must
reach the caller exactly as the Python dispatcher words it. The suite runs again with
SPEEDYSVC_PURE_PYTHON=1 in CI, where the same calls take the pure-Python path.
"""
from __future__ import annotations

import numpy as np
import pytest

from speedysvc import EncodingError, MethodNotFound, connect, naming, serve
from speedysvc.serve import new_scope
from speedysvc.serialisers import OUT_OF_BAND_MIN_BYTES
from speedysvc.shm.channel import INITIAL_CAPACITY
from support_services import EchoError, Shapes
from waiting import wait_until


@pytest.fixture(scope="module")
def running():
    with serve(Shapes, workers=1, tcp="127.0.0.1:0", scope=new_scope()) as svc:
        yield svc
    assert naming.list_objects(svc.scope) == []


@pytest.fixture(scope="module", params=["shm", "tcp"])
def client(request, running):
    address = running.shm_address if request.param == "shm" else running.tcp_address
    c = connect(Shapes, address)
    yield c
    c.close()


def test_plain_raw_and_msgpack_calls(client):
    assert client.raw_echo(b"\x00abc") == b"\x00abc"
    assert client.raw_echo(b"") == b""
    assert client.args_back(1) == [1, 2, [], {}]
    assert client.args_back("a", "b", 3, 4, k={"x": [None]}) == ["a", "b", [3, 4], {"k": {"x": [None]}}]


def test_raw_result_of_another_type_is_an_encoding_error(client):
    with pytest.raises(EncodingError, match="bytes, not str"):
        client.raw_to_str(b"text")
    assert client.raw_bytearray(b"still bytes-like") == b"still bytes-like"
    assert client.raw_echo(b"and the worker serves on") == b"and the worker serves on"


def test_exceptions_reach_the_caller_as_themselves(client):
    with pytest.raises(EchoError, match="raw went wrong"):
        client.raw_fail(b"raw went wrong")
    with pytest.raises(EchoError, match="msgpack went wrong"):
        client.fails("msgpack went wrong")
    with pytest.raises(EncodingError, match="object"):
        client.returns_object()
    with pytest.raises(MethodNotFound):
        client.provider.call("no_such_method", [])


def test_results_msgpack_cannot_pack_alone_take_the_general_path(client):
    assert sorted(client.returns_set([3, 1, 2])) == [1, 2, 3]
    for n in (3, OUT_OF_BAND_MIN_BYTES // 8 + 10):   # inline, then out of band
        arr = client.returns_array(n)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.int64
        assert np.array_equal(arr, np.arange(n))


def test_arguments_with_out_of_band_arrays(client):
    # a msgpack payload with arrays after its body is decoded by Python, not by the quick path
    arr = np.arange(OUT_OF_BAND_MIN_BYTES // 8 + 10, dtype=np.int64)
    back = client.args_back(arr)
    assert np.array_equal(back[0], arr) and back[1:] == [2, [], {}]


@pytest.mark.parametrize("size", [INITIAL_CAPACITY // 2, INITIAL_CAPACITY * 2, 3_000_000])
def test_replies_larger_than_the_channel(client, size):
    assert client.raw_big(str(size).encode()) == b"x" * size
    assert client.returns_big(size) == "y" * size
    assert client.raw_echo(b"small after large") == b"small after large"


def test_calls_are_counted_per_worker_and_per_method():
    # a service of its own: statistics are written about once a second, so counts left over
    # from other tests could still be on their way
    with serve(Shapes, workers=1, scope=new_scope()) as svc, connect(Shapes, svc.shm_address) as c:
        segment = svc.pool.segment
        for _ in range(50):
            c.raw_echo(b"counted")
        for _ in range(3):
            c.args_back("counted")
        with pytest.raises(EchoError):
            c.raw_fail(b"counted too")

        def table():
            (row,) = [w for w in segment.workers() if w["state"] in ("idle", "busy")]
            return row
        wait_until(lambda: (table()["calls"], table()["errors"]) == (54, 1), timeout=10,
                   message="the worker table counts 54 calls, 1 error")

        def stats():
            return segment.read_stats(table()["slot"])
        wait_until(lambda: {k: v[:2] for k, v in stats().items()}
                   == {"raw_echo": [50, 0], "args_back": [3, 0], "raw_fail": [1, 1]},
                   timeout=10, message="each method's own statistics count its calls and errors")
        assert {k: sum(v[2].values()) for k, v in stats().items()} == {
            "raw_echo": 50, "args_back": 3, "raw_fail": 1}  # one latency sample per call
