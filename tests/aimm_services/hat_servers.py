"""Real Hat servers for the tests: `hat-monitor` and `hat-event-server` from their packages,
run as subprocesses on loopback with small configurations written here, and a blocking
eventer client to register and read events as another Hat component would."""
from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import yaml
from hat.drivers import net
import hat.event.common
import hat.event.eventer.client

from waiting import wait_until

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _command(script: str, module: str) -> list:
    found = shutil.which(script)
    return [found] if found else [sys.executable, "-m", module]


class HatProcess:
    """One Hat server process; `stop()` ends it (TERM, then KILL) and waits for it."""

    def __init__(self, command: list, conf: Path, port: int, output: Path):
        self.command, self.conf, self.port, self.output = command, conf, port, output
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "HatProcess":
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen([*self.command, "--conf", str(self.conf)],
                                            stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: listening(self.port) or self.process.poll() is not None,
                   timeout=START_TIMEOUT, interval=0.05, message=f"{self.command[0]} to listen "
                   f"on {self.port}")
        assert self.process.poll() is None, self.output.read_text(errors="replace")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


class HatServers:
    """A hat-monitor server and hat-event servers registered with it (BLESS_ONE)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.monitor_port = free_port()
        self.processes: list[HatProcess] = []
        self.monitor: Optional[HatProcess] = None

    def start_monitor(self) -> HatProcess:
        conf = self.directory / "monitor.yaml"
        conf.write_text(yaml.safe_dump({
            "type": "monitor", "log": {"version": 1},
            "default_algorithm": "BLESS_ONE", "group_algorithms": {},
            "server": {"host": "127.0.0.1", "port": self.monitor_port, "default_rank": 1},
            "master": {"host": "127.0.0.1", "port": free_port()},
            "slave": {"parents": [], "connect_timeout": 1, "connect_retry_count": 1,
                      "connect_retry_delay": 0.5}}))
        self.monitor = HatProcess(_command("hat-monitor", "hat.monitor.server"), conf,
                                  self.monitor_port, self.directory / "monitor.out").start()
        self.processes.append(self.monitor)
        return self.monitor

    def event_server(self, group: str, name: Optional[str] = None) -> HatProcess:
        """An event server of `group` (not started); its LMDB file is kept across restarts."""
        name = name or group
        port = free_port()
        conf = self.directory / f"event-{name}.yaml"
        conf.write_text(yaml.safe_dump({
            "type": "event", "log": {"version": 1}, "name": name, "server_id": 1,
            "backend": {"module": "hat.event.backends.lmdb",
                        "db_path": str(self.directory / f"event-{name}.db"),
                        "identifier": None, "flush_period": 0.1, "cleanup_period": 60,
                        "conditions": [], "latest": {"subscriptions": [["*"]]},
                        "timeseries": []},
            "modules": [],
            "eventer_server": {"host": "127.0.0.1", "port": port},
            "monitor_component": {"host": "127.0.0.1", "port": self.monitor_port,
                                  "group": group}}))
        process = HatProcess(_command("hat-event-server", "hat.event.server"), conf, port,
                             self.directory / f"event-{name}.out")
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


class EventClient:
    """A blocking eventer client (its asyncio loop runs in a thread): what another Hat
    component sends and sees."""

    def __init__(self, port: int, subscriptions: list):
        self.events: "queue.Queue[Any]" = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def on_events(_client: Any, events: Any) -> None:
            for event in events:
                self.events.put(event)

        self._client = self._run(hat.event.eventer.client.connect(
            net.TcpAddress("127.0.0.1", port), "test-client",
            subscriptions=[tuple(s) for s in subscriptions], events_cb=on_events))

    def _run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def register(self, event_type: list, payload: Any) -> None:
        event = hat.event.common.RegisterEvent(
            type=tuple(event_type), source_timestamp=None,
            payload=hat.event.common.EventPayloadJson(payload))
        assert self._run(self._client.register([event], with_response=True))

    def latest(self, event_type: list) -> list:
        result = self._run(self._client.query(hat.event.common.QueryLatestParams(
            event_types=[tuple(event_type)])))
        return list(result.events)

    def wait_for(self, predicate: Any, timeout: float = 60.0, message: str = "") -> Any:
        """The first received event for which predicate(type, payload data) holds."""
        found: list = []

        def check() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    event = self.events.get_nowait()
                    data = getattr(event.payload, "data", None)
                    if predicate(event.type, data):
                        found.append(data)
                        return True
            return False
        wait_until(check, timeout=timeout, interval=0.05, message=message or "an event")
        return found[0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._client.async_close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
