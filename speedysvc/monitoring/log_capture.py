"""Capturing what services print and log into their LogWriter files.

Each worker (and TCP gateway) gets its own stdout and stderr pipes, so every line can be
attributed to a pid and worker id. One reader thread serves every pipe of the supervisor
through a selector; it turns lines into records (level parsed from logging-formatted lines)
and appends them to the service's log. The supervisor's own records about a service
(restarts, scaling decisions) reach the same file through `ServiceLogHandler`.
"""
from __future__ import annotations

import collections
import logging
import os
import re
import selectors
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .log_store import LEVELS, LogWriter, make_record

log = logging.getLogger("speedysvc.log_capture")

_RANK = {name: i for i, name in enumerate(LEVELS)}
MAX_LINE = 64 * 1024
# kept per live worker to show the traceback of a crash; bounded so chatty workers cost little
RECENT_STDERR_LINES = 120
MAX_KEPT_LINE = 2000
# The format speedysvc.worker_main gives the logging module in a worker:
# "2024-01-01 12:00:00,123 WARNING [echo w3 pid 4242] mymodule: message"
_WORKER_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\[[^\]]* w\d+ pid \d+\] (.*)$", re.DOTALL)
SERVICE_LOGGER = "speedysvc.service"


@dataclass
class PipePair:
    stdout_r: int
    stdout_w: int
    stderr_r: int
    stderr_w: int


@dataclass
class _Source:
    sink: "ServiceLogs"
    stream: str
    pid: Optional[int]
    worker_id: Optional[int]
    on_line: Optional[Callable[[str], None]] = None
    buffer: bytes = b""


class ServiceLogs:
    """The log of one service: where its records go, and how its workers' pipes are made."""

    def __init__(self, capture: "LogCapture", name: str, log_dir: str, max_bytes: int, backups: int,
                 level: str = "INFO"):
        self.capture = capture
        self.name = name
        self.log_dir = log_dir
        self.writer = LogWriter(log_dir, name, max_bytes=max_bytes, backups=backups)
        self.min_rank = _RANK.get(level.upper(), 1)
        self._last_error: dict[Optional[int], str] = {}
        self._recent_stderr: dict[int, collections.deque[str]] = {}
        self._eof: dict[int, threading.Event] = {}

    def reconfigure(self, log_dir: str, max_bytes: int, backups: int, level: str) -> None:
        self.min_rank = _RANK.get(level.upper(), 1)
        w = self.writer
        if (log_dir, max_bytes, backups) != (self.log_dir, w.max_bytes, w.backups):
            self.log_dir = log_dir
            self.writer = LogWriter(log_dir, self.name, max_bytes=max_bytes, backups=backups)
            w.close()

    def write(self, stream: str, message: str, *, pid: Optional[int], worker_id: Optional[int],
              level: Optional[str] = None, ts: Optional[float] = None) -> None:
        record = make_record(stream, message, pid=pid or 0, worker_id=worker_id,
                             ts=time.time() if ts is None else ts, level=level)
        rank = _RANK.get(record["level"], 3)
        if rank >= _RANK["ERROR"] and worker_id is not None:
            self._last_error[worker_id] = message
        if stream == "stderr" and worker_id is not None:
            recent = self._recent_stderr.get(worker_id)
            if recent is None:
                recent = self._recent_stderr[worker_id] = collections.deque(maxlen=RECENT_STDERR_LINES)
            recent.append(message[:MAX_KEPT_LINE])
        if rank >= self.min_rank:
            self.writer.write(record)

    # -- pipes of a worker -----------------------------------------------------------------
    def new_pipes(self) -> PipePair:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        return PipePair(out_r, out_w, err_r, err_w)

    def attach(self, pipes: PipePair, pid: int, worker_id: Optional[int]) -> None:
        """After the worker started: close our copies of its ends and read ours."""
        os.close(pipes.stdout_w)
        os.close(pipes.stderr_w)
        if worker_id is not None:
            self._eof[worker_id] = threading.Event()
        self.capture.register(pipes.stdout_r, _Source(self, "stdout", pid, worker_id))
        self.capture.register(pipes.stderr_r, _Source(self, "stderr", pid, worker_id))

    def discard(self, pipes: PipePair) -> None:
        for fd in (pipes.stdout_r, pipes.stdout_w, pipes.stderr_r, pipes.stderr_w):
            os.close(fd)

    def _closed(self, source: _Source) -> None:
        if source.stream == "stderr" and source.worker_id in self._eof:
            self._eof[source.worker_id].set()

    def last_error_line(self, worker_id: int, wait: float = 0.3) -> Optional[str]:
        """The last error a worker printed; waits briefly for its stderr to be read to the end."""
        eof = self._eof.pop(worker_id, None)
        if eof is not None:
            eof.wait(wait)
        return self._last_error.pop(worker_id, None)

    def last_traceback(self, worker_id: int) -> Optional[str]:
        """The last Python traceback a worker printed on stderr (call after last_error_line,
        which waits for the pipe to be read to the end), or None."""
        try:
            recent = list(self._recent_stderr.pop(worker_id, ()))
        except RuntimeError:  # the reader thread is still appending: its pipe did not close in time
            return None
        starts = [i for i, line in enumerate(recent) if line.startswith("Traceback (most recent call last)")]
        if not starts:
            return None
        return "\n".join(recent[starts[-1]:])

    def forget(self, worker_id: int) -> None:
        """A worker stopped as asked: drop what was kept to explain a crash."""
        self._eof.pop(worker_id, None)
        self._last_error.pop(worker_id, None)
        self._recent_stderr.pop(worker_id, None)

    def close(self) -> None:
        self.writer.close()


class LogCapture:
    """The reader thread and the registry of service logs."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceLogs] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[tuple[int, _Source]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speedysvc-log-capture", daemon=True)
        self._thread.start()

    def service(self, name: str, log_dir: str, max_bytes: int, backups: int,
                level: str = "INFO") -> ServiceLogs:
        sink = self.services.get(name)
        if sink is None:
            sink = self.services[name] = ServiceLogs(self, name, log_dir, max_bytes, backups, level)
        else:
            sink.reconfigure(log_dir, max_bytes, backups, level)
        return sink

    def register(self, fd: int, source: _Source) -> None:
        with self._lock:
            self._pending.append((fd, source))
        self._wake()

    def attach_process(self, sink: ServiceLogs, pid: int, stdout_fd: Optional[int], stderr_fd: Optional[int],
                       on_line: Optional[Callable[[str], None]] = None) -> None:
        """Read the pipes of a helper process (e.g. the web monitor) into `sink`."""
        if stdout_fd is not None:
            self.register(stdout_fd, _Source(sink, "stdout", pid, None, on_line))
        if stderr_fd is not None:
            self.register(stderr_fd, _Source(sink, "stderr", pid, None, on_line))

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(1.0):
                if key.data is None:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                self._read(key.fd, key.data)
            with self._lock:
                pending, self._pending = self._pending, []
            for fd, source in pending:
                self._selector.register(fd, selectors.EVENT_READ, source)
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._read_to_end(key.fd, key.data)

    def _read(self, fd: int, source: _Source) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            self._emit_buffer(source, final=True)
            self._selector.unregister(fd)
            os.close(fd)
            source.sink._closed(source)
            return
        source.buffer += data
        self._emit_buffer(source)

    def _read_to_end(self, fd: int, source: _Source) -> None:
        os.set_blocking(fd, False)
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                source.buffer += data
        except (BlockingIOError, OSError):
            pass
        self._emit_buffer(source, final=True)
        self._selector.unregister(fd)
        os.close(fd)

    def _emit_buffer(self, source: _Source, final: bool = False) -> None:
        *lines, rest = source.buffer.split(b"\n")
        if final and rest or len(rest) > MAX_LINE:
            lines.append(rest)
            rest = b""
        source.buffer = rest
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip("\r")
            if not text:
                continue
            try:
                self._emit(source, text)
            except Exception:  # noqa: BLE001 - a full disk must not kill the reader thread
                log.exception("could not write a log line of %s", source.sink.name)

    @staticmethod
    def _emit(source: _Source, text: str) -> None:
        if source.on_line is not None:
            source.on_line(text)
        m = _WORKER_RECORD.match(text) if source.stream == "stderr" else None
        if m:
            source.sink.write("log", m.group(2), pid=source.pid, worker_id=source.worker_id,
                              level=m.group(1))
        else:
            source.sink.write(source.stream, text, pid=source.pid, worker_id=source.worker_id)

    def stop(self, timeout: float = 2.0) -> None:
        """Read what is left in the pipes, then stop the thread and close the logs."""
        self._stop.set()
        self._wake()
        self._thread.join(timeout)
        for sink in self.services.values():
            sink.close()


class ServiceLogHandler(logging.Handler):
    """Routes records of loggers named speedysvc.service.<name> to that service's log."""

    def __init__(self, capture: LogCapture):
        super().__init__(logging.DEBUG)
        self.capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name[len(SERVICE_LOGGER) + 1:]
        sink = self.capture.services.get(name)
        if sink is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            sink.write("log", message, pid=record.process, worker_id=None, level=record.levelname,
                       ts=record.created)
        except Exception:  # noqa: BLE001
            self.handleError(record)


class WriterHandler(logging.Handler):
    """Writes every record to one LogWriter (the supervisor's own log)."""

    def __init__(self, sink: ServiceLogs):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = f"{record.name}: {record.getMessage()}"
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.sink.write("log", message, pid=record.process, worker_id=None,
                            level=record.levelname, ts=record.created)
        except Exception:  # noqa: BLE001
            self.handleError(record)
