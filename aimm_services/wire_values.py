"""Lossless encoding of plugin arguments and results into msgpack-safe values.

Python clients and the engine exchange these. Numpy arrays keep dtype and shape (raw bytes,
no per-element conversion), pandas objects keep dtypes, index and column labels, and
DataAccess values stay recognisable to the engine, which resolves them without decoding
anything else. Tagged values are dicts with the key "__aimm__", which plain user dicts
cannot collide with (a user dict that has that key is itself wrapped).
"""
from __future__ import annotations

import datetime
from typing import Any

import numpy
import pandas
from numpy.lib import format as npformat

from .data_access import DataAccess
from .errors import WireFormatError

TAG = "__aimm__"


def encode(value: Any) -> Any:
    """A Python value as msgpack-safe data (see module docstring for what is supported)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if -(2 ** 63) <= value < 2 ** 64:
            return value
        return {TAG: "bigint", "value": str(value)}
    if isinstance(value, float):
        return value
    if isinstance(value, DataAccess):
        return {TAG: "data_access", "name": value.name,
                "args": [encode(a) for a in value.args],
                "kwargs": {str(k): encode(v) for k, v in dict(value.kwargs).items()}}
    if isinstance(value, numpy.ndarray):
        return _encode_array(value)
    if isinstance(value, numpy.generic):
        return {TAG: "numpy_scalar", "array": _encode_array(numpy.asarray(value))}
    if isinstance(value, pandas.DataFrame):
        return {TAG: "dataframe", "index": _encode_index(value.index),
                "columns": _encode_index(value.columns),
                "data": [_encode_series_values(value.iloc[:, i]) for i in range(value.shape[1])]}
    if isinstance(value, pandas.Series):
        return {TAG: "series", "name": encode(value.name), "index": _encode_index(value.index),
                "data": _encode_series_values(value)}
    if isinstance(value, pandas.Index):
        return _encode_index(value)
    if isinstance(value, pandas.Timestamp):
        return {TAG: "timestamp", "value": value.isoformat()}
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if TAG not in value and all(isinstance(k, str) for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {TAG: "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise WireFormatError(
        f"cannot send a value of type {type(value).__module__}.{type(value).__qualname__}; "
        f"supported: None, bool, int, float, str, bytes, list, tuple, dict, numpy arrays and "
        f"scalars, pandas DataFrame/Series/Index/Timestamp, datetime, DataAccess")


def decode(data: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {k: decode(v) for k, v in data.items()}
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise WireFormatError(f"unknown value tag {tag!r}; client and server versions differ?")
    return decoder(data)


def is_data_access(data: Any) -> bool:
    """Whether encoded `data` is a DataAccess (the engine looks for these)."""
    return isinstance(data, dict) and data.get(TAG) == "data_access"


def _encode_array(array: numpy.ndarray) -> dict:
    if array.dtype.hasobject:
        return {TAG: "object_array", "shape": list(array.shape),
                "items": [encode(v) for v in array.ravel(order="C").tolist()]}
    return {TAG: "ndarray", "dtype": npformat.dtype_to_descr(array.dtype),
            "shape": list(array.shape), "data": numpy.ascontiguousarray(array).tobytes()}


def _decode_array(data: dict) -> numpy.ndarray:
    descr = data["dtype"]
    if isinstance(descr, list):  # structured dtypes come back as lists of lists
        descr = [tuple(field) for field in descr]
    dtype = npformat.descr_to_dtype(descr)
    # copy: frombuffer over bytes is read-only, and users expect a normal writable array
    return numpy.frombuffer(data["data"], dtype=dtype).reshape(data["shape"]).copy()


def _decode_object_array(data: dict) -> numpy.ndarray:
    items = [decode(v) for v in data["items"]]
    array = numpy.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(data["shape"])


def _encode_series_values(series: pandas.Series) -> dict:
    dtype = series.dtype
    if isinstance(dtype, numpy.dtype):
        return {"dtype": None, "values": _encode_array(series.to_numpy())}
    # extension dtypes (category, Int64, string, tz-aware datetimes): values as objects
    # with missing values as None, then restored with astype(dtype name)
    values = series.astype(object).where(series.notna(), None).to_numpy(dtype=object)
    return {"dtype": str(dtype), "values": _encode_array(values)}


def _decode_series_values(data: dict, index: pandas.Index, name: Any) -> pandas.Series:
    values = _decode_array_any(data["values"])
    series = pandas.Series(values, index=index, name=name, copy=False)
    if data["dtype"] is not None:
        series = series.astype(data["dtype"])
    return series


def _decode_array_any(data: dict) -> numpy.ndarray:
    return _decode_array(data) if data[TAG] == "ndarray" else _decode_object_array(data)


def _encode_index(index: pandas.Index) -> dict:
    if isinstance(index, pandas.RangeIndex):
        return {TAG: "index", "kind": "range", "start": index.start, "stop": index.stop,
                "step": index.step, "name": encode(index.name)}
    if isinstance(index, pandas.MultiIndex):
        return {TAG: "index", "kind": "multi",
                "levels": [_encode_index(index.get_level_values(i))
                           for i in range(index.nlevels)],
                "names": [encode(n) for n in index.names]}
    return {TAG: "index", "kind": "plain", "name": encode(index.name),
            "values": _encode_series_values(pandas.Series(index, copy=False))}


def _decode_index(data: dict) -> pandas.Index:
    kind = data["kind"]
    if kind == "range":
        return pandas.RangeIndex(data["start"], data["stop"], data["step"],
                                 name=decode(data["name"]))
    if kind == "multi":
        levels = [_decode_index(level) for level in data["levels"]]
        return pandas.MultiIndex.from_arrays(levels, names=[decode(n) for n in data["names"]])
    series = _decode_series_values(data["values"], None, None)
    return pandas.Index(series, name=decode(data["name"]), copy=False)


def _decode_dataframe(data: dict) -> pandas.DataFrame:
    index = _decode_index(data["index"])
    columns = _decode_index(data["columns"])
    series = [_decode_series_values(col, index, None) for col in data["data"]]
    frame = pandas.concat(series, axis=1) if series else pandas.DataFrame(index=index)
    frame.columns = columns
    return frame


def _decode_series(data: dict) -> pandas.Series:
    return _decode_series_values(data["data"], _decode_index(data["index"]), decode(data["name"]))


_DECODERS = {
    "bigint": lambda d: int(d["value"]),
    "data_access": lambda d: DataAccess(d["name"], tuple(decode(a) for a in d["args"]),
                                        {k: decode(v) for k, v in d["kwargs"].items()}),
    "ndarray": _decode_array,
    "object_array": _decode_object_array,
    "numpy_scalar": lambda d: _decode_array_any(d["array"])[()],
    "dataframe": _decode_dataframe,
    "series": _decode_series,
    "index": _decode_index,
    "timestamp": lambda d: pandas.Timestamp(d["value"]),
    "datetime": lambda d: datetime.datetime.fromisoformat(d["value"]),
    "tuple": lambda d: tuple(decode(v) for v in d["items"]),
    "dict": lambda d: {decode(k): decode(v) for k, v in d["items"]},
}
