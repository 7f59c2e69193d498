"""The client side: ClientMethodsBase, connect(), method proxies and subscriptions."""
from __future__ import annotations

import os
import queue
import threading
from collections import namedtuple
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from . import serialisers
from .errors import AmbiguousService, MethodNotFound, ServiceUnavailable
from .provider import ProviderMethods, send_arguments, split_send_options

Event = namedtuple("Event", "topic payload seq topic_seq")
Event.__doc__ = "A published event: seq is per service, topic_seq per topic (gaps = missed events)."


def _as_provider(client_provider: Any) -> Any:
    """The transport behind `client_provider` (connect()'s ServiceClient is unwrapped)."""
    return client_provider._provider if isinstance(client_provider, ServiceClient) else client_provider


class ClientMethodsBase:
    """Base class of hand-written clients (the published speedysvc API):

        class EchoClient(ClientMethodsBase):
            def echo(self, data, suffix="!"):
                return self.send(Echo.echo, [data, suffix])
            shout = Echo.shout.as_rpc()

    `client_provider` is SHMClient(...), NetworkClient(...) or what connect() returns.
    """

    def __init__(self, client_provider: Any):
        self.client_provider = _as_provider(client_provider)

    def send(self, method: Union[Callable, str], args: Any = (), kwargs: Optional[dict] = None,
             timeout: Optional[float] = None) -> Any:
        kwargs, timeout = split_send_options(kwargs, timeout)
        name, args = send_arguments(method, args)
        return self.client_provider.call(name, args, kwargs, timeout=timeout)

    def subscribe(self, topics: Optional[Sequence[str]] = None) -> "Subscription":
        return self.client_provider.subscribe(topics)

    def close(self) -> None:
        self.client_provider.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MethodProxy:
    __slots__ = ("_provider", "_name", "_timeout")

    def __init__(self, provider: Any, name: str, timeout: Optional[float] = None):
        self._provider = provider
        self._name = name
        self._timeout = timeout

    def __call__(self, *args, **kwargs):
        return self._provider.call(self._name, args, kwargs, timeout=self._timeout)

    def with_timeout(self, seconds: Optional[float]) -> "MethodProxy":
        """The same method with a per-call timeout: client.fit.with_timeout(600)(x)."""
        return MethodProxy(self._provider, self._name, seconds)

    def __repr__(self):
        return f"<remote method {self._name} of {self._provider.service_name!r}>"


class ServiceClient(ProviderMethods):
    """What connect() returns: the service's methods as attributes, discovered from the service.

    A remote method always wins its attribute, even over the helpers below (call, send,
    describe, subscribe, close): a service with its own `send` method is called as
    `client.send(...)`, and the helpers stay reachable on `client.provider` (the transport,
    which never has remote methods as attributes).
    """

    def __init__(self, provider: Any):
        self._provider = provider
        self.provider = provider
        self.methods: dict[str, str] = dict(provider.methods)
        for name in self.methods:
            if not name.startswith("_"):
                setattr(self, name, MethodProxy(provider, name))  # instance attributes shadow helpers

    def __getattr__(self, name: str) -> MethodProxy:
        if name.startswith("_"):
            raise AttributeError(name)
        raise MethodNotFound(f"service {self._provider.service_name!r} has no method {name!r}; "
                             f"it has: {', '.join(sorted(self.methods)) or 'none'}")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.methods))

    @property
    def service_name(self) -> str:
        return self._provider.service_name

    def call(self, method: str, args: Sequence = (), kwargs: Optional[dict] = None,
             timeout: Optional[float] = None) -> Any:
        """The provider interface: call `method` by name with an argument list."""
        return self._provider.call(method, args, kwargs, timeout=timeout)

    def describe(self) -> dict:
        return self._provider.describe()

    def subscribe(self, topics: Optional[Sequence[str]] = None) -> "Subscription":
        return self._provider.subscribe(topics)

    def close(self) -> None:
        self._provider.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{self._provider.transport} client of {self._provider.service_name!r}>"


class Subscription:
    """Events published after subscribing, in order. Iterate, or call get(timeout).

    `source` is a transport subscription with poll(timeout) -> iterable of
    (seq, topic, topic_seq, payload_bytes) and close().
    """

    def __init__(self, source: Any, topics: Optional[Sequence[str]] = None):
        self._source = source
        self.topics = None if topics is None else {str(t) for t in topics}
        self._pending: "queue.SimpleQueue[Event]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.closed = False

    @property
    def missed(self) -> int:
        return getattr(self._source, "missed", 0)

    def get(self, timeout: Optional[float] = None) -> Event:
        """The next event; raises queue.Empty after `timeout` seconds."""
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._pending.get_nowait()
            except queue.Empty:
                pass
            if self.closed:
                raise queue.Empty
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            with self._lock:
                if self.closed:
                    raise queue.Empty
                for seq, topic, topic_seq, payload in self._source.poll(
                        1.0 if remaining is None else min(remaining, 1.0)):
                    if self.topics is None or topic in self.topics:
                        self._pending.put(Event(topic, serialisers.CONTROL.decode(payload), seq, topic_seq))
            if deadline is not None and time.monotonic() >= deadline and self._pending.empty():
                raise queue.Empty

    def __iter__(self) -> Iterator[Event]:
        while not self.closed:
            try:
                yield self.get(timeout=1.0)
            except queue.Empty:
                continue

    def close(self) -> None:
        """Safe from any thread: a get() blocked in another thread returns (queue.Empty)."""
        if self.closed:
            return
        self.closed = True
        wake = getattr(self._source, "wake", None)
        if wake is not None:
            wake()
        with self._lock:  # waits for a poll in progress to return before freeing its objects
            self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _parse_address(address: str) -> tuple[str, dict]:
    if address.startswith("shm://"):
        scope = address[len("shm://"):].strip("/")
        return "shm", {"scope": scope or None}
    if address.startswith("tcp://"):
        rest = address[len("tcp://"):].strip("/")
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, ""
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return "tcp", {"host": host or "127.0.0.1", "port": int(port) if port else None}
    if address.startswith("ray://"):
        host_port, _, scope = address[len("ray://"):].partition("/")
        return "ray", {"address": host_port or None, "scope": scope.strip("/") or None}
    raise ValueError(f"unknown address {address!r}: expected 'shm://[scope]', "
                     f"'tcp://host[:port]' or 'ray://[host:port][/scope]'")


def make_provider(service: Any, address: str, **options) -> Any:
    kind, params = _parse_address(address)
    if kind == "shm":
        from .shm.shm_client import SHMClient
        scope = options.pop("scope", None) or params["scope"]
        shm_opts = {k: v for k, v in options.items() if k in ("timeout", "connect_timeout", "unavailable_after")}
        return SHMClient(service, scope, **shm_opts)
    if kind == "ray":  # Ray is imported only for a ray:// address
        from .ray_engine.client import RayClient
        ray_opts = {k: v for k, v in options.items() if k in ("timeout", "connect_timeout")}
        return RayClient(service, params["address"], options.pop("scope", None) or params["scope"],
                         **ray_opts)
    from .tcp.network_client import NetworkClient
    tcp_opts = {k: v for k, v in options.items() if k in ("timeout", "connect_timeout", "secret", "compression")}
    return NetworkClient(service, host=params["host"], port=params["port"], **tcp_opts)


RAY_SERVICES_ENV = "SPEEDYSVC_RAY_SERVICES"  # set by a supervisor: its services run by Ray


def default_address(service: Any) -> str:
    """shm://, or ray:// for a service this process's supervisor runs on Ray Serve (so a
    sibling is reached on whichever engine runs it)."""
    name = service if isinstance(service, str) else service.service_name()
    ray_services = os.environ.get(RAY_SERVICES_ENV, "")
    return "ray://" if name in ray_services.split(",") else "shm://"


def connect(service: Any, address: Union[str, Sequence[str], None] = None,
            **options) -> ServiceClient:
    """Connect to a service by class or by name. `address` may be a list, tried in order;
    none: shm:// (ray:// for a sibling service that runs on Ray Serve).

    Options: scope (shm), timeout (default per call), connect_timeout, secret and compression
    (tcp). Raises ServiceUnavailable naming every address tried when none answers.
    """
    if address is None:
        address = default_address(service)
    addresses = [address] if isinstance(address, str) else list(address)
    if not addresses:
        raise ValueError("connect() needs at least one address")
    problems = []
    for addr in addresses:
        try:
            return ServiceClient(make_provider(service, addr, **dict(options)))
        except AmbiguousService:
            raise  # another address would not make the choice for the user
        except (ServiceUnavailable, ConnectionError, OSError) as exc:
            problems.append(f"{addr}: {exc}")
    name = service if isinstance(service, str) else service.service_name()
    raise ServiceUnavailable(f"could not reach service {name!r}: " + "; ".join(problems))
