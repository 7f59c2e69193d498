"""Exceptions across the wire: type, message, arguments and the remote traceback text.

The receiving side re-creates the exception type only if its module is already imported
(never imports a module named by a peer) and it is an Exception subclass; otherwise it
raises RemoteError carrying the same information.
"""
from __future__ import annotations

import sys
import traceback
from typing import Any

from . import errors


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    args: list[Any] | None
    try:
        args = [a for a in exc.args if isinstance(a, (str, int, float, bool, type(None)))]
        if len(args) != len(exc.args):
            args = None
    except Exception:
        args = None
    return {"type": cls.__qualname__, "module": cls.__module__, "message": str(exc),
            "args": args,
            "traceback": "".join(traceback.format_exception(cls, exc, exc.__traceback__))}


def error_dict(cls: type, message: str) -> dict[str, Any]:
    """A transport-level error (unknown method, refused encoder...) in the same shape."""
    return {"type": cls.__qualname__, "module": cls.__module__, "message": message,
            "args": [message], "traceback": ""}


def dict_to_exception(info: dict[str, Any]) -> BaseException:
    type_name = str(info.get("type", "Exception"))
    module_name = str(info.get("module", "builtins"))
    message = str(info.get("message", ""))
    tb = str(info.get("traceback", ""))
    cls = _find_class(module_name, type_name)
    exc: BaseException | None = None
    if cls is not None:
        args = info.get("args")
        try:
            exc = cls(*args) if isinstance(args, list) else cls(message)
        except Exception:
            try:
                exc = cls(message)
            except Exception:
                exc = None
    if exc is None:
        exc = errors.RemoteError(f"{module_name}.{type_name}", message, tb)
    try:
        exc.remote_traceback = tb  # type: ignore[attr-defined]  # any exception; AttributeError is caught
        if tb and hasattr(exc, "add_note"):  # shown when the client's traceback is printed
            exc.add_note("Remote traceback (most recent call last):\n" + tb.rstrip())
    except AttributeError:
        pass
    return exc


def _find_class(module_name: str, qualname: str) -> type[Exception] | None:
    module = sys.modules.get(module_name)
    if module is None:
        return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if isinstance(obj, type) and issubclass(obj, Exception):
        return obj
    return None
