"""The one Hat connection of an AIMM server: registration with the monitor server, the
eventer client of the active event server, and what this server is meanwhile.

It runs an asyncio loop in a thread of the process that owns it (the engine process). The
hat-monitor component calls `activate` when this server is blessed (and, with an event
server group, connected to that group's active event server), and `deactivate` when that
ends; until then the server is on standby and says so (`status`). A lost monitor or event
server is reconnected to, forever, with the status telling what is awaited.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Awaitable, Callable, Collection, Optional

from hat import aio
from hat.drivers import net
import hat.event.component
import hat.event.eventer.client
import hat.monitor.component

from .config import HatConfig

log = logging.getLogger(__name__)

RETRY_S = 1.0                       # between attempts to reach an absent server

Activate = Callable[[Optional[Any]], Awaitable[None]]     # eventer client or None
Deactivate = Callable[[], Awaitable[None]]
EventsHandler = Callable[[Collection[Any]], Awaitable[None]]
StatusListener = Callable[[dict], None]


class HatLink:
    """States: "connecting", "waiting" (a Hat server is not reachable), "standby"
    (registered, not the active one), "active", "stopped"."""

    def __init__(self, config: HatConfig, name: str, subscriptions: list,
                 activate: Activate, deactivate: Deactivate, events: EventsHandler,
                 status_listener: Optional[StatusListener] = None):
        self.config = config
        self.name = name
        self.subscriptions = [tuple(s) for s in subscriptions]
        self._activate, self._deactivate, self._events = activate, deactivate, events
        self._status_listener = status_listener
        self._status = {"state": "connecting", "connected": False,
                        "text": f"connecting to Hat ({config.describe()})"}
        self._status_lock = threading.Lock()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.client: Optional[Any] = None     # the eventer client while active
        self._main_task: Optional[asyncio.Task] = None
        self._thread: Optional[threading.Thread] = None
        self._started = threading.Event()
        self._stopping = False

    # ---- from any thread ----

    @property
    def status(self) -> dict:
        with self._status_lock:
            return dict(self._status)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="aimm-hat", daemon=True)
        self._thread.start()
        self._started.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self.loop is not None and self._main_task is not None:
            self.loop.call_soon_threadsafe(self._main_task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)
        self._set_status("stopped", False, "stopped")

    def run(self, coroutine: Awaitable, timeout: Optional[float] = 60.0) -> Any:
        """Run a coroutine on the link's loop and wait for its result (never call this
        from the loop itself)."""
        if self.loop is None:
            raise RuntimeError("the Hat link is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    # ---- the loop ----

    def _thread_main(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._main_task = self.loop.create_task(self._main())
        self._started.set()
        try:
            self.loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            pass
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _main(self) -> None:
        while True:
            try:
                if self.config.uses_monitor:
                    await self._monitor_session()
                else:
                    await self._eventer_session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:     # never let the link die: report and try again
                log.exception("Hat connection failed: %s", exc)
                self._set_status("waiting", False, f"Hat connection failed ({exc}); retrying")
            await asyncio.sleep(RETRY_S)

    async def _monitor_session(self) -> None:
        address = net.TcpAddress(self.config.host, self.config.port)
        try:
            if self.config.event_server_group:
                component = await hat.event.component.connect(
                    addr=address, name=self.name, group=self.config.group,
                    server_group=self.config.event_server_group,
                    client_name=f"aimm/{self.name}",
                    runner_cb=lambda _component, _data, client: self._runner(client),
                    state_cb=self._on_monitor_state,
                    events_cb=lambda _component, _client, events: self._events(events),
                    eventer_kwargs={"subscriptions": self.subscriptions})
            else:
                component = await hat.monitor.component.connect(
                    addr=address, name=self.name, group=self.config.group,
                    runner_cb=lambda _component: self._runner(None),
                    state_cb=self._on_monitor_state)
        except (ConnectionError, OSError) as exc:
            self._set_status("waiting", False, f"waiting for the Hat monitor server at "
                             f"{self.config.host}:{self.config.port} ({_reason(exc)})")
            return
        try:
            self._set_status("standby", False, f"registered with the Hat monitor "
                             f"{self.config.host}:{self.config.port}; waiting to be blessed "
                             f"in group {self.config.group!r}")
            await component.set_ready(True)
            await component.wait_closing()
        finally:
            await aio.uncancellable(component.async_close())
        self._set_status("waiting", False, f"lost the Hat monitor server at "
                         f"{self.config.host}:{self.config.port}; reconnecting")

    async def _eventer_session(self) -> None:
        address = net.TcpAddress(self.config.host, self.config.port)
        try:
            client = await hat.event.eventer.client.connect(
                address, f"aimm/{self.name}", subscriptions=self.subscriptions,
                events_cb=lambda _client, events: self._events(events))
        except (ConnectionError, OSError) as exc:
            self._set_status("waiting", False, f"waiting for the Hat event server at "
                             f"{self.config.host}:{self.config.port} ({_reason(exc)})")
            return
        runner = self._runner(client)
        try:
            await asyncio.wait([asyncio.ensure_future(client.wait_closing()),
                                asyncio.ensure_future(runner.wait_closing())],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            await aio.uncancellable(runner.async_close())
            await aio.uncancellable(client.async_close())
        self._set_status("waiting", False, f"lost the Hat event server at "
                         f"{self.config.host}:{self.config.port}; reconnecting")

    def _runner(self, client: Optional[Any]) -> aio.Group:
        """What runs while this server is the active one: closing it deactivates."""
        group = aio.Group()

        async def run() -> None:
            try:
                self.client = client
                await self._activate(client)
                where = (f"connected to the Hat event server of group "
                         f"{self.config.event_server_group!r}" if self.config.uses_monitor
                         and client is not None else "blessed by the Hat monitor"
                         if client is None else "connected to the Hat event server at "
                         f"{self.config.host}:{self.config.port}")
                self._set_status("active", True, f"active: {where}")
                await asyncio.Future()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("activating the AIMM server failed; giving up the blessing")
                group.close()
            finally:
                self.client = None
                if self._status["state"] == "active":
                    self._set_status("standby", False, self._inactive_text())
                await aio.uncancellable(self._deactivate())

        group.spawn(run)
        return group

    def _inactive_text(self) -> str:
        if self._stopping:
            return "not serving: stopping"
        group = self.config.event_server_group
        if self.config.uses_monitor and group:
            # the monitor state says more if the blessing went too (see _on_monitor_state)
            return (f"not serving: lost the event server; waiting for an event server of "
                    f"group {group!r}")
        return "not serving: no longer blessed by the Hat monitor"

    async def _on_monitor_state(self, _component: Any, state: Any) -> None:
        if self._status["state"] == "active" or state.info is None:
            return
        info = state.info
        if info.blessing_req.token is not None:
            if self.config.event_server_group:
                self._set_status("standby", False, f"blessed in group {self.config.group!r}; "
                                 f"waiting for an event server of group "
                                 f"{self.config.event_server_group!r}")
            return
        others = [c.name for c in state.components
                  if c.group == self.config.group and c.cid != info.cid
                  and c.blessing_req.token is not None]
        if others:
            text = (f"standby: {', '.join(str(n) for n in others)} is the active AIMM server "
                    f"of group {self.config.group!r}")
        else:
            text = f"standby: waiting to be blessed in group {self.config.group!r}"
        self._set_status("standby", False, text)

    def _set_status(self, state: str, connected: bool, text: str) -> None:
        with self._status_lock:
            changed = (self._status["state"], self._status["text"]) != (state, text)
            self._status = {"state": state, "connected": connected, "text": text}
            status = dict(self._status)
        if not changed:
            return
        (log.warning if state == "waiting" else log.info)("Hat: %s", text)
        if self._status_listener is not None:
            try:
                self._status_listener(status)
            except Exception:
                log.debug("Hat status listener failed", exc_info=True)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
