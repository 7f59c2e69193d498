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
except ImportError as exc:  # no compiler at install time: the fallback works everywhere
    _ext = None
    _import_error = str(exc)

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


def attach_service(seg: Any) -> Any:
    """The compiled view of an atomic-mode service segment, or None on the pure path (whose
    clients still interoperate with it; its workers cannot)."""
    if not active():
        return None
    return _ext.Service(seg.seg.mmap, seg.queue_sem.name)
