"""Values on the wire: lossless for Python clients, seed 002's JSON for JSON clients."""
import json

import msgpack
import numpy
import pandas
import pytest

from aimm_services import json_representation as jr
from aimm_services import wire_values
from aimm_services.data_access import DataAccess
from aimm_services.errors import WireFormatError


def through_msgpack(value):
    packed = msgpack.packb(wire_values.encode(value), use_bin_type=True)
    return wire_values.decode(msgpack.unpackb(packed, raw=False))


def test_numpy_keeps_dtype_shape_and_byte_order():
    array = numpy.arange(24, dtype=">i2").reshape(2, 3, 4)
    back = through_msgpack(array)
    assert back.dtype == array.dtype and back.shape == (2, 3, 4)
    numpy.testing.assert_array_equal(back, array)
    back[0, 0, 0] = 5   # a normal writable array


def test_pandas_keeps_dtypes_index_and_names():
    frame = pandas.DataFrame(
        {"f": numpy.array([1.5, 2.5], dtype="float32"), "s": ["x", "y"],
         "n": pandas.array([1, None], dtype="Int64"),
         "t": pandas.to_datetime(["2024-01-01", "2024-01-02"])},
        index=pandas.Index([10, 20], name="key"))
    pandas.testing.assert_frame_equal(through_msgpack(frame), frame)
    series = pandas.Series([1, 2, 3], name="v", dtype="uint8",
                           index=pandas.date_range("2024-01-01", periods=3, tz="UTC"))
    pandas.testing.assert_series_equal(through_msgpack(series), series, check_freq=False)
    multi = pandas.DataFrame({"v": [1, 2]}, index=pandas.MultiIndex.from_tuples(
        [("a", 1), ("b", 2)], names=["l", "n"]))
    pandas.testing.assert_frame_equal(through_msgpack(multi), multi)


def test_containers_scalars_and_data_access():
    value = {"t": (1, "a"), 3: [numpy.float32(2.5)], "d": DataAccess("src", (1,), {"k": 2})}
    back = through_msgpack(value)
    assert back["t"] == (1, "a") and back[3][0].dtype == numpy.float32
    assert back["d"] == DataAccess("src", (1,), {"k": 2})
    assert wire_values.is_data_access(wire_values.encode(DataAccess("x")))


def test_unsupported_value_is_refused_with_its_type():
    with pytest.raises(WireFormatError, match="object"):
        wire_values.encode(object())


def test_seed_002_argument_forms():
    raw = {"type": "data_access", "name": "csv",
           "args": [{"type": "numpy_array", "data": [[1, 2]], "dtype": "int16"}],
           "kwargs": {"frame": {"type": "pandas_dataframe", "data": {"a": {"0": 1, "1": 2}}},
                      "series": {"type": "pandas_series", "data": [1.0, 2.0]},
                      "plain": {"type": "other", "x": 1}}}
    access = jr.arg_from_json(json.loads(json.dumps(raw)))
    assert isinstance(access, DataAccess) and access.name == "csv"
    assert access.args[0].dtype == numpy.int16 and access.args[0].shape == (1, 2)
    assert list(access.kwargs["frame"]["a"]) == [1, 2]
    assert access.kwargs["series"].tolist() == [1.0, 2.0]
    assert access.kwargs["plain"] == {"type": "other", "x": 1}


def test_seed_002_result_forms_are_json():
    frame = pandas.DataFrame({"a": [1.5, 2.5]}, index=["x", "y"])
    assert json.loads(json.dumps(jr.result_to_json(frame))) == {
        "type": "pandas_dataframe", "data": {"a": {"x": 1.5, "y": 2.5}}}
    assert jr.result_to_json(pandas.Series([1, 2])) == {"type": "pandas_series", "data": [1, 2]}
    array = jr.result_to_json(numpy.array([[1, 2]], dtype="uint8"))
    assert array == {"type": "numpy_array", "dtype": "uint8", "data": [[1, 2]]}
    assert jr.result_from_json(array).dtype == numpy.uint8
    assert jr.arg_to_json(DataAccess("x", (numpy.array([1.0]),), {})) == {
        "type": "data_access", "name": "x", "kwargs": {},
        "args": [{"type": "numpy_array", "dtype": "float64", "data": [1.0]}]}


def test_malformed_json_argument_names_its_path():
    with pytest.raises(WireFormatError, match=r"args\[0\].*missing \['dtype'\]"):
        jr.args_from_json([{"type": "numpy_array", "data": [1]}], {})
