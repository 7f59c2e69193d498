"""The event control: actions requested through Hat events, results and state registered as
events (AIMM 1.2's `aimm.server.control.event`, same event types and payloads).

    control:
      - module: aimm.server.control.event
        event_prefixes: {create_instance: [aimm, create_instance], add_instance: [...],
                         update_instance: [...], fit: [...], predict: [...], cancel: [...]}
        state_event_type: [aimm, state]
        action_state_event_type: [aimm, action_state]

Requests (JSON payloads; arguments in seed 002's forms, e.g. {type: data_access, name, args,
kwargs} or {type: numpy_array, ...}):
    (*create_instance, ...)        {request_id, model_type, args, kwargs}
    (*add_instance, ...)           {request_id, model_type, instance: base64}
    (*update_instance, "<id>")     {request_id, model_type, instance: base64}
    (*fit, "<id>"), (*predict, "<id>")   {request_id, args, kwargs}
    (*cancel, ...)                 the request_id of the request to cancel
Results, on action_state_event_type: {request_id, status, result} with status IN_PROGRESS
(create_instance, fit, predict), DONE, FAILED or CANCELLED; result is the new instance id
(create/add), the prediction (predict, as seed 002 JSON) or null; FAILED also carries
`error` {type, message} (AIMM registers nothing when a predict fails; this says FAILED).
State, on state_event_type whenever it changes: {"models": {"<id>": model type},
"actions": {"<action id>": {meta, progress, data_access, action, status}}} -- `progress` is
AIMM's phase (accessing_data, executing, complete, ...), `action` the plugin's own progress
(its state callback), `data_access` that of each data access.

Runs on the Hat link's loop inside the engine process; engine calls (which may block on
the plugin service) go to threads, and an action's end is learned from the engine's own
action events, so a thousand waiting requests hold no thread.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import hat.event.common

from .. import json_representation, wire_values
from ..errors import WireFormatError

log = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "cancelled")
AIMM_STATUS = {"done": "DONE", "failed": "FAILED", "cancelled": "CANCELLED"}


def get_subscriptions(conf: dict) -> list:
    return [(*prefix, "*") for prefix in conf["event_prefixes"].values()]


create_subscription = get_subscriptions


class EventControl:
    def __init__(self, conf: dict, engine: Any, client: Any):
        self._engine = engine
        self._client = client
        self._prefixes = {k: tuple(v) for k, v in conf["event_prefixes"].items()}
        self._state_type = tuple(conf["state_event_type"])
        self._action_state_type = tuple(conf["action_state_event_type"])
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="aimm-event-ctl")
        self._tasks: set = set()
        self._waiters: dict[int, list[asyncio.Future]] = {}
        self._requests: dict[Any, int] = {}          # request_id -> action id, while running
        self._models: dict[str, str] = {}
        self._actions: dict[str, dict] = {}
        self._state_dirty = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        models = await self._call(self._engine.models)
        self._models = {str(m["instance_id"]): m["model_type"] for m in models}
        for snapshot in await self._call(self._engine.actions):
            self._actions[str(snapshot["action_id"])] = aimm_action(snapshot)
        self._spawn(self._state_loop())
        self._state_dirty.set()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._threads.shutdown(wait=False, cancel_futures=True)

    # ---- engine events (from engine threads) ----

    def on_engine_event(self, topic: str, payload: dict) -> None:
        if not self._closed:
            self._loop.call_soon_threadsafe(self._apply_engine_event, topic, payload)

    def _apply_engine_event(self, topic: str, payload: dict) -> None:
        if topic == "action":
            self._actions = {**self._actions, str(payload["action_id"]): aimm_action(payload)}
            if payload["status"] in TERMINAL:
                for future in self._waiters.pop(payload["action_id"], []):
                    if not future.done():
                        future.set_result(payload)
        elif topic == "model":
            key = str(payload["instance_id"])
            if payload["event"] == "removed":
                self._models = {k: v for k, v in self._models.items() if k != key}
            else:
                self._models = {**self._models, key: payload["model"]["model_type"]}
        else:
            return
        self._state_dirty.set()

    async def _state_loop(self) -> None:
        """One state event per burst of changes: the latest state, never a queue of them."""
        registered = None
        while True:
            await self._state_dirty.wait()
            self._state_dirty.clear()
            state = {"models": dict(self._models), "actions": dict(self._actions)}
            if state == registered:
                continue
            try:
                await self._client.register([_event(self._state_type, state)])
                registered = state
            except ConnectionError:
                return           # the link deactivates us; the next control registers anew
            except Exception:
                log.exception("could not register the state event")

    # ---- requests ----

    async def process_events(self, events: Any) -> None:
        for event in events:
            for action, prefix in self._prefixes.items():
                if hat.event.common.matches_query_type(event.type, (*prefix, "*")):
                    self._spawn(self._request(action, prefix, event))

    async def _request(self, action: str, prefix: tuple, event: Any) -> None:
        data = getattr(event.payload, "data", None)
        if action == "cancel":
            await self._cancel(data.get("request_id") if isinstance(data, dict) else data)
            return
        request_id = data.get("request_id") if isinstance(data, dict) else None
        try:
            if not isinstance(data, dict):
                raise WireFormatError(f"a {action} request needs a JSON object payload, found "
                                      f"{type(data).__name__}")
            snapshot = await self._submit(action, prefix, event.type, data)
            self._requests[request_id] = snapshot["action_id"]
            if action in ("create_instance", "fit", "predict"):    # AIMM's actions
                await self._register_action_state(request_id, "IN_PROGRESS")
            final = await self._wait(snapshot)
            status = AIMM_STATUS[final["status"]]
            if status == "DONE":
                await self._register_action_state(request_id, status,
                                                  await self._result(action, final))
            else:
                await self._register_action_state(request_id, status, error=final.get("error"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s request %r failed: %s", action, request_id, exc)
            await self._register_action_state(
                request_id, "FAILED",
                error={"type": type(exc).__name__, "message": str(exc)})
        finally:
            self._requests.pop(request_id, None)

    async def _submit(self, action: str, prefix: tuple, event_type: tuple, data: dict) -> dict:
        engine = self._engine
        if action in ("create_instance", "fit", "predict"):
            args, kwargs = _arguments(data)
        if action == "create_instance":
            return await self._call(engine.create_instance, _text(data, "model_type"),
                                    args, kwargs, None)
        if action == "add_instance":
            return await self._call(engine.add_instance, _text(data, "model_type"),
                                    _instance(data), None)
        instance_id = _instance_id(event_type, prefix)
        if action == "update_instance":
            return await self._call(engine.update_instance, instance_id,
                                    _text(data, "model_type"), _instance(data), None)
        method = engine.fit if action == "fit" else engine.predict
        return await self._call(method, instance_id, args, kwargs, None)

    async def _wait(self, snapshot: dict) -> dict:
        action_id = snapshot["action_id"]
        future = self._loop.create_future()
        self._waiters.setdefault(action_id, []).append(future)
        current = await self._call(self._engine.action, action_id)   # it may be over already
        if current["status"] in TERMINAL:
            return current
        return await future

    async def _result(self, action: str, final: dict) -> Any:
        if action in ("create_instance", "add_instance"):
            return final["instance_id"]
        if action == "predict":
            outcome = await self._call(self._engine.outcome, final["action_id"])
            return json_representation.result_to_json(wire_values.decode(outcome["result"]))
        return None

    async def _cancel(self, request_id: Any) -> None:
        action_id = self._requests.get(request_id)
        if action_id is None:
            log.info("cancel of request %r: no such request in progress", request_id)
            return
        await self._call(self._engine.cancel, action_id)

    async def _register_action_state(self, request_id: Any, status: str, result: Any = None,
                                     error: Optional[dict] = None) -> None:
        payload = {"request_id": request_id, "status": status, "result": result}
        if error:
            payload["error"] = {"type": error.get("type"), "message": error.get("message")}
        try:
            await self._client.register([_event(self._action_state_type, payload)])
        except ConnectionError:
            log.warning("request %r ended %s while the event server was unreachable",
                        request_id, status)

    # ---- helpers ----

    async def _call(self, function: Any, *args: Any) -> Any:
        return await self._loop.run_in_executor(self._threads, function, *args)

    def _spawn(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def aimm_action(snapshot: dict) -> dict:
    """An engine action snapshot in the shape of AIMM's engine state (plus its status)."""
    meta = {"call": snapshot["operation"], "args": [], "kwargs": {}}
    if snapshot.get("instance_id") is not None and snapshot["operation"] != "create_instance":
        meta["model"] = snapshot["instance_id"]
    if snapshot.get("model_type"):
        meta["model_type"] = snapshot["model_type"]
    phase = snapshot.get("phase") or snapshot["status"]
    return {"meta": meta, "progress": "complete" if snapshot["status"] == "done" else phase,
            "data_access": json_representation.to_plain_json(
                snapshot.get("data_access_progress") or {}),
            "action": json_representation.to_plain_json(snapshot.get("progress")),
            "status": snapshot["status"]}


def _event(event_type: tuple, payload: Any) -> Any:
    return hat.event.common.RegisterEvent(
        type=event_type, source_timestamp=None,
        payload=hat.event.common.EventPayloadJson(payload))


def _arguments(data: dict) -> tuple[list, dict]:
    args, kwargs = json_representation.args_from_json(list(data.get("args") or []),
                                                      dict(data.get("kwargs") or {}))
    return [wire_values.encode(v) for v in args], \
        {k: wire_values.encode(v) for k, v in kwargs.items()}


def _instance(data: dict) -> bytes:
    text = data.get("instance")
    if not isinstance(text, str):
        raise WireFormatError("instance (base64 text of the serialized instance) is required")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireFormatError(f"instance is not base64: {exc}") from exc


def _instance_id(event_type: tuple, prefix: tuple) -> int:
    tail = event_type[len(prefix):]
    if not tail or not tail[0].isdigit():
        raise WireFormatError(f"the event type {'/'.join(event_type)} must end with the "
                              f"instance id after {'/'.join(prefix)}")
    return int(tail[0])


def _text(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WireFormatError(f"{key} (a non-empty string) is required, found {value!r}")
    return value
