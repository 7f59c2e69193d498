"""The provider interface every transport's client shares: call, send, describe, subscribe, close.

A provider is what the published API calls a "client provider": SHMClient, NetworkClient and
the object connect() returns. ClientMethodsBase wraps any of them.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

from .methods import method_spec


def send_arguments(method: Union[Callable[..., Any], str], args: Any) -> tuple[str, Any]:
    """The method name and argument list of a published-API send(cmd, args)."""
    spec = method_spec(method)
    name = spec.name if spec is not None else str(method)
    if spec is not None and spec.encoder == "raw" and isinstance(args, (bytes, bytearray, memoryview)):
        return name, [args]  # the original API passes a raw method's bytes directly
    if args is None:
        return name, []
    if isinstance(args, (str, bytes, dict)) or not isinstance(args, (list, tuple)):
        raise TypeError(f"send() takes the arguments of {name!r} as a list, e.g. "
                        f"send(Service.{name}, [arg1, arg2])")
    return name, args


def split_send_options(kwargs: Any, timeout: Optional[float]) -> tuple[Optional[dict[str, Any]], Optional[float]]:
    # The published API is send(cmd, args, timeout): a number in third place is the timeout.
    if isinstance(kwargs, (int, float)) and not isinstance(kwargs, bool):
        if timeout is not None:
            raise TypeError("send() got the timeout twice")
        return None, float(kwargs)
    return kwargs, timeout


class ProviderMethods:
    """What every transport's client offers besides call(): the published API's send().

    A provider has call(name, args, kwargs, timeout=None), send(cmd, args, ...), describe(),
    subscribe(topics) and close(); SHMClient, NetworkClient and the object connect() returns
    all do, so a wrapper such as ClientMethodsBase never needs to know which it got.
    """

    def send(self, method: Union[Callable[..., Any], str], args: Any = (), kwargs: Optional[dict[str, Any]] = None,
             timeout: Optional[float] = None) -> Any:
        """Call `method` (Service.method or its name) with `args` (a list; a raw method's bytes
        may be given directly). send(cmd, args, 5.0) is the published form with a timeout."""
        kwargs, timeout = split_send_options(kwargs, timeout)
        name, args = send_arguments(method, args)
        return self.call(name, args, kwargs, timeout=timeout)  # type: ignore[attr-defined]
