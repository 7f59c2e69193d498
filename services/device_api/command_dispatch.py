"""Runs the application's command handler on a thread pool, never on a transport's
I/O thread, and turns whatever happens into a CommandReply."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from .command_reply import CommandReply, reply_from_response, system_error_reply
from .command_results import CommandResultStore
from .commands import ApiCommandRequest, ApiCommandRequestResult, CommandRequestDelegate
from .transport import ReplyCallback

log = logging.getLogger(__name__)


class CommandDispatcher:
    def __init__(self, workers: int, results: CommandResultStore) -> None:
        self._results = results
        self._delegate: Optional[CommandRequestDelegate] = None
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="device-api-command")
        self._lock = threading.Lock()
        self._closed = False

    @property
    def delegate(self) -> Optional[CommandRequestDelegate]:
        return self._delegate

    @delegate.setter
    def delegate(self, value: Optional[CommandRequestDelegate]) -> None:
        self._delegate = value

    def submit(self, request: ApiCommandRequest, on_reply: ReplyCallback) -> None:
        """Returns at once; `on_reply` is called exactly once, from a pool thread or from here."""
        delegate = self._delegate
        if delegate is None:
            _deliver(on_reply, system_error_reply(
                request, ApiCommandRequestResult.UNAVAILABLE, "no command handler is registered"))
            return
        with self._lock:
            if not self._closed:
                self._executor.submit(self._run, delegate, request, on_reply)
                return
        _deliver(on_reply, system_error_reply(
            request, ApiCommandRequestResult.UNAVAILABLE, "the device API is stopping"))

    def close(self) -> None:
        """Refuse new commands; handlers already running finish on their own threads."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=False)

    def _run(self, delegate: CommandRequestDelegate, request: ApiCommandRequest, on_reply: ReplyCallback) -> None:
        try:
            response = delegate(request)
        except Exception as exc:
            log.warning("command handler raised for command %s nonce %s", request.command, request.nonce, exc_info=True)
            reply = system_error_reply(request, ApiCommandRequestResult.EXCEPTION, str(exc) or type(exc).__name__)
        else:
            reply = reply_from_response(request, response)
        if reply.result == ApiCommandRequestResult.PENDING_WITH_NOTIFICATION:
            self._results.mark_pending(request.nonce, int(request.command))
        _deliver(on_reply, reply)


def _deliver(on_reply: ReplyCallback, reply: CommandReply) -> None:
    try:
        on_reply(reply)
    except Exception:  # a transport that went away must not take the pool thread with it
        log.exception("could not deliver the reply to command %s nonce %s", reply.command, reply.nonce)
