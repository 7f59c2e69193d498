"""Run the web monitor on its own against a running supervisor.

    python -m web_monitor [--host H] [--port P] [--scope S | --control ADDRESS] [--ini FILE]

The password hash comes from [web monitor] password_hash in --ini, or from
SPEEDYSVC_MONITOR_PASSWORD_HASH; off-loopback the monitor refuses to start without one."""
from __future__ import annotations

import argparse
import errno
import configparser
import logging
import signal
import sys
import threading

from .control import connect_control
from .server import MonitorServer
from .settings import SECTION, MonitorConfigError, MonitorSettings, check_port

EXIT_CONFIG = 2
EXIT_PORT_TAKEN = 3  # the supervisor does not retry these two: retrying cannot heal them


def _ini_section(path: str) -> dict[str, str]:
    # No interpolation: a password hash or path may contain '%'.
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(path):
        raise MonitorConfigError(f"{path}: cannot read the file")
    return dict(parser[SECTION]) if parser.has_section(SECTION) else {}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m web_monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="address to listen on (default: from --ini, else 127.0.0.1)")
    parser.add_argument("--port", help="port to listen on (default: from --ini, else 5155)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--scope", help="the supervisor's scope; connects to shm://SCOPE (default: "
                                        "the one running supervisor of this user)")
    target.add_argument("--control", metavar="ADDRESS",
                        help="the control service address, e.g. shm://SCOPE or tcp://127.0.0.1:PORT")
    parser.add_argument("--ini", metavar="FILE", help="read host, port and password_hash from "
                                                      "this file's [web monitor] section")
    return parser.parse_args(argv)


def build_settings(args: argparse.Namespace) -> MonitorSettings:
    section = _ini_section(args.ini) if args.ini else {}
    if args.host:
        section["host"] = args.host
    if args.port:
        section["port"] = str(check_port(args.port, "--port"))
    return MonitorSettings.from_section(section)


def find_supervisor_scope() -> str:
    """The scope to watch when none is given: SPEEDYSVC_SCOPE, else the one running
    supervisor of this user (the same resolution clients use)."""
    from speedysvc.errors import AmbiguousService
    from speedysvc.scope_resolution import explicit_scope, resolve_scope, supervisors_serving
    from speedysvc.supervisor.control_service import CONTROL_SERVICE_NAME
    if explicit_scope() is None and not supervisors_serving(CONTROL_SERVICE_NAME):
        raise LookupError("no running supervisor of this user was found; start one "
                          "(python -m speedysvc FILE.ini), or pass --scope SCOPE or --control ADDRESS")
    try:
        return resolve_scope(CONTROL_SERVICE_NAME)
    except AmbiguousService as exc:
        raise LookupError(f"{exc}; pass --scope SCOPE") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not (args.scope or args.control):
        try:
            args.scope = find_supervisor_scope()
        except LookupError as exc:
            print(f"python -m web_monitor: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        settings = build_settings(args)
        from .app import create_app  # after the settings check, so its error comes first
        app = create_app(connect_control(scope=args.scope, address=args.control),
                         host=settings.host, password_hash=settings.password_hash,
                         secret_key=settings.secret_key)
        server = MonitorServer(app, settings.host, settings.port)
    except MonitorConfigError as exc:
        print(f"python -m web_monitor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        print(f"python -m web_monitor: cannot listen on {args.host or settings.host}:"
              f"{settings.port}: " + ("the port is already in use" if taken else str(exc)),
              file=sys.stderr)
        return EXIT_PORT_TAKEN if taken else EXIT_CONFIG

    stop = threading.Event()
    # The handlers only record the request; the main thread does the shutting down.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"web monitor on {server.url}/ (watching {args.control or 'shm://' + args.scope})",
          flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
