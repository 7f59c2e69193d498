"""The Serve deployment that runs one ServerMethodsBase class: one replica = one worker.

A call arrives as the bytes the shm and TCP transports carry (encoded in the client, see
dispatch.encode_request) and leaves as their reply bytes, so every encoder, numpy array,
tuple, int key and remote exception behaves exactly as over shared memory or TCP. The
replica runs the service's code on its own thread(s) (max_ongoing_requests of them), never on
Serve's event loop, so health checks and reports go on during a long call.

At most once: Serve's router re-sends a request to another replica when the one it chose
died before confirming it had accepted it -- and that replica may already have started the
call. So every call carries a request id and its attempt number (counted by the client each
time the router serialises the request, see client.Attempt). Before running attempt 1 the
replica appends the id to a claims file on its own node (a few microseconds, and it survives
the replica's death); a later attempt first asks every node whether a claims file there holds
the id, and if one does answers WorkerDied instead of running the call a second time.

Readings: a thread reports the replica's own pid, node, RSS/USS, CPU, calls, errors and
per-method latency histograms to the board every metrics interval, with its new log lines.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import types
from typing import Any, Optional

import psutil
import ray
from ray import serve

from .. import errors, serialisers
from ..dispatch import Dispatcher
from ..methods import create_instance
from ..shm.events import MAX_EVENT_BYTES
from ..worker_main import import_class
from . import board as board_mod
from . import claims
from .names import NAMESPACE, app_name, board_name

MAX_LINES_PER_REPORT = 500


class _LineSink:
    """Collects log lines (stdout, stderr, log records) for the next report."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[tuple] = []

    def add(self, stream: str, message: str, level: Optional[str] = None) -> None:
        with self.lock:
            if len(self.lines) < MAX_LINES_PER_REPORT:
                self.lines.append((time.time(), stream, level, message))

    def take(self) -> list:
        with self.lock:
            lines, self.lines = self.lines, []
        return lines


class _Tee:
    """sys.stdout/stderr of the replica: Ray's own log file still gets everything."""

    def __init__(self, stream: Any, name: str, sink: _LineSink):
        self._stream, self._name, self._sink, self._buf = stream, name, sink, ""

    def write(self, text: str) -> int:
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if line.strip():
                self._sink.add(self._name, line)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _SinkHandler(logging.Handler):
    def __init__(self, sink: _LineSink):
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("ray"):
            return  # Serve's own records stay in Ray's logs
        try:
            self.sink.add("log", self.format(record), record.levelname)
        except Exception:  # noqa: BLE001 - logging must never fail a call
            pass


class RayPublisher:
    """publish() of a service run by Ray: events go to the service's board."""

    def __init__(self, board: Any, scope: str):
        self.board = board
        self.ring = types.SimpleNamespace(scope=scope)  # ServerMethodsBase.scope reads it

    def publish(self, topic: str, payload: Any) -> int:
        body = serialisers.join_parts(serialisers.CONTROL.encode(payload))
        if len(body) > MAX_EVENT_BYTES:
            raise errors.PayloadTooLarge(
                f"event on {topic!r} is {len(body)} bytes; at most {MAX_EVENT_BYTES} (as over "
                f"shared memory): publish a reference and fetch the data with a call")
        return ray.get(self.board.publish.remote(topic, body))


class SpeedysvcReplica:
    def __init__(self, import_path: str, scope: str, service: str, settings: dict):
        self.settings = settings
        self.service = service
        self.sink = _LineSink()
        sys.stdout = _Tee(sys.stdout, "stdout", self.sink)
        sys.stderr = _Tee(sys.stderr, "stderr", self.sink)
        handler = _SinkHandler(self.sink)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        if logging.getLogger().level > logging.INFO:
            logging.getLogger().setLevel(logging.INFO)
        context = serve.get_replica_context()
        self.replica_id = context.replica_id.unique_id
        self.actor_name = context.replica_id.to_full_id_str()
        self.board = board_mod.lookup(board_name(scope, service), NAMESPACE)
        self.instance = create_instance(import_class(import_path))
        self.instance._speedysvc_publisher = RayPublisher(self.board, scope)
        self.instance.on_start()
        self.dispatcher = Dispatcher(self.instance, True)  # every encoder: we are in the cluster
        self.claims_dir = settings.get("claims_dir") or claims.default_dir()
        self.claims_name = app_name(scope, service)
        self.claims = (claims.ClaimsFile(self.claims_dir, self.claims_name)
                       if settings.get("at_most_once", True) else None)
        self.busy = 0
        self.redeliveries = 0   # requests Serve's router sent again (after a rejection or death)
        self.started_at = time.time()
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        self.node = ray.util.get_node_ip_address()
        self.stopping = threading.Event()
        self.reporter = threading.Thread(target=self._report_loop, daemon=True,
                                         name="speedysvc-report")
        self.reporter.start()
        self._duplicate = b"".join(bytes(p) for p in Dispatcher.error_reply(errors.WorkerDied(
            "this call was delivered again after the replica that had it died; speedysvc runs a "
            "call at most once, so it was not run again")))

    def call(self, request_id: bytes, attempt: int, request: bytes) -> bytes:
        # a plain method: Serve runs it on its own thread(s), never on its event loop
        if attempt > 1:
            self.redeliveries += 1
        if self.claims is not None and request_id:
            if attempt > 1 and claims.claimed_anywhere(self.claims_dir, self.claims_name,
                                                       request_id):
                return self._duplicate
            self.claims.add(request_id)
        self.busy += 1
        try:
            return b"".join(self.dispatcher.handle(memoryview(request)))
        finally:
            self.busy -= 1

    def check_health(self) -> None:
        """Serve calls this periodically: a replica over max_proc_mem_bytes is replaced."""
        limit = self.settings.get("max_proc_mem_bytes") or 0
        if limit:
            rss = self.process.memory_info().rss
            if rss > limit:
                raise RuntimeError(f"replica uses {rss >> 20} MiB, over max_proc_mem_bytes "
                                   f"{limit >> 20} MiB: Serve replaces it")

    def reading(self) -> dict:
        try:
            with self.process.oneshot():
                mem = self.process.memory_full_info()
                cpu = self.process.cpu_percent(None)
        except psutil.Error:
            mem, cpu = None, 0.0
        d = self.dispatcher
        return {"pid": os.getpid(), "node": self.node, "actor": self.actor_name,
                "started_at": self.started_at, "state": "busy" if self.busy else "idle",
                "rss": mem.rss if mem else 0, "uss": getattr(mem, "uss", 0) if mem else 0,
                "cpu_percent": cpu, "calls": d.calls, "errors": d.errors,
                "redeliveries": self.redeliveries,
                "stats": {m: [st[0], st[1], dict(st[2])] for m, st in d.stats.items() if st[0]}}

    def _report_loop(self) -> None:
        interval = max(0.1, float(self.settings.get("metrics_interval", 1.0)))
        while not self.stopping.is_set():
            try:
                self.board.report.remote(self.replica_id, self.reading(), self.sink.take())
            except Exception:  # noqa: BLE001 - the board may be gone while we stop
                pass
            self.stopping.wait(interval)

    def __del__(self) -> None:
        # Serve calls this when it stops the replica gracefully
        self.stopping.set()
        try:
            self.instance.on_stop()
        finally:
            try:
                self.board.forget.remote(self.replica_id)
            except Exception:  # noqa: BLE001
                pass
            if self.claims is not None:
                self.claims.close()


def build_application(import_path: str, scope: str, service: str, settings: dict,
                      options: dict) -> Any:
    """The Serve application of one service: a single deployment named after it."""
    deployment = serve.deployment(SpeedysvcReplica, name=service, **options)
    return deployment.bind(import_path, scope, service, settings)
