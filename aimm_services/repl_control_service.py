"""ReplControlService: AIMM's REPL control (repl_control) as a speedysvc service.

Run it with one worker per control entry: the worker binds the control's host:port. The
worker runs an asyncio loop in a thread for the juggler server, and a thread that turns the
engine's events into state updates. Its own speedysvc method (`status`) lets tools see the
address and the number of connected and logged-in sessions.

`control[0]` of the YAML is served by `ReplControlService`, `control[N]` by
`ReplControlServiceN` (made on demand, so a supervisor can import any of them by name).
"""
from __future__ import annotations

import asyncio
import logging
import queue
import ssl
import threading
from typing import Any, Optional

from speedysvc import ServerMethodsBase, connect, msgpack_method

from .config import ControlConfig
from .errors import ConfigError
from .repl_control import ReplControl
from .service_config import load_service_config, running_scope

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
LISTEN_POLL_S = 0.2


class ReplControlService(ServerMethodsBase):
    name = "aimm_repl"
    port = 5320
    aimm_config: Optional[str] = None
    control_index = 0
    engine_service = "aimm_engine"

    def __init__(self, logger_client: Any = None):
        super().__init__(logger_client)
        self.config = load_service_config(self)
        self.control_config = repl_control_config(self.config.controls, self.control_index,
                                                  str(self.config.source))
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._control: Optional[ReplControl] = None
        self._engine: Any = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def on_start(self) -> None:
        self._engine = connect(self.engine_service, f"shm://{running_scope(self)}",
                               timeout=120.0, connect_timeout=START_TIMEOUT_S)
        control = self.control_config
        self._control = ReplControl(self._engine, control.host, control.port,
                                    ssl_ctx=_ssl_context(control))
        self._loop = asyncio.new_event_loop()
        loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                       name="aimm-repl-loop")
        loop_thread.start()
        self._threads.append(loop_thread)
        # fail the worker's start (the supervisor reports it) if the port cannot be bound
        asyncio.run_coroutine_threadsafe(self._control.start(), self._loop).result(
            START_TIMEOUT_S)
        events = threading.Thread(target=self._listen, daemon=True, name="aimm-repl-events")
        events.start()
        self._threads.append(events)

    def on_stop(self) -> None:
        self._stopping.set()
        if self._loop is not None and self._control is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._control.close(), self._loop).result(10)
            except Exception:
                log.exception("REPL control did not close cleanly")
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._engine is not None:
            self._engine.close()

    @msgpack_method
    def status(self) -> dict:
        """The control's address and its connected and logged-in sessions."""
        control = self.control_config
        scheme = "wss" if control.pem_file else "ws"
        sessions = self._control.sessions() if self._control else []
        return {"address": f"{scheme}://{control.host}:{control.port}/ws",
                "connections": len(sessions),
                "logged_in": sum(1 for s in sessions if s.token is not None)}

    def _listen(self) -> None:
        subscription = self._engine.subscribe(["action", "model"])
        missed = 0
        try:
            while not self._stopping.is_set():
                try:
                    event = subscription.get(timeout=LISTEN_POLL_S)
                except queue.Empty:
                    continue
                except Exception:
                    log.exception("engine event subscription failed")
                    self._stopping.wait(0.5)
                    continue
                self._loop.call_soon_threadsafe(self._control.on_engine_event, event.topic,
                                                event.payload)
                if subscription.missed != missed:
                    missed = subscription.missed
                    self._loop.call_soon_threadsafe(self._control.on_events_missed)
        finally:
            # closed by the thread that polls it (see ActionTracker._listen)
            subscription.close()


def repl_control_config(controls: tuple, index: int, source: str) -> ControlConfig:
    """The control entry a REPL control service serves, checked for what it needs."""
    if index >= len(controls):
        raise ConfigError(f"{source}: control[{index}]: missing; the configuration has "
                          f"{len(controls)} control entries")
    control = controls[index]
    if control.host is None or control.port is None:
        raise ConfigError(f"{source}: control[{index}].server: expected {{host, port}} for "
                          f"the REPL control, found nothing")
    return control


def _ssl_context(control: ControlConfig) -> Optional[ssl.SSLContext]:
    if not control.pem_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(control.pem_file))
    return context


def service_class(index: int) -> type:
    """The service class serving control[index]."""
    if index == 0:
        return ReplControlService
    return type(f"ReplControlService{index}", (ReplControlService,),
                {"name": f"aimm_repl_{index}", "port": ReplControlService.port + index,
                 "control_index": index, "__module__": __name__})


def __getattr__(attribute: str) -> type:
    prefix = "ReplControlService"
    if attribute.startswith(prefix) and attribute[len(prefix):].isdigit():
        cls = service_class(int(attribute[len(prefix):]))
        globals()[attribute] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
