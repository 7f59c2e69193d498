"""The event backend: models stored as Hat events (AIMM 1.2's `aimm.server.backend.event`).

    backend: {module: aimm.server.backend.event, model_prefix: [aimm, model]}

A model is the latest event of type `(*model_prefix, "<instance id>")` with the JSON payload
`{"type": model type, "instance": base64 of the serialized instance}` -- AIMM's own shape,
so AIMM and this server read each other's models. Removing a model (which AIMM cannot do)
registers an event of that type without a payload; ids are never reused. The event server
must keep the latest event of these types (lmdb backend: `latest.subscriptions`).

The store is synchronous (the engine's actions call it from their threads) and runs its
requests on the Hat link's loop. It lives in the engine process: it needs the connection
and nothing else, so no backend process is started.
"""
from __future__ import annotations

import base64
import threading
import time
from typing import Any, Optional

import hat.event.common

from ..backends.base import StoredModel
from ..errors import AimmError, UnknownModel

REQUEST_TIMEOUT_S = 60.0


class EventStoreError(AimmError):
    """The event server did not take or return the model."""


def get_subscriptions(conf: dict) -> list:
    """Model events of other writers reach the server (AIMM subscribes to the same)."""
    return [(*conf["model_prefix"], "*")]


create_subscription = get_subscriptions


class EventModelStore:
    """ModelStore over a Hat eventer client; `run` executes a coroutine on its loop."""

    def __init__(self, client: Any, run: Any, model_prefix: list):
        self._client = client
        self._run = run
        self._prefix = tuple(model_prefix)
        self._lock = threading.Lock()
        self._models: dict[int, StoredModel] = {}
        self._last_id = 0
        self._load()

    def _load(self) -> None:
        result = self._run(self._client.query(hat.event.common.QueryLatestParams(
            event_types=[(*self._prefix, "*")])), REQUEST_TIMEOUT_S)
        for event in result.events:
            instance_id = self._instance_id(event.type)
            if instance_id is None:
                continue
            self._last_id = max(self._last_id, instance_id)
            model = self._to_model(instance_id, event)
            if model is not None:
                self._models[instance_id] = model

    # ---- ModelStore ----

    def create(self, model_type: str, instance: bytes) -> StoredModel:
        with self._lock:
            self._last_id += 1
            instance_id = self._last_id
        now = time.time()
        model = StoredModel(instance_id, model_type, bytes(instance), 1, now, now)
        self._register(instance_id, _payload(model))
        with self._lock:
            self._models[instance_id] = model
        return model

    def update(self, instance_id: int, instance: bytes,
               model_type: Optional[str] = None) -> StoredModel:
        old = self.get(instance_id)
        model = StoredModel(instance_id, model_type or old.model_type, bytes(instance),
                            old.version + 1, old.created_at, time.time())
        self._register(instance_id, _payload(model))
        with self._lock:
            self._models[instance_id] = model
        return model

    def remove(self, instance_id: int) -> None:
        self.get(instance_id)
        self._register(instance_id, None)
        with self._lock:
            self._models.pop(instance_id, None)

    def get(self, instance_id: int) -> StoredModel:
        with self._lock:
            model = self._models.get(instance_id)
        if model is None:
            raise UnknownModel(f"no model with instance id {instance_id}")
        return model

    def all(self) -> list[StoredModel]:
        with self._lock:
            return [self._models[k] for k in sorted(self._models)]

    def close(self) -> None:
        return None

    # ---- events ----

    def _register(self, instance_id: int, payload: Optional[dict]) -> None:
        event = hat.event.common.RegisterEvent(
            type=(*self._prefix, str(instance_id)), source_timestamp=None,
            payload=None if payload is None else hat.event.common.EventPayloadJson(payload))
        # with a response: the call returns once the event server has the model
        registered = self._run(self._client.register([event], with_response=True),
                               REQUEST_TIMEOUT_S)
        if not registered:
            raise EventStoreError(f"the Hat event server refused the event of model "
                                  f"{instance_id} ({'/'.join(event.type)})")

    def _instance_id(self, event_type: tuple) -> Optional[int]:
        if len(event_type) != len(self._prefix) + 1 or not event_type[-1].isdigit():
            return None
        return int(event_type[-1])

    def _to_model(self, instance_id: int, event: Any) -> Optional[StoredModel]:
        data = getattr(event.payload, "data", None)
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return None         # removed (or not a model)
        stamp = event.timestamp.s + event.timestamp.us / 1e6
        instance = base64.b64decode(data.get("instance", ""))
        return StoredModel(instance_id, data["type"], instance, 1, stamp, stamp)


def _payload(model: StoredModel) -> dict:
    return {"type": model.model_type,
            "instance": base64.b64encode(model.instance).decode("ascii")}
