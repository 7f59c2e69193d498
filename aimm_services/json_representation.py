"""Seed 002's JSON representations, for clients that speak JSON.

Arguments ("object_arg"): a dict with `type` of
  data_access       {name, args, kwargs}  -> DataAccess (args/kwargs are object_args again)
  numpy_array       {data, dtype}         -> numpy.array(data, dtype=dtype)
  pandas_dataframe  {data}                -> pandas.DataFrame.from_dict(data)  (to_dict form)
  pandas_series     {data}                -> pandas.Series(data)               (tolist form)
lists and plain objects are searched at any depth, so a tagged array inside a list or a
dict argument is converted too; anything else is passed through unchanged.

Results: numpy arrays -> {type: numpy_array, dtype, data: tolist()}, DataFrames ->
{type: pandas_dataframe, data: to_dict()}, Series -> {type: pandas_series, data: tolist()},
also when nested in lists, tuples and dicts (a dict of arrays keeps each array's tag and
dtype); everything else as plain JSON. JSON cannot carry a Series index or non-string dict keys;
Python clients use `wire_values`, which keeps them.
"""
from __future__ import annotations

import base64
import datetime
import math
from typing import Any

import numpy
import pandas

from .data_access import DataAccess
from .errors import WireFormatError

OBJECT_ARG_TYPES = ("data_access", "numpy_array", "pandas_dataframe", "pandas_series")
_REQUIRED = {"data_access": ("name", "args", "kwargs"), "numpy_array": ("data", "dtype"),
             "pandas_dataframe": ("data",), "pandas_series": ("data",)}


def arg_from_json(arg: Any, path: str = "arg") -> Any:
    """A JSON argument as the Python value it stands for (seed 002 object_arg)."""
    if isinstance(arg, list):
        return [arg_from_json(a, f"{path}[{i}]") for i, a in enumerate(arg)]
    if not isinstance(arg, dict):
        return arg
    if arg.get("type") not in OBJECT_ARG_TYPES:
        return {k: arg_from_json(v, f"{path}.{k}") for k, v in arg.items()}
    kind = arg["type"]
    missing = [key for key in _REQUIRED[kind] if key not in arg]
    if missing:
        raise WireFormatError(f"{path}: a {kind} argument needs keys {list(_REQUIRED[kind])}; "
                              f"missing {missing}")
    try:
        if kind == "data_access":
            if not isinstance(arg["args"], list) or not isinstance(arg["kwargs"], dict):
                raise WireFormatError(f"{path}: data_access args must be a list and kwargs "
                                      f"an object")
            return DataAccess(
                str(arg["name"]),
                tuple(arg_from_json(a, f"{path}.args[{i}]") for i, a in enumerate(arg["args"])),
                {k: arg_from_json(v, f"{path}.kwargs.{k}") for k, v in arg["kwargs"].items()})
        if kind == "numpy_array":
            return numpy.array(arg["data"], dtype=arg["dtype"])
        if kind == "pandas_dataframe":
            return pandas.DataFrame.from_dict(arg["data"])
        return pandas.Series(arg["data"])
    except WireFormatError:
        raise
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"{path}: invalid {kind} argument: {exc}") from exc


def args_from_json(args: list, kwargs: dict) -> tuple[tuple, dict]:
    if not isinstance(args, list):
        raise WireFormatError(f"args must be a JSON array, found {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise WireFormatError(f"kwargs must be a JSON object, found {type(kwargs).__name__}")
    return (tuple(arg_from_json(a, f"args[{i}]") for i, a in enumerate(args)),
            {k: arg_from_json(v, f"kwargs.{k}") for k, v in kwargs.items()})


def arg_to_json(value: Any) -> Any:
    """What a JSON client sends for `value` (the inverse of `arg_from_json`)."""
    if isinstance(value, DataAccess):
        return {"type": "data_access", "name": value.name,
                "args": [arg_to_json(a) for a in value.args],
                "kwargs": {k: arg_to_json(v) for k, v in dict(value.kwargs).items()}}
    return result_to_json(value)  # arrays, frames and series look the same either way


def result_to_json(value: Any) -> Any:
    """A prediction (or any plugin result) as seed 002's JSON."""
    if isinstance(value, DataAccess):     # a NamedTuple: before the tuple case
        return arg_to_json(value)
    if isinstance(value, numpy.ndarray):
        return {"type": "numpy_array", "dtype": str(value.dtype), "data": to_plain_json(value)}
    if isinstance(value, pandas.DataFrame):
        return {"type": "pandas_dataframe", "data": to_plain_json(value.to_dict())}
    if isinstance(value, pandas.Series):
        return {"type": "pandas_series", "data": to_plain_json(value.tolist())}
    if isinstance(value, (list, tuple)):
        return [result_to_json(v) for v in value]
    if isinstance(value, dict):
        return {_json_key(k): result_to_json(v) for k, v in value.items()}
    return to_plain_json(value)


def result_from_json(value: Any) -> Any:
    """What a JSON client makes of a result (numpy dtype restored when given), at any depth."""
    if isinstance(value, list):
        return [result_from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if kind == "numpy_array" and "data" in value:
        return numpy.array(value["data"], dtype=value.get("dtype"))
    if kind == "pandas_dataframe" and "data" in value:
        return pandas.DataFrame.from_dict(value["data"])
    if kind == "pandas_series" and "data" in value:
        return pandas.Series(value["data"])
    return {k: result_from_json(v) for k, v in value.items()}


def to_plain_json(value: Any) -> Any:
    """Plain JSON data: numpy scalars/arrays as Python numbers/lists, timestamps as ISO text,
    bytes as base64, dict keys as strings, NaN as null."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) else float(value)
    if isinstance(value, numpy.ndarray):
        return to_plain_json(value.tolist())
    if isinstance(value, numpy.generic):
        return to_plain_json(value.item())
    if isinstance(value, (pandas.Timestamp, datetime.datetime, datetime.date)):
        return value.isoformat()
    if value is pandas.NaT or value is pandas.NA:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, DataAccess):     # a NamedTuple: before the tuple case
        return arg_to_json(value)
    if isinstance(value, (list, tuple)):
        return [to_plain_json(v) for v in value]
    if isinstance(value, dict):
        return {_json_key(k): to_plain_json(v) for k, v in value.items()}
    if isinstance(value, (pandas.DataFrame, pandas.Series, DataAccess)):
        return result_to_json(value) if not isinstance(value, DataAccess) else arg_to_json(value)
    raise WireFormatError(f"cannot represent {type(value).__qualname__} as JSON")


def _json_key(key: Any) -> str:
    plain = to_plain_json(key)
    return plain if isinstance(plain, str) else str(plain)
