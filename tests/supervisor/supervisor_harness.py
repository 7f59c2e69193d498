"""Running a real supervisor (`python -m speedysvc FILE.ini`) for a test, and cleaning up after it.

Each test gets its own scope, runtime directory (XDG_RUNTIME_DIR) and log directory, so tests
never see each other's supervisors. Cleanup kills whatever is left and then checks that no
worker process it ever saw is alive; the `scope` fixture checks /dev/shm.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Optional

import psutil

import speedysvc
from speedysvc import naming
import waiting

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Short intervals so that the whole file set runs in a few minutes on 2 cores.
TEST_DEFAULTS = {
    "min_proc_num": "1",
    "max_proc_num": "1",
    "scale_interval": "200ms",
    "metrics_interval": "250ms",
    "restart_backoff_initial": "100ms",
    "restart_backoff_max": "2s",
    "crash_loop_restarts": "4",
    "crash_loop_window": "20s",
    "graceful_timeout": "8s",
    "start_timeout": "30s",
    "worker_hang_timeout": "0",
    "scale_up_max_cpu": "1",   # other tests load the machine; CPU must not veto scaling here
}



def wait_until(predicate, timeout: float = 20.0, interval: float = 0.02, message=None):
    """waiting.wait_until with this suite's default deadline."""
    return waiting.wait_until(predicate, timeout, interval, message)

def make_ini(scope: str, log_dir: str, services: dict[str, dict], defaults: Optional[dict] = None,
             web_monitor: Optional[dict] = None) -> str:
    lines = ["[supervisor]", f"scope = {scope}", "control_port = 0", "client_sweep_interval = 1s", "",
             "[web monitor]"]
    web = {"enabled": "false"} if web_monitor is None else web_monitor
    lines += [f"{k} = {v}" for k, v in web.items()]
    lines += ["", "[defaults]", f"log_dir = {log_dir}"]
    lines += [f"{k} = {v}" for k, v in {**TEST_DEFAULTS, **(defaults or {})}.items()]
    for section, options in services.items():
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {v}" for k, v in {"import_from": "supervisor_services", **options}.items()]
    return "\n".join(lines) + "\n"


class Supervisor:
    def __init__(self, tmp_path, scope: str, services: dict[str, dict],
                 defaults: Optional[dict] = None, web_monitor: Optional[dict] = None):
        self.tmp = str(tmp_path)
        self.scope = scope
        self.ini = os.path.join(self.tmp, "svc.ini")
        self.log_dir = os.path.join(self.tmp, "logs")
        self.marks_dir = os.path.join(self.tmp, "marks")
        os.makedirs(self.marks_dir, exist_ok=True)
        self.runtime_dir = os.path.join(self.tmp, "xdg", "speedysvc")
        self.env = dict(os.environ)
        self.env.update({
            "XDG_RUNTIME_DIR": os.path.join(self.tmp, "xdg"),
            "SPEEDYSVC_TEST_DIR": self.marks_dir,
            "PYTHONPATH": os.pathsep.join([HERE, REPO, self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        })
        self.proc: Optional[subprocess.Popen] = None
        self.seen_pids: set[int] = set()
        self.write_ini(services, defaults, web_monitor)

    # -- configuration -------------------------------------------------------------------
    def write_ini(self, services: dict[str, dict], defaults: Optional[dict] = None,
                  web_monitor: Optional[dict] = None) -> None:
        with open(self.ini, "w") as f:
            f.write(make_ini(self.scope, self.log_dir, services, defaults, web_monitor))

    # -- processes -----------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = 40.0) -> "Supervisor":
        self.output = open(os.path.join(self.tmp, "supervisor.out"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "speedysvc", self.ini], cwd=REPO,
                                     env=self.env, stdin=subprocess.DEVNULL, stdout=self.output,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_running(timeout)
        return self

    def wait_running(self, timeout: float = 40.0) -> dict:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited with {self.proc.returncode}:\n{self.log_text()}")
            if not os.path.exists(self.state_path()):
                return None
            try:
                status = self.status()
            except speedysvc.SpeedysvcError:
                return None
            if status["supervisor"]["phase"] == "running" and all(
                    s["status"] in ("running", "failed", "stopped") for s in status["services"]):
                return status
            return None
        return wait_until(ready, timeout, message=f"supervisor of {self.scope} to be running")

    def state_path(self) -> str:
        return os.path.join(self.runtime_dir, f"{self.scope}.json")

    def state(self) -> dict:
        with open(self.state_path()) as f:
            return json.load(f)

    def log_text(self) -> str:
        try:
            with open(os.path.join(self.tmp, "supervisor.out"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def control(self):
        return speedysvc.connect("speedysvc_control", f"shm://{self.scope}", connect_timeout=5)

    def status(self) -> dict:
        with self.control() as c:
            status = c.status()
        for s in status["services"]:
            self.seen_pids.update(w["pid"] for w in s["workers"])
        return status

    def service(self, name: str) -> dict:
        return next(s for s in self.status()["services"] if s["name"] == name)

    def pids(self, name: str, states=("idle", "busy")) -> list[int]:
        return sorted(w["pid"] for w in self.service(name)["workers"] if w["state"] in states)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "speedysvc", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        for child in self.children():
            self.seen_pids.add(child.pid)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        if self.proc is not None:
            for child in self.children():
                self.seen_pids.add(child.pid)
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
            self.output.close()
        leftovers = wait_until_dead(self.seen_pids)
        naming.sweep(self.scope)
        assert not leftovers, f"processes left alive after the test: {leftovers}"


def wait_until_dead(pids, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if _alive(p)]
        if not alive or time.monotonic() > deadline:
            for p in alive:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return alive
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()
