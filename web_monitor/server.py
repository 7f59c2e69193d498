"""Serving the monitor with werkzeug, in a background thread (python -m web_monitor, which the
supervisor runs as a helper process, and the tests)."""
from __future__ import annotations

import logging
import socket
import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """Logs failed requests only: the pages poll every second or two, and logging each poll
    would bury the supervisor's own log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        try:
            failed = int(code) >= 400
        except (TypeError, ValueError):
            failed = True
        if failed:
            super().log_request(code, size)


def _check_port_free(host: str, port: int) -> None:
    """Raise OSError(EADDRINUSE) when the port is taken: werkzeug would print and sys.exit(1),
    which neither the supervisor nor an embedding program can tell from a crash."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        probe.bind((host, port))


class MonitorServer:
    """A threaded werkzeug server for one app. The monitor is a handful of users polling every
    few seconds, so werkzeug's server is enough and needs no extra dependency."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        self.app = app
        self.host = host
        if port:
            _check_port_free(host, port)
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True,
                                                   request_handler=_QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return self._server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "MonitorServer":
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="web-monitor",
                                        daemon=True)
        self._thread.start()
        log.info("web monitor on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket (safe to call twice)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "MonitorServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

