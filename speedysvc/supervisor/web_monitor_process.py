"""The web monitor as a helper process of the supervisor: started, restarted with the same
RestartPolicy services use, and given up on when restarting cannot help.

The monitor is a separate process (`python -m web_monitor --scope SCOPE`) so that a page that
misbehaves cannot stall supervision; it reaches the supervisor through the control API like
any other client. Its output goes to the supervisor's own log.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Any, Callable, Optional

from .helper_process import start_helper
from .ports import port_holder
from .restart_policy import RestartPolicy
from .system import System

log = logging.getLogger("speedysvc.supervisor")

# exit codes of `python -m web_monitor` (web_monitor/__main__.py) that a restart cannot heal
CONFIG_ERROR, PORT_TAKEN = 2, 3
UNHEALABLE = (CONFIG_ERROR, PORT_TAKEN)


class WebMonitorProcess:
    def __init__(self, scope: str, system: System, capture: Any, log_name: str,
                 on_url: Callable[[], None]):
        self.scope = scope
        self.system = system
        self.capture = capture            # LogCapture; the monitor's output joins `log_name`
        self.log_name = log_name
        self.on_url = on_url              # the address became known (wake the main loop)
        self.config: Any = None           # WebMonitorConfig
        self.process: Optional[Any] = None
        self.url: Optional[str] = None
        self.start_at: Optional[float] = None  # monotonic; None: not to be started
        self.policy = RestartPolicy(1.0, 30.0, 5, 60.0)

    def configure(self, config: Any) -> None:
        """Use `config` ([web monitor]); (re)start the monitor now if it is enabled."""
        self.stop()
        self.config = config
        self.start_at = self.system.monotonic() if config.enabled else None

    def next_wakeup(self) -> Optional[float]:
        return self.start_at

    def tick(self, stopping: bool) -> None:
        now = self.system.monotonic()
        if self.process is not None and self.process.poll() is not None:
            self._exited(self.process.returncode, now, stopping)
        if self.process is None and self.start_at is not None and now >= self.start_at and not stopping:
            self.start_at = None
            if importlib.util.find_spec("web_monitor") is None:
                log.info("[web monitor] is enabled but the web_monitor package is not installed")
                return
            self._start()

    def _exited(self, code: int, now: float, stopping: bool) -> None:
        self.process, self.url = None, None
        if stopping:
            return
        if code in UNHEALABLE:
            log.error("the web monitor cannot start: %s; not retrying (fix it, then "
                      "`speedysvc reload`)", self._why(code))
            self.start_at = None
            return
        delay = self.policy.record_crash(now)
        if delay is None:
            log.error("the web monitor keeps exiting (last exit code %s); not restarting it. "
                      "Its output is in the supervisor's log", code)
            self.start_at = None
            return
        log.warning("the web monitor exited with code %s; restarting it in %gs", code, delay)
        self.start_at = now + delay

    def _why(self, code: int) -> str:
        if code != PORT_TAKEN:
            return f"its configuration is invalid (exit code {code}; its output is in the supervisor log)"
        holder = port_holder(self.config.port)
        return (f"port {self.config.port} on {self.config.host} is already in use"
                + (f" by {holder}" if holder else "") + " ([web monitor] port)")

    def _start(self) -> None:
        cfg = self.config
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        if cfg.password_hash:
            env["SPEEDYSVC_MONITOR_PASSWORD_HASH"] = str(cfg.password_hash)
        argv = [sys.executable, "-m", "web_monitor", "--host", cfg.host, "--port", str(cfg.port),
                "--scope", self.scope]
        try:
            self.process = start_helper(argv, env=env)
        except OSError as exc:
            log.error("the web monitor could not start: %s", exc)
            return
        assert self.process.stdout is not None and self.process.stderr is not None  # start_helper pipes both
        out, err = os.dup(self.process.stdout.fileno()), os.dup(self.process.stderr.fileno())
        self.process.stdout.close()
        self.process.stderr.close()
        self.process.stdout = self.process.stderr = None
        self.capture.attach_process(self.capture.services[self.log_name], self.process.pid, out, err,
                                    on_line=self._line)
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        if cfg.port:
            self.url = f"http://{host}:{cfg.port}/"
        log.info("web monitor starting on %s (pid %d)", self.url or f"{host}:<any port>",
                 self.process.pid)

    def _line(self, line: str) -> None:
        # "web monitor on http://127.0.0.1:5155/ (watching shm://SCOPE)"
        if line.startswith("web monitor on "):
            self.url = line.split()[3]
            self.on_url()

    def stop(self) -> None:
        process, self.process = self.process, None
        self.url = None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except Exception:  # noqa: BLE001 - it would not go: make it
            process.kill()
            process.wait()
