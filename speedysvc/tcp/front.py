"""The TCP front of one pool: `python -m speedysvc.tcp.front --scope S --name N --listen-fd FD`.

Started by the pool (tcp/../supervisor/pool.py), which binds and listens on the service's
port and hands this process the listening socket. The front accepts connections, checks
frames and secrets, and forwards each call, still encoded, into the service's shared-memory
queue: any idle worker takes it, so TCP calls spread over the pool like shared-memory calls,
adding workers helps TCP callers, and a worker that dies fails only the call it was running
(WorkerDied for that one call, as over shared memory). The connections live here, not in the
workers, so retiring or replacing a worker never touches them.

SIGTERM: stop accepting, GOAWAY to every connection, finish the calls in progress, exit.
The front dies with its parent (PR_SET_PDEATHSIG), like a worker.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading

from ..worker_main import die_with_parent
from .gateway import TCPGateway
from .settings import TCPSettings

SECRET_ENV = "SPEEDYSVC_TCP_SECRET"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="speedysvc.tcp.front")
    parser.add_argument("--scope", required=True)
    parser.add_argument("--name", required=True, help="service name (shm segment)")
    parser.add_argument("--listen-fd", type=int, required=True, help="the pool's listening socket")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--settings", default="{}", help="TCPSettings fields as JSON (no secret)")
    args = parser.parse_args(argv)

    die_with_parent()
    if args.parent_pid and os.getppid() != args.parent_pid:
        return 1  # the parent died before prctl took effect
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides what Ctrl-C means
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [{args.name} tcp front pid %(process)d] %(name)s: %(message)s")

    settings = TCPSettings(**json.loads(args.settings), secret=os.environ.pop(SECRET_ENV, None) or None)
    listener = socket.socket(fileno=args.listen_fd)
    front = TCPGateway(args.scope, args.name, settings, listener=listener, shared_listener=True)
    front.start()
    try:
        stop.wait()
    finally:
        front.drain(settings.drain_timeout)
        front.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
