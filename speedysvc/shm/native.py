"""Which shared-memory call path this process uses: the compiled one or the pure-Python one.

The compiled extension (`speedysvc.shm._fastpath`, built by `pip install` when a C compiler is
present) runs the per-call protocol below the interpreter: atomics on the call queue, spinning
and waiting with the GIL released, the worker table updated in C. Without it -- or with
SPEEDYSVC_PURE_PYTHON=1 in the environment, which the workers a process starts inherit -- the
pure-Python fallback runs the same protocol with a kernel-released lock (see service_segment).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

log = logging.getLogger("speedysvc.shm")

FORCE_PURE_ENV = "SPEEDYSVC_PURE_PYTHON"

try:
    from . import _fastpath as _ext  # type: ignore[attr-defined]
    _import_error: Optional[str] = None
    NotDecoded: type[Exception] = _ext.NotDecoded
except ImportError as exc:  # no compiler at install time: the fallback works everywhere
    _ext = None
    _import_error = str(exc)

    class NotDecoded(Exception):  # type: ignore[no-redef]  # never raised without the extension
        """Raised by the compiled call_decoded(); defined here so the name always exists."""

_warned = False


def forced_pure() -> bool:
    return os.environ.get(FORCE_PURE_ENV, "") not in ("", "0")


def active() -> bool:
    """True when this process uses the compiled path (checked when objects are made, so a
    test or a tool may switch paths by setting the environment variable)."""
    global _warned
    if forced_pure():
        return False
    if _ext is None:
        if not _warned:
            _warned = True
            log.warning("speedysvc: the compiled shared-memory extension is not available (%s); using the "
                        "slower pure-Python path. Reinstall speedysvc with a C compiler present to build it.",
                        _import_error)
        return False
    return True


def reason() -> str:
    if forced_pure():
        return f"{FORCE_PURE_ENV}=1 is set"
    if _ext is None:
        return f"the compiled extension is not built ({_import_error})"
    return "the compiled extension is active"


def path_name() -> str:
    """One line for --version and the monitor: which path, and why."""
    if active():
        return "shared-memory path: compiled (speedysvc.shm._fastpath)"
    return f"shared-memory path: pure Python ({reason()})"


def ext() -> Any:
    return _ext


def mismatch_message(service: str) -> str:
    return (f"service {service!r} runs the compiled shared-memory queue, but this process is a "
            f"pure-Python worker ({reason()}); start every worker of a service with the same "
            f"setting (unset {FORCE_PURE_ENV} here, or set it for the whole supervisor)")


_configured = False


def _configure() -> None:
    """Hand the layout constants to the extension: one definition of layout 4, in Python."""
    global _configured
    from . import channel as ch
    from . import service_segment as ss
    _set_unpack()
    _ext.configure(dict(
        pending_word=ss.PENDING_WORD, pending_words=ss.PENDING_WORDS, slots_word=ss.SLOTS_WORD,
        slot_words=ss.SLOT_WORDS, slot_count=ss.SLOT_COUNT, pure_first=ss.PURE_FIRST_SLOT,
        workers_word=ss.WORKERS_OFFSET // 8, worker_words=ss.WORKER_WORDS, max_workers=ss.MAX_WORKERS,
        h_spinner=ss.H_SPINNER, h_shutdown=ss.H_SHUTDOWN, service_bytes=ss.TOTAL_BYTES,
        w_pid=ss.W_PID, w_state=ss.W_STATE, w_heartbeat=ss.W_HEARTBEAT_NS, w_busy_since=ss.W_BUSY_SINCE_NS,
        w_calls=ss.W_CALLS, w_errors=ss.W_ERRORS, w_busy_ns=ss.W_BUSY_NS, w_client_pid=ss.W_CLIENT_PID,
        worker_idle=ss.IDLE, worker_busy=ss.BUSY,
        c_state=ch.C_STATE, c_seq=ch.C_SEQ, c_req_len=ch.C_REQ_LEN, c_resp_len=ch.C_RESP_LEN,
        c_worker_pid=ch.C_WORKER_PID, c_client_pid=ch.C_CLIENT_PID, c_overflow=ch.C_OVERFLOW,
        c_resp_offset=ch.C_RESP_OFFSET, data_offset=ch.DATA_OFFSET, min_channel_bytes=ch.MIN_CHANNEL_BYTES,
        s_request=ch.REQUEST, s_claimed=ch.CLAIMED, s_reply=ch.REPLY,
        spin_max_ns=ch.NATIVE_SPIN_NS, poll_ns=int(ch.POLL_S * 1e9)))
    _configured = True


def attach_service(seg: Any) -> Any:
    """The compiled view of an atomic-mode service segment, or None on the pure path (whose
    clients still interoperate with it; its workers cannot)."""
    if not active():
        return None
    if not _configured:
        _configure()
    return _ext.Service(seg.seg.mmap, seg.queue_sem.name)


def reply_reader() -> Any:
    """_fastpath.read_reply for the TCP client, or None on the pure path."""
    if _ext is None or forced_pure():
        return None
    _set_unpack()
    return _ext.read_reply


def _set_unpack() -> None:
    """Hand the extension msgpack's unpack with the serialiser's options (one definition)."""
    from .. import serialisers
    _ext.set_unpack(serialisers.UNPACK_PLAIN)


def route() -> Any:
    """A client's Route (see _fastpath.c): the steady state its Callers run on."""
    return _ext.Route()


def caller(*args: Any) -> Any:
    """A remote method called without a Python frame: _fastpath.Caller(*args)."""
    return _ext.Caller(*args)


def channel(seg: Any, sem_name: str) -> Any:
    """The compiled view of a channel segment (either side)."""
    if not _configured:
        _configure()
    return _ext.Channel(seg.mmap, sem_name)
