"""PluginRunner over speedysvc: plugin calls go to the plugin service's worker pool.

Cancel kills the worker process running the call (its pid comes from the `started` event the
worker publishes); the pool replaces the worker and the pending call fails with WorkerDied.
Calls are made from the engine's pooled action threads: each thread of a speedysvc client
owns a shared-memory channel, so the threads (and their channels) must be long-lived.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Callable, Optional

from speedysvc import connect

from .runner import PluginCall

log = logging.getLogger(__name__)

PID_WAIT_S = 1.5     # how long a kill waits for the `started` event of a call just sent


class CallCancelled(Exception):
    """The call was cancelled before it reached a plugin worker."""


class _Call:
    def __init__(self, on_progress: Callable[[Any], None]):
        self.on_progress = on_progress
        self.pid: Optional[int] = None
        self.kill_requested = False
        self.pid_known = threading.Event()
        self.last_progress: Any = None


class ServicePluginRunner:
    def __init__(self, service_name: str, address: str, connect_timeout: float = 30.0):
        # no call timeout: fits may run for hours; per-action timeouts are the engine's job
        self._client = connect(service_name, address, timeout=None,
                               connect_timeout=connect_timeout)
        self._events = self._client.subscribe(["started", "progress"])
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}
        self._closed = False
        self._listener = threading.Thread(target=self._listen, daemon=True,
                                          name="aimm-plugin-events")
        self._listener.start()

    def registered(self) -> dict:
        return self._client.registered()

    def run(self, call_id: str, call: PluginCall, on_progress: Callable[[Any], None]) -> dict:
        state = _Call(on_progress)
        with self._lock:
            self._calls[call_id] = state
        try:
            reply = self._client.run(call_id, call.kind, call.key, call.instance,
                                     list(call.args), dict(call.kwargs or {}))
        finally:
            with self._lock:
                self._calls.pop(call_id, None)
        final = reply.pop("progress", None)
        if final is not None and final != state.last_progress:
            on_progress(final)
        return reply

    def kill(self, call_id: str) -> None:
        with self._lock:
            state = self._calls.get(call_id)
            if state is None:
                return                    # already finished
            state.kill_requested = True
            pid = state.pid
        if pid is None:
            # the call was sent but its `started` event has not arrived yet
            if not state.pid_known.wait(PID_WAIT_S):
                log.warning("cannot cancel call %s: its worker never reported its pid", call_id)
                return
            with self._lock:
                if call_id not in self._calls:
                    return
                pid = state.pid
        self._kill_pid(call_id, pid)

    def _kill_pid(self, call_id: str, pid: Optional[int]) -> None:
        if not pid or pid == os.getpid():
            return
        log.info("cancelling plugin call %s: killing worker pid %s", call_id, pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _listen(self) -> None:
        try:
            self._listen_until_closed()
        finally:
            # closed by the polling thread itself: closing a speedysvc Subscription from
            # another thread while get() waits crashes the process
            self._events.close()

    def _listen_until_closed(self) -> None:
        while not self._closed:
            try:
                event = self._events.get(timeout=0.2)
            except Exception:
                continue
            payload = event.payload if isinstance(event.payload, dict) else {}
            call_id = payload.get("call_id")
            with self._lock:
                state = self._calls.get(call_id)
                if state is None:
                    continue
                if event.topic == "started":
                    state.pid = payload.get("pid")
                    kill_now = state.kill_requested
                    state.pid_known.set()
                else:
                    kill_now = False
                    state.last_progress = payload.get("progress")
            if event.topic == "started":
                if kill_now:
                    self._kill_pid(call_id, state.pid)
            else:
                try:
                    state.on_progress(payload.get("progress"))
                except Exception:
                    log.exception("progress callback of call %s failed", call_id)

    def close(self) -> None:
        self._closed = True
        self._listener.join(timeout=5)
        self._client.close()
