"""The Python client of the model manager (AIMM's REPL client, on speedysvc).

    from aimm_services.client import AIMM, DataAccess
    aimm = AIMM("shm://myscope")          # or "tcp://host:5310"
    aimm.login("user", "password")
    model = aimm.create_instance("my_plugins.Linear")
    aimm.fit(model.instance_id, DataAccess.of("csv", "train.csv"))
    y = aimm.predict(model.instance_id, x)        # numpy/pandas come back intact
    handle = aimm.fit(model.instance_id, x, y, wait=False)   # an ActionHandle
    handle.progress, handle.status; handle.cancel(); handle.result(timeout=60)

Keyword arguments named `wait` and `action_timeout` are the client's own; every other
argument goes to the plugin. State (`aimm.state`) and action progress are kept up to date
by events the engine pushes; nothing is polled.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from speedysvc import connect

from . import wire_values
from .action_tracker import TERMINAL, ActionTracker
from .data_access import DataAccess, DataAccessArg
from .errors import (ActionCancelled, ActionFailed, ActionTimeout, NotLoggedIn,
                     UnknownModelType)
from .plugins import default_registry

log = logging.getLogger(__name__)

ENGINE_SERVICE = "aimm_engine"

__all__ = ["AIMM", "ActionHandle", "ModelRef", "DataAccess", "DataAccessArg"]


@dataclass(frozen=True)
class ModelRef:
    """A model on the server; `fit` and `predict` call the server."""

    instance_id: int
    model_type: str
    version: int = 1
    _aimm: Any = field(default=None, repr=False, compare=False)

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        return self._aimm.fit(self.instance_id, *args, **kwargs)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        return self._aimm.predict(self.instance_id, *args, **kwargs)


class ActionHandle:
    """An action started on the server: its id, live status and progress, and its result."""

    def __init__(self, aimm: "AIMM", snapshot: dict):
        self._aimm = aimm
        self.id: int = snapshot["action_id"]
        self.operation: str = snapshot["operation"]

    @property
    def action_id(self) -> int:
        return self.id

    @property
    def snapshot(self) -> dict:
        """The latest known state of the action (kept current by events)."""
        return self._aimm._action_snapshot(self.id)

    @property
    def status(self) -> str:
        return self.snapshot["status"]

    @property
    def progress(self) -> Any:
        return self.snapshot["progress"]

    @property
    def error(self) -> Optional[dict]:
        return self.snapshot["error"]

    def done(self) -> bool:
        return self.status in TERMINAL

    def wait(self, timeout: Optional[float] = None) -> dict:
        """Block until the action ends; returns its final snapshot."""
        return self._aimm._wait_action(self.id, timeout)

    def result(self, timeout: Optional[float] = None) -> Any:
        """The action's result; raises ActionFailed / ActionCancelled / ActionTimeout, or
        ActionNotFinished if it did not end within `timeout` seconds."""
        return self._aimm._result(self.id, self.operation, timeout)

    def cancel(self) -> dict:
        return self._aimm.cancel(self.id)

    def __repr__(self) -> str:
        return f"<ActionHandle {self.id} {self.operation} {self.status}>"


class AIMM:
    """A connection to the engine service. Safe to use from several threads."""

    def __init__(self, address: Union[str, Sequence[str]] = "shm://", *,
                 service: str = ENGINE_SERVICE, timeout: float = 60.0,
                 secret: Optional[str] = None):
        options: dict = {"timeout": timeout}
        if secret is not None:
            options["secret"] = secret
        self.address = address
        self._client = connect(service, address, **options)
        self._token: Optional[str] = None
        self._tracker: Optional[ActionTracker] = None

    # ---- session ----

    def login(self, username: str, password: str) -> None:
        """Log in; afterwards `state` is filled and kept current."""
        self._token = self._client.login(username, password)
        if self._tracker is None:
            # subscribe before reading the state, so no change falls between the two
            self._tracker = ActionTracker(self._client, on_missed=self._resync)
        self._resync()

    def logout(self) -> None:
        if self._token is None:
            return
        try:
            self._client.logout(self._token)
        finally:
            self._token = None
            tracker, self._tracker = self._tracker, None
            if tracker is not None:
                tracker.close()

    def close(self) -> None:
        try:
            self.logout()
        finally:
            self._client.close()

    def __enter__(self) -> "AIMM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def token(self) -> str:
        if self._token is None:
            raise NotLoggedIn("not logged in: call login(username, password) first")
        return self._token

    # ---- state ----

    @property
    def state(self) -> dict:
        """{"models": {id: summary}, "actions": {id: snapshot}} as last pushed by the engine."""
        tracker = self._require_tracker()
        return {"models": tracker.models, "actions": tracker.actions}

    @property
    def actions(self) -> dict:
        return self._require_tracker().actions

    def models(self) -> list:
        return self._client.models(self.token)

    def model(self, instance_id: int) -> dict:
        """A model's summary and its serialized instance bytes."""
        return self._client.model(self.token, instance_id)

    def plugins(self) -> dict:
        return self._client.plugins(self.token)

    def action(self, action_id: int) -> ActionHandle:
        snapshot = self._client.action(self.token, action_id)
        self._require_tracker().apply_action(snapshot)
        return ActionHandle(self, snapshot)

    def cancel(self, action_id: int) -> dict:
        """Cancel an action: a queued one at once, a running one within about a second."""
        snapshot = self._client.cancel(self.token, action_id)
        self._require_tracker().apply_action(snapshot)
        return snapshot

    # ---- operations ----

    def create_instance(self, model_type: str, *args: Any, wait: bool = True,
                        action_timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Create a model with the type's instantiate plugin; returns a ModelRef."""
        encoded_args, encoded_kwargs = _encode_args(args, kwargs)
        return self._start(self._client.create_instance(
            self.token, model_type, encoded_args, encoded_kwargs, action_timeout), wait)

    def add_instance(self, model_type: str, instance: Any, *, wait: bool = True,
                     action_timeout: Optional[float] = None) -> Any:
        """Store an existing instance (an object, serialized with the plugin available
        here, or bytes already serialized); returns a ModelRef."""
        data = _instance_bytes(model_type, instance)
        return self._start(self._client.add_instance(self.token, model_type, data,
                                                     action_timeout), wait)

    def update_instance(self, model_type: str, instance_id: int, instance: Any, *,
                        wait: bool = True, action_timeout: Optional[float] = None) -> Any:
        """Replace a stored instance (after the actions queued on it); returns a ModelRef."""
        data = _instance_bytes(model_type, instance)
        return self._start(self._client.update_instance(self.token, instance_id, model_type,
                                                        data, action_timeout), wait)

    def fit(self, instance_id: int, *args: Any, wait: bool = True,
            action_timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Fit a model; returns the updated ModelRef."""
        encoded_args, encoded_kwargs = _encode_args(args, kwargs)
        return self._start(self._client.fit(self.token, instance_id, encoded_args,
                                            encoded_kwargs, action_timeout), wait)

    def predict(self, instance_id: int, *args: Any, wait: bool = True,
                action_timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Predict with a model; returns the prediction."""
        encoded_args, encoded_kwargs = _encode_args(args, kwargs)
        return self._start(self._client.predict(self.token, instance_id, encoded_args,
                                                encoded_kwargs, action_timeout), wait)

    def remove_instance(self, instance_id: int, *, wait: bool = True) -> Any:
        """Remove a model (after the actions queued on it). Its id is never reused."""
        return self._start(self._client.remove_instance(self.token, instance_id, None), wait)

    # ---- internals ----

    def _require_tracker(self) -> ActionTracker:
        if self._tracker is None:
            raise NotLoggedIn("not logged in: call login(username, password) first")
        return self._tracker

    def _start(self, snapshot: dict, wait: bool) -> Any:
        self._require_tracker().apply_action(snapshot)
        handle = ActionHandle(self, snapshot)
        return handle.result() if wait else handle

    def _action_snapshot(self, action_id: int) -> dict:
        tracker = self._require_tracker()
        snapshot = tracker.action(action_id)
        if snapshot is None:
            snapshot = self._client.action(self.token, action_id)
            tracker.apply_action(snapshot)
        return snapshot

    def _wait_action(self, action_id: int, timeout: Optional[float]) -> dict:
        token = self.token
        return self._require_tracker().wait(action_id, timeout,
                                            lambda: self._client.action(token, action_id))

    def _result(self, action_id: int, operation: str, timeout: Optional[float]) -> Any:
        raise_for_outcome(self._wait_action(action_id, timeout))
        result = self._client.outcome(self.token, action_id)["result"]
        if operation == "predict":
            return wire_values.decode(result)
        if operation == "remove_instance":
            return None
        return ModelRef(result["instance_id"], result["model_type"], result["version"], self)

    def _resync(self) -> None:
        if self._token is not None and self._tracker is not None:
            self._tracker.replace_state(self._client.state(self._token))


def raise_for_outcome(snapshot: dict) -> None:
    """Raise the error a finished action ended with (nothing if it is done)."""
    action_id, operation = snapshot["action_id"], snapshot["operation"]
    if snapshot["status"] == "cancelled":
        raise ActionCancelled(f"action {action_id} ({operation}) was cancelled")
    if snapshot["status"] == "failed":
        error = snapshot.get("error") or {}
        error_type = error.get("type", "")
        message = (f"action {action_id} ({operation}) failed: {error_type}: "
                   f"{error.get('message', '')}")
        if error_type.endswith("ActionTimeout"):
            raise ActionTimeout(message)
        raise ActionFailed(message, error_type, error.get("traceback", ""))


def _encode_args(args: tuple, kwargs: dict) -> tuple[list, dict]:
    return [wire_values.encode(a) for a in args], \
        {k: wire_values.encode(v) for k, v in kwargs.items()}


def _instance_bytes(model_type: str, instance: Any) -> bytes:
    """Serialize `instance` with the model type's serialize plugin, loaded in this process
    (importing the module part of `module.ClassName` types when needed)."""
    if isinstance(instance, (bytes, bytearray, memoryview)):
        return bytes(instance)
    from .plugins import exec_serialize
    try:
        return exec_serialize(model_type, instance)
    except UnknownModelType:
        module_name = model_type.rpartition(".")[0]
        if module_name:
            try:
                importlib.import_module(module_name)
            except ImportError:
                pass
        if model_type in default_registry.keys()["serialize"]:
            return exec_serialize(model_type, instance)
        raise UnknownModelType(
            f"cannot serialize the instance here: no serialize plugin for {model_type!r} in "
            f"this process; import the plugin module first, or pass the serialized bytes") from None
