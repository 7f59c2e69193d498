"""The client side: ClientMethodsBase, connect() and the method proxies of its clients."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union, cast

if TYPE_CHECKING:
    from typing_extensions import Self

from .errors import AmbiguousService, MethodNotFound, ServiceUnavailable
from .provider import ProviderMethods, send_arguments, split_send_options
from .subscription import Event as Event, Subscription as Subscription  # part of this module's API


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

    def send(self, method: Union[Callable[..., Any], str], args: Any = (),
             kwargs: Optional[dict[str, Any]] = None, timeout: Optional[float] = None) -> Any:
        kwargs, timeout = split_send_options(kwargs, timeout)
        name, args = send_arguments(method, args)
        return self.client_provider.call(name, args, kwargs, timeout=timeout)

    def subscribe(self, topics: Optional[Sequence[str]] = None) -> "Subscription":
        return cast("Subscription", self.client_provider.subscribe(topics))

    def close(self) -> None:
        self.client_provider.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MethodProxy:
    __slots__ = ("_provider", "_name", "_timeout")

    def __init__(self, provider: Any, name: str, timeout: Optional[float] = None):
        self._provider = provider
        self._name = name
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._provider.call(self._name, args, kwargs, timeout=self._timeout)

    def with_timeout(self, seconds: Optional[float]) -> "MethodProxy":
        """The same method with a per-call timeout: client.fit.with_timeout(600)(x)."""
        return MethodProxy(self._provider, self._name, seconds)

    def __repr__(self) -> str:
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
        bound_method = getattr(provider, "bound_method", None)  # a transport's own (SHMClient: compiled)
        for name in self.methods:
            if not name.startswith("_"):
                method = bound_method(name) if bound_method is not None else None
                # instance attributes shadow the helpers below
                setattr(self, name, method if method is not None else MethodProxy(provider, name))

    def __getattr__(self, name: str) -> MethodProxy:
        if name.startswith("_"):
            raise AttributeError(name)
        raise MethodNotFound(f"service {self._provider.service_name!r} has no method {name!r}; "
                             f"it has: {', '.join(sorted(self.methods)) or 'none'}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.methods))

    @property
    def service_name(self) -> str:
        return str(self._provider.service_name)

    def call(self, method: str, args: Sequence[Any] = (), kwargs: Optional[dict[str, Any]] = None,
             timeout: Optional[float] = None) -> Any:
        """The provider interface: call `method` by name with an argument list."""
        return self._provider.call(method, args, kwargs, timeout=timeout)

    def describe(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self._provider.describe())

    def subscribe(self, topics: Optional[Sequence[str]] = None) -> "Subscription":
        return cast("Subscription", self._provider.subscribe(topics))

    def close(self) -> None:
        self._provider.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{self._provider.transport} client of {self._provider.service_name!r}>"


def _parse_address(address: str) -> tuple[str, dict[str, Any]]:
    if address.startswith("shm://"):
        scope = address[len("shm://"):].strip("/")
        return "shm", {"scope": scope or None}
    if address.startswith(("tcp://", "tcps://")):
        scheme, _, rest = address.partition("://")
        rest = rest.strip("/")
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, ""
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return "tcp", {"host": host or "127.0.0.1", "port": int(port) if port else None, "tls": scheme == "tcps"}
    if address.startswith("ray://"):
        host_port, _, scope = address[len("ray://"):].partition("/")
        return "ray", {"address": host_port or None, "scope": scope.strip("/") or None}
    raise ValueError(f"unknown address {address!r}: expected 'shm://[scope]', 'tcp://host[:port]', "
                     f"'tcps://host[:port]' (TLS) or 'ray://[host:port][/scope]'")


def make_provider(service: Any, address: str, **options: Any) -> Any:
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
    tcp_opts["tls"] = options.get("tls") or params["tls"]  # tcps:// or tls=True | ssl.SSLContext
    return NetworkClient(service, host=params["host"], port=params["port"], **tcp_opts)


RAY_SERVICES_ENV = "SPEEDYSVC_RAY_SERVICES"  # set by a supervisor: its services run by Ray


def default_address(service: Any) -> str:
    """shm://, or ray:// for a service this process's supervisor runs on Ray Serve (so a
    sibling is reached on whichever engine runs it)."""
    name = service if isinstance(service, str) else service.service_name()
    ray_services = os.environ.get(RAY_SERVICES_ENV, "")
    return "ray://" if name in ray_services.split(",") else "shm://"


def connect(service: Any, address: Union[str, Sequence[str], None] = None,
            **options: Any) -> ServiceClient:
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
