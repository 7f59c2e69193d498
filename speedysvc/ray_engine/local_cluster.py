"""A local Ray instance that dies with the supervisor that started it, SIGKILL included.

`python -m speedysvc.ray_engine.local_cluster --parent-pid P --temp-dir D --num-cpus N` runs
`ray start --head --block` and prints `READY <gcs address>` once the cluster answers. It asks
the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a supervisor killed with
SIGKILL still has its Ray instance stopped.

Why a helper and not Ray's own fate sharing: Ray's worker processes (Serve controller and
replicas) each get a process group of their own, so killing one group is not enough, and a
SIGKILLed supervisor can run no cleanup of its own. The helper keeps the set of every process
descended from `ray start` (refreshed twice a second, so processes re-parented to init when
raylet dies first are still known), and on any way of ending -- SIGTERM, SIGINT, its parent's
death, `ray start` exiting -- terminates them all (SIGKILL after a grace period) and removes
the temp dir (sockets, session logs, spill files).

No Ray import here: the helper only runs the `ray` command.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Optional

import psutil

READY = "READY"
START_TIMEOUT_S = 90.0
GRACE_S = 2.0   # our own instance: its applications were already stopped gracefully
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def token_path(temp_dir: str) -> str:
    return os.path.join(temp_dir, "auth_token")


def write_token(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def auth_environment(temp_dir: str) -> dict[str, str]:
    """The environment a process needs to join the instance of `temp_dir`."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_path(temp_dir)}


def ray_start_command(temp_dir: str, num_cpus: float, gcs_port: int, client_port: int,
                      dashboard: bool) -> list[str]:
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    if not os.path.exists(ray_bin):
        ray_bin = shutil.which("ray") or "ray"
    cmd = [ray_bin, "start", "--head", "--block", f"--port={gcs_port}",
           f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus:g}", "--disable-usage-stats",
           # no --node-ip-address: Ray turns 127.0.0.1 into the machine's address anyway and
           # several of its processes listen on every interface -- hence the token
           f"--ray-client-server-port={client_port}",
           f"--include-dashboard={'true' if dashboard else 'false'}"]
    if dashboard:
        cmd += ["--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}"]
    return cmd


class LocalCluster:
    def __init__(self, temp_dir: str, num_cpus: float, dashboard: bool):
        self.temp_dir = temp_dir
        self.gcs_port = free_port()
        self.client_port = free_port()
        self.stop = _Flag()
        self.known: dict[int, psutil.Process] = {}
        os.makedirs(temp_dir, exist_ok=True)
        # Ray's ports are not all loopback-only: the instance requires a token, kept in a
        # 0600 file that the supervisor and its clients point RAY_AUTH_TOKEN_PATH at
        write_token(token_path(temp_dir))
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **auth_environment(temp_dir))
        self.log_path = os.path.join(temp_dir, "ray_start.log")
        with open(self.log_path, "ab") as log:
            # a session of its own: the terminal's Ctrl-C is the supervisor's to interpret
            self.proc = subprocess.Popen(
                ray_start_command(temp_dir, num_cpus, self.gcs_port, self.client_port, dashboard),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        self._remember()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _remember(self) -> None:
        try:
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                self.known.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == self.proc.pid:
                    self.known.setdefault(p.pid, p)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue

    def wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            self._remember()
            if self.proc.poll() is not None:
                return False
            try:
                with open(self.log_path, errors="replace") as f:
                    if "Ray runtime started" in f.read():
                        return True
            except OSError:
                pass
            self.stop.wait(0.2)
        return False

    def watch(self) -> None:
        while not self.stop.is_set() and self.proc.poll() is None:
            self._remember()
            self.stop.wait(0.5)

    def shutdown(self) -> None:
        self._remember()
        alive = [p for p in self.known.values() if _alive(p)]
        for p in alive:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=GRACE_S)
        self._remember()  # anything started while we waited
        alive = [p for p in {*alive, *self.known.values()} if _alive(p)]
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=GRACE_S)
        try:
            self.proc.wait(1)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _alive(p: psutil.Process) -> bool:
    try:
        alive: bool = p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        return alive
    except psutil.Error:
        return False


class _Flag:
    """What the signal handlers set. Not a threading.Event: Event.set() takes a lock, and a
    handler running while the main thread holds that lock (inside wait()) deadlocks."""

    def __init__(self) -> None:
        self.raised = False

    def handler(self, _signum: int, _frame: object) -> None:
        self.raised = True

    def is_set(self) -> bool:
        return self.raised

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.raised and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))


def die_with_parent(parent_pid: int) -> bool:
    """SIGTERM (which we handle) when the parent dies; False if it is already gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    return os.getppid() == parent_pid


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="speedysvc.ray_engine.local_cluster")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--num-cpus", type=float, default=0)
    parser.add_argument("--dashboard", action="store_true")
    args = parser.parse_args(argv)
    stop = _Flag()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop.handler)
    if not die_with_parent(args.parent_pid):
        return 1
    cluster = LocalCluster(args.temp_dir, args.num_cpus or (os.cpu_count() or 1), args.dashboard)
    cluster.stop = stop
    try:
        if not cluster.wait_ready():
            if not stop.is_set():
                with open(cluster.log_path, errors="replace") as f:
                    sys.stderr.write(f.read()[-4000:])
                print("ray start failed", file=sys.stderr, flush=True)
            return 1
        print(f"{READY} {cluster.address} {cluster.client_port}", flush=True)
        cluster.watch()
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
