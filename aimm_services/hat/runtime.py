"""What the `hat` section makes of the engine process: the Hat link, and while this server
is the active one, the engine with its Hat-aware backend and controls.

The engine process holds the only Hat connection of an AIMM server. The combined
subscription of the Hat-aware backend and controls (their `get_subscriptions`) is the
connection's subscription, and received events go to each component whose subscription
matches, as in AIMM. Those components run in the engine process, on the link's loop: the
event backend as the engine's model store, the event control and custom controls next to
the engine they call. Services in other processes (the REPL controls, the JSON control)
reach the engine over speedysvc as always; while this server is on standby, their calls
fail with HatNotActive saying what it waits for.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Optional

import hat.event.common

from ..config import AimmConfig
from .aimm_engine import AimmEngineAdapter
from .config import EVENT_BACKENDS, EVENT_CONTROLS, HatComponentConfig, subscription_function
from .event_backend import EventModelStore
from .event_control import EventControl
from .link import HatLink

log = logging.getLogger(__name__)

MakeEngine = Callable[[Optional[Any]], Any]       # model store (None: the default) -> Engine
DropEngine = Callable[[], None]


class HatRuntime:
    def __init__(self, config: AimmConfig, make_engine: MakeEngine, drop_engine: DropEngine,
                 status_listener: Optional[Callable[[dict], None]] = None):
        self.config = config
        self._make_engine, self._drop_engine = make_engine, drop_engine
        self._routes: list[tuple[Any, HatComponentConfig]] = []   # (subscription, entry)
        subscriptions: list = []
        for entry in ([config.hat_backend] if config.hat_backend else []) + \
                list(config.hat_controls):
            types = component_subscriptions(entry)
            subscriptions.extend(types)
            self._routes.append((hat.event.common.create_subscription(types), entry))
        self._components: dict[int, Any] = {}      # id(entry) -> running component
        self.engine: Any = None
        self.link = HatLink(config.hat, config.name, subscriptions, self._activate,
                            self._deactivate, self._on_events, status_listener)

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    @property
    def status(self) -> dict:
        return self.link.status

    def on_engine_event(self, topic: str, payload: dict) -> None:
        """Engine events (from engine threads) for the components that follow them."""
        for component in list(self._components.values()):
            listener = getattr(component, "on_engine_event", None)
            if listener is not None:
                listener(topic, payload)

    # ---- on the link's loop ----

    async def _activate(self, client: Optional[Any]) -> None:
        store = None
        backend = self.config.hat_backend
        if backend is not None:
            if backend.module in EVENT_BACKENDS:
                store = await asyncio.to_thread(EventModelStore, client, self.link.run,
                                                backend.conf["model_prefix"])
            else:
                # a custom store serves the engine's threads: it gets a blocking client
                create = backend.import_module().create
                store = await _maybe_await(await asyncio.to_thread(
                    create, backend.conf, SyncEventClient(client, self.link.run)))
                self._components[id(backend)] = store
        self.engine = await asyncio.to_thread(self._make_engine, store)
        log.info("AIMM server %r is active in Hat: %d models", self.config.name,
                 len(self.engine.models()))
        for entry in self.config.hat_controls:
            if entry.module in EVENT_CONTROLS:
                control = EventControl(entry.conf, self.engine, client)
                self._components[id(entry)] = control
                await control.start()
            else:
                adapter = AimmEngineAdapter(self.engine)
                self._components[id(entry)] = _CustomControl(adapter, await _create(
                    entry.import_module().create, entry.conf, adapter, client))

    async def _deactivate(self) -> None:
        components, self._components = self._components, {}
        for component in components.values():
            await _close(component)
        if self.engine is not None:
            self.engine = None
            await asyncio.to_thread(self._drop_engine)

    async def _on_events(self, events: Any) -> None:
        for subscription, entry in self._routes:
            component = self._components.get(id(entry))
            matching = [e for e in events if subscription.matches(e.type)]
            if component is None or not matching:
                continue
            try:
                await component.process_events(matching)
            except Exception:
                log.exception("%s failed to process %d events", entry.module, len(matching))


def component_subscriptions(entry: HatComponentConfig) -> list:
    """The event types a Hat-aware backend or control subscribes to."""
    function = subscription_function(entry.import_module())
    types = function(entry.conf) if function is not None else []
    return [tuple(t) for t in types or []]


class SyncEventClient:
    """The eventer client for code running in threads (custom model stores): the same
    register and query, blocking until the event server answers."""

    def __init__(self, client: Any, run: Callable):
        self._client, self._run = client, run

    def register(self, events: Any, with_response: bool = False) -> Any:
        return self._run(self._client.register(events, with_response=with_response))

    def query(self, params: Any) -> Any:
        return self._run(self._client.query(params))


class _CustomControl:
    """A custom control's AIMM-style object, fed the engine's events through its adapter."""

    def __init__(self, adapter: AimmEngineAdapter, control: Any):
        self.adapter, self.control = adapter, control

    def on_engine_event(self, topic: str, payload: dict) -> None:
        self.adapter.on_engine_event(topic, payload)

    async def process_events(self, events: Any) -> None:
        await _maybe_await(self.control.process_events(events))

    async def close(self) -> None:
        await _close(self.control)
        await self.adapter.close()


async def _create(function: Callable, *args: Any) -> Any:
    """AIMM's modules define create(conf, [engine,] event_client), sync or async."""
    return await _maybe_await(function(*args))


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _close(component: Any) -> None:
    for name in ("async_close", "close"):
        method = getattr(component, name, None)
        if callable(method):
            try:
                await _maybe_await(method())
            except Exception:
                log.exception("closing %r failed", component)
            return
