"""Service definitions: ServerMethodsBase and the per-method encoder decorators.

    class Echo(ServerMethodsBase):
        name = "echo"; port = 5555
        @msgpack_method
        def echo(self, data, suffix="!"): ...

A decorated method stays an ordinary Python function (so it can be unit-tested directly) with
a `MethodSpec` attached; `Echo.echo.as_rpc()` gives a client-side stub for ClientMethodsBase.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from . import serialisers

_SPEC_ATTR = "_speedysvc_method"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    encoder: str
    signature: inspect.Signature = field(compare=False)
    zero_copy: bool = False
    doc: str = ""

    @property
    def serialiser(self) -> serialisers.Serialiser:
        return serialisers.SERIALISERS[self.encoder]

    def describe(self) -> dict[str, Any]:
        params = []
        for p in list(self.signature.parameters.values())[1:]:  # drop self
            params.append({"name": p.name, "kind": p.kind.name,
                           "default": None if p.default is p.empty else repr(p.default),
                           "required": p.default is p.empty
                           and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)})
        return {"encoder": self.encoder, "params": params, "doc": self.doc}


def method_spec(fn: Any) -> Optional[MethodSpec]:
    return getattr(fn, _SPEC_ATTR, None)


def _make_decorator(encoder: str) -> Callable[..., Any]:
    def decorator(fn: Optional[Callable[..., Any]] = None, *, zero_copy: bool = False) -> Callable[..., Any]:
        def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
            spec = MethodSpec(f.__name__, encoder, inspect.signature(f), zero_copy,
                              inspect.getdoc(f) or "")
            setattr(f, _SPEC_ATTR, spec)
            f.as_rpc = lambda: _rpc_stub(f, spec)  # type: ignore[attr-defined]  # a function takes attributes
            return f
        return wrap(fn) if fn is not None else wrap
    decorator.__name__ = f"{encoder}_method"
    decorator.__doc__ = f"Expose a method whose arguments and result are encoded with {encoder}."
    return decorator


raw_method = _make_decorator("raw")
json_method = _make_decorator("json")
msgpack_method = _make_decorator("msgpack")
pickle_method = _make_decorator("pickle")
marshal_method = _make_decorator("marshal")


def _rpc_stub(fn: Callable[..., Any], spec: MethodSpec) -> Callable[..., Any]:
    """A function for a ClientMethodsBase subclass body: checks arguments locally, then sends."""
    client_sig = spec.signature

    def stub(self: Any, *args: Any, **kwargs: Any) -> Any:
        client_sig.bind(self, *args, **kwargs)  # TypeError here, not a round trip later
        return self.send(fn, args, kwargs)

    stub.__name__ = spec.name
    stub.__doc__ = spec.doc
    stub.__signature__ = client_sig  # type: ignore[attr-defined]  # what inspect.signature() reads
    return stub


class ServerMethodsBase:
    """Base class of a service. Subclasses set a unique `name` and `port`.

    `allow_insecure_serialisation` (or the .ini key force_insecure_serialisation) lets pickle and
    marshal methods be called over TCP; they are refused there by default.
    """

    name: Optional[str] = None
    port: Optional[int] = None
    allow_insecure_serialisation: bool = False

    def __init__(self, logger_client: Any = None):
        self.logger_client = logger_client
        # set by what serves the instance (a worker, serve(), a Ray replica) before on_start
        self.speedysvc_publisher: Any = None

    @property
    def scope(self) -> Optional[str]:
        """The scope this service is served in: connect(Other, f"shm://{self.scope}") reaches a
        sibling service of the same supervisor (plain "shm://" does too, inside a worker)."""
        publisher = getattr(self, "speedysvc_publisher", None)
        return publisher.ring.scope if publisher is not None else None

    def publish(self, topic: "str | int", payload: Any = None) -> int:
        """Publish an event to subscribers of `topic`; returns its per-topic sequence number."""
        publisher = getattr(self, "speedysvc_publisher", None)
        if publisher is None:
            raise RuntimeError("publish() is only available while the service is being served")
        seq: int = publisher.publish(str(topic), payload)
        return seq

    def on_start(self) -> None:
        """Called in each worker after the instance is created, before the first call."""

    def on_stop(self) -> None:
        """Called in each worker when it stops gracefully."""

    @classmethod
    def service_name(cls) -> str:
        return cls.name or cls.__name__

    @classmethod
    def methods(cls) -> dict[str, MethodSpec]:
        found = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                spec = method_spec(value)
                if spec is not None:
                    found[attr] = spec
        return found

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.service_name(), "port": cls.port,
                "allow_insecure_serialisation": bool(cls.allow_insecure_serialisation),
                "methods": {name: spec.describe() for name, spec in cls.methods().items()}}


def create_instance(service_cls: type[ServerMethodsBase]) -> ServerMethodsBase:
    """Instantiate a service class, passing a logger for classes written for the old signature."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(service_cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    if len(params) >= 2:
        import logging
        instance = service_cls(logging.getLogger(service_cls.service_name()))
    else:
        instance = service_cls()
    if not hasattr(instance, "speedysvc_publisher"):
        instance.speedysvc_publisher = None  # subclass __init__ did not call super().__init__
    return instance
