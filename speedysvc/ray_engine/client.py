"""RayClient: the ray:// provider, calling a service's replicas through a Serve handle.

    connect(Echo, "ray://")                  # the cluster of the supervisor serving Echo
    connect(Echo, "ray://127.0.0.1:6379/s1") # a cluster (GCS address or Ray Client port), scope s1

The request is encoded here and decoded in the replica by the same code as over shared memory
and TCP (dispatch.encode_request / decode_reply), so results and errors are the same:
remote exceptions re-raise with their type and remote traceback, a call that does not finish
in its timeout raises CallTimeout (and is cancelled), a replica that dies holding the call
raises WorkerDied (never re-run, see replica.py), and a service that is not deployed raises
ServiceUnavailable.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..subscription import Subscription

from .. import dispatch, serialisers
from ..errors import (AmbiguousService, CallTimeout, MethodNotFound, ServiceUnavailable,
                      WorkerDied)
from ..provider import ProviderMethods
from ..scope_resolution import explicit_scope, supervisors_serving
from . import runtime
from .names import NAMESPACE, address_file, app_name, board_name, split_app_name

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0


def cluster_address(service: str, host_port: Optional[str]) -> Optional[str]:
    """Which cluster a ray:// address means: HOST:PORT when given (a Ray Client port is tried
    as ray://HOST:PORT), else RAY_ADDRESS, else the cluster of this user's supervisor serving
    `service`, else 'auto'."""
    if host_port:
        return host_port
    if os.environ.get("RAY_ADDRESS"):
        return None  # ray.init("auto") reads it
    for state in supervisors_serving(service):
        try:
            with open(address_file(state["state_file"])) as f:
                found, *environment = f.read().split("\n")
        except (OSError, KeyError):
            continue
        if found.strip():
            runtime.use_auth(dict(line.split("=", 1) for line in environment if "=" in line))
            return found.strip()
    return None


def resolve_app(service: str, scope: Optional[str]) -> str:
    """The Serve application of `service`: in `scope`, else (as for shm://) SPEEDYSVC_SCOPE,
    else the one supervisor of this user serving it, else the one application of that name
    in the cluster."""
    scope = scope or explicit_scope()
    if not scope:
        scopes = sorted({s["scope"] for s in supervisors_serving(service)})
        if len(scopes) == 1:
            scope = scopes[0]
    if scope:
        return app_name(scope, service)
    from ray import serve
    apps: list[str] = sorted(a for a in serve.status().applications
                             if split_app_name(a)[1] == service)
    if len(apps) > 1:
        raise AmbiguousService(
            f"service {service!r} is deployed by {len(apps)} supervisors in this Ray cluster "
            f"(applications {', '.join(apps)}); say which in the address, e.g. "
            f"ray:///{split_app_name(apps[0])[0]}")
    if not apps:
        raise ServiceUnavailable(f"no Serve application of service {service!r} in the Ray "
                                 f"cluster (expected one named <scope>.{service})")
    return apps[0]


class Attempt:
    """Counts how often Serve's router sends a request: Ray pickles a call's arguments on
    every send, so each send of this object reaches the replica as the next integer (1 for
    the first). A replica seeing 2 or more checks that no replica started the call before."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0

    def __reduce__(self) -> tuple[type[int], tuple[int]]:
        self.sent += 1
        return (int, (self.sent,))


class RayClient(ProviderMethods):
    transport = "ray"

    def __init__(self, service: Any, address: Optional[str] = None, scope: Optional[str] = None, *,
                 timeout: Optional[float] = DEFAULT_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT):
        self.service_name = service if isinstance(service, str) else service.service_name()
        self.timeout = timeout
        self.closed = False
        self._ray = _join(cluster_address(self.service_name, address))
        from ray import serve
        self.app = resolve_app(self.service_name, scope)
        self.scope = split_app_name(self.app)[0]
        self._wait_running(serve, connect_timeout)
        self.handle = runtime.track_handle(
            serve.get_app_handle(self.app).options(method_name="call"))
        self.methods: dict[str, str] = {}
        self.description: dict[str, Any] = self.call(dispatch.DESCRIBE, timeout=connect_timeout + 30)
        self.methods = {name: info["encoder"] for name, info in self.description["methods"].items()}

    def _wait_running(self, serve: Any, connect_timeout: float) -> None:
        deadline = time.monotonic() + connect_timeout
        while True:
            app = serve.status().applications.get(self.app)
            state = str(getattr(app, "status", "")) if app is not None else ""
            if state.endswith("RUNNING"):
                return
            if time.monotonic() >= deadline:
                detail = f" (it is {state.split('.')[-1]})" if state else " (it is not deployed)"
                raise ServiceUnavailable(f"service {self.service_name!r} is not running in the "
                                         f"Ray cluster as application {self.app!r}{detail}")
            time.sleep(0.1)

    def call(self, method: str, args: Sequence[Any] = (), kwargs: Optional[dict[str, Any]] = None,
             timeout: Optional[float] = None) -> Any:
        if self.closed:
            raise ServiceUnavailable(f"client of {self.service_name!r} is closed")
        encoder = self.methods.get(method)
        if encoder is None:
            if method not in (dispatch.DESCRIBE, dispatch.PING):
                raise MethodNotFound(f"service {self.service_name!r} has no method {method!r}; "
                                     f"it has: {', '.join(sorted(self.methods)) or 'none'}")
            encoder = "msgpack"
        serialiser = serialisers.SERIALISERS[encoder]
        request = b"".join(dispatch.encode_request(method, serialiser.code,
                                                   serialiser.encode_call(args, kwargs or {})))
        timeout = self.timeout if timeout is None else timeout
        response = self.handle.remote(os.urandom(16), Attempt(), request)
        try:
            reply = response.result(timeout_s=timeout)
        except TimeoutError:
            response.cancel()
            raise CallTimeout(f"call {method!r} to {self.service_name!r} timed out after "
                              f"{timeout:g}s") from None
        except Exception as exc:  # noqa: BLE001 - Ray's errors become ours, below
            raise self._transport_error(method, exc) from None
        return dispatch.decode_reply(memoryview(reply), serialiser)

    def _transport_error(self, method: str, exc: BaseException) -> Exception:
        from ray import exceptions as rex
        if isinstance(exc, (rex.ActorDiedError, rex.RayActorError, rex.ActorUnavailableError)):
            return WorkerDied(f"the replica of {self.service_name!r} running {method!r} died "
                              f"during the call ({type(exc).__name__}); the call was not retried")
        if isinstance(exc, rex.RayTaskError) and isinstance(exc.cause, rex.RayActorError):
            return WorkerDied(f"the replica of {self.service_name!r} running {method!r} died "
                              f"during the call; the call was not retried")
        text = str(exc)
        return ServiceUnavailable(f"call {method!r} to {self.service_name!r} failed in Ray "
                                  f"Serve: {type(exc).__name__}: {text.splitlines()[0] if text else ''}")

    def describe(self) -> dict[str, Any]:
        return self.description

    def subscribe(self, topics: Optional[Sequence[str]] = None) -> Subscription:
        from ..client import Subscription
        from .events import BoardEventSource
        board = self._ray.get_actor(board_name(self.scope, self.service_name), namespace=NAMESPACE)
        return Subscription(BoardEventSource(board), topics)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            runtime.close_handle(self.handle)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _join(address: Optional[str]) -> Any:
    import ray
    if ray.is_initialized():
        return ray  # inside a replica, or a process that already joined
    if address and not address.startswith("ray://") and address not in ("auto", "local"):
        # host:port: a GCS address when this machine is a cluster node; otherwise try it as a
        # Ray Client port
        try:
            return runtime.connect(address)
        except runtime.RayUnavailable:
            return _connect_or_unavailable(f"ray://{address}")
    return _connect_or_unavailable(None if address in (None, "local") else address)


def _connect_or_unavailable(address: Optional[str]) -> Any:
    try:
        return runtime.connect(address)
    except runtime.RayUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None
