"""Run `aimm-server --conf FILE` as a subprocess for the tests, and clean up after it.

The command is `aimm-server` when the script on PATH is this project's (after
`pip install -e '.[test]'`), else `python -m aimm_services.server` -- the same code.
"""
import contextlib
import functools
import hashlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import psutil
import yaml

from speedysvc import naming

from aimm_services.passwords import hash_password
from aimm_services.server import scope_for
from waiting import wait_until

USER, PASSWORD = "tester", "correct horse"
DIGEST = hashlib.sha256(PASSWORD.encode()).hexdigest()      # what AIMM's client sends
PLUGINS = ("aimm_test_plugins", "aimm_style_plugins")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.lru_cache(maxsize=1)
def project_script() -> Optional[str]:
    """The `aimm-server` on PATH if it is this project's script, else None."""
    found = shutil.which("aimm-server")
    if found is None:
        return None
    done = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=60)
    return found if "aimm_services.server" in done.stdout else None


def server_command(conf: Path, log_dir: Path, *extra: str) -> list:
    script = project_script()
    head = [script] if script else [sys.executable, "-m", "aimm_services.server"]
    return [*head, "--conf", str(conf), "--log-dir", str(log_dir), *extra]


def write_config(directory: Path, *, port: int, name: Optional[str] = None,
                 users: Optional[list] = None, backend: str = "sqlite",
                 control_extra: Optional[dict] = None, log: Optional[dict] = None) -> Path:
    """A standard AIMM YAML (seed 000) for the tests."""
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name or f"t{secrets.token_hex(4)}",
        "engine": {"max_children": 2, "sigterm_timeout": 5, "check_children_period": 3},
        "backend": ({"module": "aimm.server.backend.sqlite", "path": "data/aimm.db"}
                    if backend == "sqlite" else {"module": "aimm.server.backend.dummy"}),
        "control": [{"module": "aimm.server.control.repl",
                     "server": {"host": "127.0.0.1", "port": port, **(control_extra or {})},
                     "users": users or [{"username": USER,
                                         "password": hash_password(PASSWORD)}]}],
        "plugins": {"names": list(PLUGINS)},
        "log": log or {"version": 1, "disable_existing_loggers": False},
    }
    path = directory / "aimm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class AimmServer:
    """One aimm-server process: start, wait until its REPL control answers, stop."""

    def __init__(self, conf: Path, log_dir: Path, port: int, extra: tuple = ()):
        self.conf, self.log_dir, self.port, self.extra = conf, log_dir, port, extra
        self.name = yaml.safe_load(conf.read_text())["name"]
        self.scope = scope_for(self.name)
        self.process: Optional[subprocess.Popen] = None
        self.output = log_dir / "aimm-server.out"
        self._children: list = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> "AimmServer":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(server_command(self.conf, self.log_dir,
                                                           *self.extra),
                                            stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: self._accepting() or self.process.poll() is not None,
                   timeout=START_TIMEOUT, interval=0.1,
                   message=f"aimm-server to listen on {self.port}")
        assert self.process.poll() is None, f"aimm-server exited:\n{self.read_output()}"
        self._children = psutil.Process(self.process.pid).children(recursive=True)
        return self

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        for child in self._children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.wait(STOP_TIMEOUT)
        self.process = None
        return code

    def children_alive(self) -> list:
        return [c for c in self._children if c.is_running() and
                c.status() != psutil.STATUS_ZOMBIE]

    def read_output(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def speedysvc(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "speedysvc", *args, "--scope", self.scope],
                              capture_output=True, text=True, timeout=120)

    def _accepting(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0


@contextlib.contextmanager
def running_server(directory: Path, **config):
    """An aimm-server on a fresh port; afterwards no process and no /dev/shm object of its
    scope may be left."""
    port = free_port()
    conf = write_config(directory, port=port, **config)
    server = AimmServer(conf, directory / "logs", port)
    try:
        yield server.start()
    finally:
        server.stop()
        leftover_processes = server.children_alive()
        for child in leftover_processes:
            child.kill()
        try:
            wait_until(lambda: not naming.list_objects(server.scope), timeout=10,
                       message=f"shared memory of scope {server.scope} to be removed")
        finally:
            naming.sweep(server.scope)
        assert not leftover_processes, f"worker processes left behind: {leftover_processes}"


def run_coroutine(coroutine, timeout: float):
    """asyncio.run(coroutine) with a deadline, in a thread of its own: another test's library
    (Playwright's sync API) may leave an event loop running in the main thread."""
    import asyncio
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coroutine, timeout)).result(timeout + 5)
