"""AIMM's engine interface (aimm.server.common.Engine) over this project's engine, for custom
Hat-aware controls written for AIMM: `create(conf, engine, event_client)` gets one.

    engine.state                      {"models": {id: Model}, "actions": {id: {...}}}
    engine.subscribe_to_state_change(cb)      -> handle with .cancel()
    engine.create_instance(model_type, *args, **kwargs)  -> Action
    engine.fit(instance_id, *args, **kwargs), engine.predict(...)   -> Action
    await engine.add_instance(model_type, instance_bytes)           -> Model
    await engine.update_instance(Model(instance_bytes, model_type, instance_id))
    await action.wait_result()   (CancelledError if cancelled; ActionFailed if it failed)
    action.close() / await action.async_close()   cancels

One difference from AIMM: models carry their *serialized* instance (bytes), because plugins
run in the plugin service's processes, not in the engine's. Methods are called on the Hat
link's loop; engine calls run in threads.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple

from .. import wire_values
from ..data_access import DataAccess
from ..errors import ActionFailed
from .event_control import TERMINAL, aimm_action


class Model(NamedTuple):
    """aimm.server.common.Model's fields; `instance` is the serialized instance."""

    instance: Any
    model_type: str
    instance_id: int


class _Handle:
    def __init__(self, cancel: Callable[[], None]):
        self.cancel = cancel


class AimmEngineAdapter:
    def __init__(self, engine: Any):
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="aimm-engine-api")
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: dict[int, list[asyncio.Future]] = {}
        self._state = self._read_state()

    @property
    def state(self) -> dict:
        return self._state

    def subscribe_to_state_change(self, cb: Callable[[], None]) -> _Handle:
        self._callbacks.append(cb)
        return _Handle(lambda: cb in self._callbacks and self._callbacks.remove(cb))

    def create_instance(self, model_type: str, *args: Any, **kwargs: Any) -> "Action":
        return Action(self, self._engine.create_instance, model_type, _wire(args),
                      _wire_kwargs(kwargs), None)

    def fit(self, instance_id: int, *args: Any, **kwargs: Any) -> "Action":
        return Action(self, self._engine.fit, instance_id, _wire(args), _wire_kwargs(kwargs),
                      None)

    def predict(self, instance_id: int, *args: Any, **kwargs: Any) -> "Action":
        return Action(self, self._engine.predict, instance_id, _wire(args),
                      _wire_kwargs(kwargs), None)

    async def add_instance(self, model_type: str, instance: bytes) -> Model:
        return await Action(self, self._engine.add_instance, model_type, bytes(instance),
                            None).wait_result()

    async def update_instance(self, model: Model) -> None:
        await Action(self, self._engine.update_instance, model.instance_id, model.model_type,
                     bytes(model.instance), None).wait_result()

    async def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    # ---- plumbing ----

    def on_engine_event(self, topic: str, payload: dict) -> None:
        """From engine threads: refresh the state on the loop and tell the subscribers."""
        self._loop.call_soon_threadsafe(self._apply, topic, payload)

    def _apply(self, topic: str, payload: dict) -> None:
        if topic == "action":
            actions = {**self._state["actions"], payload["action_id"]: aimm_action(payload)}
            self._state = {**self._state, "actions": actions}
            if payload["status"] in TERMINAL:
                for future in self._waiters.pop(payload["action_id"], []):
                    if not future.done():
                        future.set_result(payload)
        elif topic == "model":
            models = dict(self._state["models"])
            if payload["event"] == "removed":
                models.pop(payload["instance_id"], None)
            else:
                stored = self._engine.model(payload["instance_id"])
                models[stored["instance_id"]] = Model(stored["instance"], stored["model_type"],
                                                      stored["instance_id"])
            self._state = {**self._state, "models": models}
        for cb in list(self._callbacks):
            cb()

    def _read_state(self) -> dict:
        models = {}
        for summary in self._engine.models():
            stored = self._engine.model(summary["instance_id"])
            models[stored["instance_id"]] = Model(stored["instance"], stored["model_type"],
                                                  stored["instance_id"])
        return {"models": models,
                "actions": {a["action_id"]: aimm_action(a) for a in self._engine.actions()}}

    async def call(self, function: Callable, *args: Any) -> Any:
        return await self._loop.run_in_executor(self._threads, function, *args)

    async def wait(self, action_id: int) -> dict:
        future = self._loop.create_future()
        self._waiters.setdefault(action_id, []).append(future)
        current = await self.call(self._engine.action, action_id)
        return current if current["status"] in TERMINAL else await future


class Action:
    """AIMM's Action: wait_result() and close() (cancel)."""

    def __init__(self, adapter: AimmEngineAdapter, submit: Callable, *args: Any):
        self._adapter = adapter
        self._task = asyncio.ensure_future(adapter.call(submit, *args))

    async def wait_result(self) -> Any:
        snapshot = await self._task
        final = await self._adapter.wait(snapshot["action_id"])
        if final["status"] == "cancelled":
            raise asyncio.CancelledError()
        if final["status"] == "failed":
            error = final.get("error") or {}
            raise ActionFailed(f"{error.get('type')}: {error.get('message')}")
        engine = self._adapter._engine
        if final["operation"] == "predict":
            outcome = await self._adapter.call(engine.outcome, final["action_id"])
            return wire_values.decode(outcome["result"])
        if final.get("instance_id") is not None and final["operation"] != "remove_instance":
            stored = await self._adapter.call(engine.model, final["instance_id"])
            return Model(stored["instance"], stored["model_type"], stored["instance_id"])
        return None

    def close(self) -> None:
        asyncio.ensure_future(self.async_close())

    async def async_close(self) -> None:
        snapshot = await self._task
        await self._adapter.call(self._adapter._engine.cancel, snapshot["action_id"])


def _convert(value: Any) -> Any:
    """AIMM's DataAccess (a NamedTuple of another class) as this project's."""
    if isinstance(value, tuple) and type(value).__name__ == "DataAccess" and \
            not isinstance(value, DataAccess):
        return DataAccess(value.name, tuple(value.args), dict(value.kwargs))
    return value


def _wire(args: tuple) -> list:
    return [wire_values.encode(_convert(a)) for a in args]


def _wire_kwargs(kwargs: dict) -> dict:
    return {k: wire_values.encode(_convert(v)) for k, v in kwargs.items()}
