"""PluginService: runs plugin calls (instantiate, data access, fit, predict) in its workers.

Stateless: every call brings what it needs (model bytes, wire-encoded arguments), so any
worker can take any call and the pool size is the plugin parallelism. While a call runs the
worker publishes `started` {call_id, pid} (the engine kills that pid to cancel the call) and
`progress` {call_id, progress} whenever the plugin calls its state callback.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Optional

from speedysvc import ServerMethodsBase, msgpack_method

from . import plugin_execution
from .json_representation import to_plain_json
from .plugins import default_registry, load_plugins
from .service_config import load_service_config

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05   # at most 20 progress events per second per call


class ProgressReporter:
    """The state callback handed to plugins: publishes progress, at a bounded rate."""

    def __init__(self, service: ServerMethodsBase, call_id: str):
        self._service = service
        self._call_id = call_id
        self._last_sent = 0.0
        self._lock = threading.Lock()   # plugins may report from their own threads
        self.last: Any = None

    def __call__(self, state: Any = None, *args: Any, **kwargs: Any) -> None:
        try:
            value = to_plain_json(state)
        except Exception:
            value = repr(state)          # progress must never break the plugin
        with self._lock:
            self.last = value
            now = time.monotonic()
            if now - self._last_sent < PROGRESS_INTERVAL_S:
                return
            self._last_sent = now
        try:
            self._service.publish("progress", {"call_id": self._call_id, "progress": value})
        except Exception:
            log.warning("progress of call %s not published (too large?)", self._call_id)


class PluginService(ServerMethodsBase):
    name = "aimm_plugins"
    port = 5312
    aimm_config: Optional[str] = None   # subclasses may bind a YAML file; else $AIMM_CONFIG

    def __init__(self, logger_client: Any = None):
        super().__init__(logger_client)
        self.config = load_service_config(self)
        load_plugins(self.config.plugin_modules)
        log.info("plugins loaded from %s: %s", self.config.source,
                 ", ".join(self.config.plugin_modules) or "none")

    @msgpack_method
    def registered(self) -> dict:
        """Registered plugin keys per kind."""
        return default_registry.keys()

    @msgpack_method
    def run(self, call_id: str, kind: str, key: str, instance: Optional[bytes], args: list,
            kwargs: dict) -> dict:
        """Run one plugin call (see plugin_execution.execute for the reply)."""
        self.publish("started", {"call_id": call_id, "pid": os.getpid()})
        reporter = ProgressReporter(self, call_id)
        reply = plugin_execution.execute(kind, key, instance, args, kwargs, reporter)
        reply["progress"] = reporter.last
        return reply
