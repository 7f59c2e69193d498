"""The monitor's view of the supervisor's control API (see docs/ARCHITECTURE.md, "Supervisor
control API"), and the translation of its failures into HTTP answers."""
from __future__ import annotations

import functools
import threading
from typing import Any, Protocol

from speedysvc.naming import CONTROL_SERVICE_NAME
from speedysvc.supervisor.commands import COMMANDS

# Exception class names (matched anywhere in the MRO, or as a remote type name) that mean "the
# supervisor could not be reached", as opposed to "it answered with an error".
_UNREACHABLE_NAMES = frozenset({
    "ServiceUnavailable", "CallTimeout", "WorkerDied", "ProtocolError", "AuthenticationError",
    "ConnectionError", "TimeoutError", "BrokenPipeError", "ControlUnavailable",
})
_UNKNOWN_NAMES = frozenset({"UnknownService", "KeyError"})
_BAD_REQUEST_NAMES = frozenset({"ValueError", "TypeError"})


class Control(Protocol):
    """What the monitor needs from the supervisor; `speedysvc.connect(...)` clients fit."""

    def status(self) -> dict[str, Any]: ...
    def start(self, name: str) -> dict[str, Any]: ...
    def stop(self, name: str) -> dict[str, Any]: ...
    def restart(self, name: str) -> dict[str, Any]: ...
    def scale(self, name: str, n: int) -> dict[str, Any]: ...
    def restart_worker(self, name: str, worker_id: Any) -> dict[str, Any]: ...
    def logs(self, name: str, lines: int = 200, text: str | None = None,
             level: str | None = None, after: int | None = None) -> dict[str, Any]: ...
    def metrics(self, name: str, since: float | None = None,
                until: float | None = None) -> dict[str, Any]: ...


class ControlCallError(Exception):
    """A control call failed; carries the HTTP status and a message for the user."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


def _type_names(exc: BaseException) -> set[str]:
    names = {cls.__name__ for cls in type(exc).__mro__}
    # A remote exception whose type was not importable on our side keeps its type name.
    for attr in ("remote_type", "type_name", "exc_type"):
        value = getattr(exc, attr, None)
        if isinstance(value, str):
            names.add(value.rsplit(".", 1)[-1])
    return names


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])  # KeyError's str() wraps the message in quotes
    return str(exc) or type(exc).__name__


def classify(exc: BaseException, what: str) -> ControlCallError:
    """Map an exception raised by a control call to an HTTP status and a helpful message."""
    names = _type_names(exc)
    if names & _UNKNOWN_NAMES:
        return ControlCallError(404, f"{what}: not found ({_message(exc)}).")
    if names & _UNREACHABLE_NAMES or isinstance(exc, OSError):
        return ControlCallError(
            503, f"{what}: cannot reach the supervisor's control service ({type(exc).__name__}: "
                 f"{_message(exc)}). Is the supervisor running?")
    if names & _BAD_REQUEST_NAMES:
        return ControlCallError(400, f"{what}: the supervisor rejected the request ({_message(exc)}).")
    return ControlCallError(502, f"{what}: the supervisor reported {type(exc).__name__}: {_message(exc)}")


class LazyControl:
    """Connects to the control service on first use and again after a transport failure, so the
    monitor can start before the supervisor and outlive its restarts. Calls are serialised: the
    dynamic client is not documented as thread-safe and the monitor's server is threaded."""

    def __init__(self, address: str, *, connect_timeout: float = 2.0, timeout: float = 30.0) -> None:
        self.address = address
        # Short connect wait: a page should say "supervisor unreachable" quickly, not hang.
        self.connect_timeout = connect_timeout
        # Generous per-call limit: a restart waits for the new workers to come up.
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import speedysvc  # imported here so the web layer (and its tests) need no supervisor
        return speedysvc.connect(CONTROL_SERVICE_NAME, self.address,
                                 connect_timeout=self.connect_timeout, timeout=self.timeout)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except Exception as exc:
                if _type_names(exc) & _UNREACHABLE_NAMES or isinstance(exc, OSError):
                    self._drop_client()
                raise

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        try:
            client.close()
        except Exception:  # noqa: BLE001 - the connection is already broken; nothing to report
            pass

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._drop_client()

    def __getattr__(self, method: str) -> Any:
        """Every verb of the supervisor's command registry, called on the control service."""
        if method.startswith("_") or method not in COMMANDS:
            raise AttributeError(method)
        return functools.partial(self._call, method)


def control_address(scope: str | None = None, address: str | None = None) -> str:
    """The control service address for a scope (shm) or an explicit address."""
    if address:
        return address
    if scope:
        return f"shm://{scope}"
    raise ValueError("pass a scope or a control address")


def connect_control(scope: str | None = None, address: str | None = None) -> LazyControl:
    """The production control object for `create_app`; nothing connects until the first call."""
    return LazyControl(control_address(scope, address))
