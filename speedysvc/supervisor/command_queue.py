"""Commands from the control API's threads, carried out on the arbiter's main loop.

A caller waits for its command's result (or exception) up to a timeout; commands still queued
when the supervisor shuts down fail with ControlUnavailable rather than hang.
"""
from __future__ import annotations

import concurrent.futures
import queue
import time
from typing import Any, Callable, Iterator


class ControlUnavailable(Exception):
    """The supervisor is shutting down and no longer takes commands."""


class CommandQueue:
    def __init__(self, wake: Callable[[], None]):
        self._queue: "queue.SimpleQueue[tuple[str, tuple[Any, ...], concurrent.futures.Future[Any]]]" = (
            queue.SimpleQueue())
        self._wake = wake
        self._accepting = True

    def submit(self, command: str, args: tuple[Any, ...], timeout: float) -> Any:
        """Queue `command` and wait for its result (from a control API thread)."""
        if not self._accepting:
            raise ControlUnavailable("the supervisor is shutting down")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((command, args, future))
        self._wake()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(0.25)
            except concurrent.futures.TimeoutError:
                if not self._accepting:
                    raise ControlUnavailable("the supervisor is shutting down") from None
                if time.monotonic() > deadline:
                    raise

    def waiting(self) -> bool:
        return not self._queue.empty()

    def run_all(self, run: Callable[[str, tuple[Any, ...]], Any]) -> None:
        """Carry out every queued command (main loop)."""
        for command, args, future in self._pending():
            try:
                future.set_result(run(command, args))
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                future.set_exception(exc)

    def close(self) -> None:
        """Refuse new commands; fail the queued ones."""
        self._accepting = False
        for _command, _args, future in self._pending():
            future.set_exception(ControlUnavailable("the supervisor is shutting down"))

    def _pending(self) -> Iterator[tuple[str, tuple[Any, ...], concurrent.futures.Future[Any]]]:
        """Queued commands whose callers still wait for them."""
        while True:
            try:
                command, args, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                yield command, args, future
