"""One worker process: `python -m speedysvc.worker_main --service module:Class --scope S --slot N`.

Started by a pool (serve() or the supervisor), which has already created the service segment
and reserved the worker's slot. The worker dies with its parent: PR_SET_PDEATHSIG covers a
parent killed with SIGKILL, so a crashed supervisor never leaves orphans.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import faulthandler
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from typing import Optional

from .exit_codes import WORKER_CANNOT_HEAL
from .methods import ServerMethodsBase, create_instance
from .shm.events import EventRing
from .shm.service_segment import ServiceSegment
from .worker_boot import booted

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the heartbeat check of the parent remains
        pass


def import_class(path: str) -> type[ServerMethodsBase]:
    """The class `module:Class` (or `module:Outer.Inner`) names; TypeError if it is no service."""
    module_name, _, attr = path.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, ServerMethodsBase)):
        raise TypeError(f"{path} is not a ServerMethodsBase subclass")
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="speedysvc.worker_main")
    parser.add_argument("--service", required=True, help="module:Class of the ServerMethodsBase subclass")
    parser.add_argument("--scope", required=True)
    parser.add_argument("--name", required=True, help="service name (shm segment)")
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--allow-insecure", type=int, choices=(0, 1), default=None)
    args = parser.parse_args(argv)

    die_with_parent()
    if args.parent_pid and os.getppid() != args.parent_pid:
        return 1  # the parent died before prctl took effect
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C in a terminal reaches the whole process group; the supervisor decides what it
    # means (graceful stop, then immediate on the second), so workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [{args.name} w{args.worker_id} pid %(process)d] %(name)s: %(message)s")

    service_cls = import_class(args.service)
    segment = ServiceSegment.open(args.scope, args.name)
    ring = EventRing(args.scope, args.name)
    instance = create_instance(service_cls)
    allow = None if args.allow_insecure is None else bool(args.allow_insecure)
    # TCP callers reach this worker through the pool's TCP front (tcp/front.py), over the
    # same shared-memory queue as local callers
    try:
        with booted(instance, segment, ring, allow) as new_worker:
            new_worker(args.slot, args.worker_id, stop).run()
    finally:
        ring.close()
        segment.close()
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def cannot_heal(exc: BaseException) -> Optional[str]:
    """Why restarting a worker that failed with `exc` would not help, or None if it might."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ImportError, SyntaxError)):
            return "its code does not import"
        if getattr(exc, "errno", None) == errno.EADDRINUSE:
            return "an address it binds is already in use"
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def run() -> int:
    """main(), telling the pool (by exit code) when a start failure is not worth retrying."""
    # a hung worker's stacks, written to its log when the supervisor sends SIGUSR1 before SIGKILL
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    try:
        return main()
    except Exception as exc:
        reason = cannot_heal(exc)
        if reason is None:
            raise
        traceback.print_exc()
        print(f"speedysvc worker cannot start: {reason}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        return WORKER_CANNOT_HEAL


if __name__ == "__main__":
    sys.exit(run())
