"""Every encoder round-trips every kind of value it supports, at every size, over shm and TCP."""
from __future__ import annotations

import numpy as np
import pytest

from speedysvc import EncodingError, connect, serve
from speedysvc.shm.channel import DATA_OFFSET, INITIAL_CAPACITY
from speedysvc.serialisers import OUT_OF_BAND_MIN_BYTES
from support_services import Echo

# sizes around the internal boundaries: the out-of-band array threshold, the channel's initial
# capacity (request + reply must fit), and the segment page size
BOUNDARY_SIZES = sorted({0, 1, 63, 64, 65, 4095, 4096, 4097,
                         OUT_OF_BAND_MIN_BYTES - 1, OUT_OF_BAND_MIN_BYTES, OUT_OF_BAND_MIN_BYTES + 1,
                         INITIAL_CAPACITY // 2 - 200, INITIAL_CAPACITY // 2 + 200,
                         INITIAL_CAPACITY - DATA_OFFSET - 1, INITIAL_CAPACITY - DATA_OFFSET,
                         INITIAL_CAPACITY, INITIAL_CAPACITY + 1, 1 << 20})


@pytest.fixture(scope="module")
def running():
    from speedysvc.serve import new_scope
    from speedysvc import naming
    # frames above the 64 MiB default are allowed here: test_100mb_payload sends one
    with serve(Echo, workers=2, tcp="127.0.0.1:0", scope=new_scope(), allow_insecure=True,
               tcp_options={"max_frame": 256 * 1024 * 1024}) as svc:
        yield svc
    assert naming.list_objects(svc.scope) == []


@pytest.fixture(scope="module", params=["shm", "tcp"])
def client(request, running):
    address = running.shm_address if request.param == "shm" else running.tcp_address
    c = connect(Echo, address)
    yield c
    c.close()


VALUES = [None, True, 0, -1, 2 ** 62, 1.5, "", "héllo ✓", b"", b"\x00\xff", [], [1, [2, [3]]],
          {"a": 1, "b": [None, "x"]}]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_msgpack_roundtrips_plain_values(client, value):
    assert client.echo(value, suffix="") == value


def test_json_passes_args_and_kwargs(client):
    assert client.echo_json(1, "two", [3], k={"x": None}) == [[1, "two", [3]], {"k": {"x": None}}]


def test_pickle_and_marshal_roundtrip_python_types(client):
    obj = {(1, 2): {3, 4}, "f": frozenset([5]), "c": complex(1, 2)}
    assert client.echo_pickle(obj) == obj
    assert client.echo_marshal((1, 2.5, "x", b"y", [None])) == (1, 2.5, "x", b"y", [None])


def test_defaults_and_keyword_arguments(client):
    assert client.echo("a") == "a!"
    assert client.echo("a", "?") == "a?"
    assert client.echo("a", suffix="...") == "a..."


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_raw_every_size_around_buffer_boundaries(client, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert client.echo_raw(data) == data


@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "uint16", "int64", "bool", "complex128", "<U3"])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4), (2, 3, 4), (OUT_OF_BAND_MIN_BYTES // 2,)])
def test_msgpack_numpy_keeps_dtype_and_shape(client, dtype, shape):
    arr = (np.arange(int(np.prod(shape)) or 0) % 3).astype(dtype).reshape(shape)
    back = client.echo(arr)
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert np.array_equal(back, arr)


def test_numpy_inside_structures_and_non_contiguous(client):
    arr = np.arange(40, dtype=np.int32).reshape(5, 8)[:, ::2]  # not contiguous
    back = client.echo({"a": arr, "list": [arr.T, np.float32(2.5)]})
    assert np.array_equal(back["a"], arr) and back["a"].dtype == np.int32
    assert np.array_equal(back["list"][0], arr.T)
    assert back["list"][1] == 2.5


def test_8mb_float64_array_roundtrip(client):
    arr = np.random.default_rng(1).standard_normal(1_000_000)
    back = client.echo(arr)
    assert back.dtype == np.float64 and np.array_equal(back, arr)
    info = client.array_info(arr)
    assert info == {"dtype": "<f8", "shape": [1_000_000], "sum": pytest.approx(float(arr.sum()))}


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_100mb_payload(running, transport):
    data = np.random.default_rng(2).integers(0, 255, 100 * 1024 * 1024 + 17, dtype=np.uint8).tobytes()
    address = running.shm_address if transport == "shm" else running.tcp_address
    with connect(Echo, address, timeout=120) as c:
        assert c.echo_raw(data) == data
        assert c.echo_raw(b"small after large") == b"small after large"


def test_object_arrays_are_refused_with_a_clear_error(client):
    with pytest.raises(EncodingError, match="dtype object"):
        client.echo(np.array([{"x": 1}], dtype=object))


def test_raw_method_refuses_non_bytes(client):
    with pytest.raises(EncodingError, match="bytes"):
        client.echo_raw("a string")
