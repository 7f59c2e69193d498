"""Connecting a process to Ray, and the supervisor's side of a Ray runtime.

`connect(address)` joins this process to a cluster once (a driver); inside a Ray worker (a
replica calling a sibling) Ray is already there. `RayRuntime` is what the arbiter starts when
the first engine = ray service is made, and stops when it stops: for `ray_address = local` it
starts a Ray instance through a helper process that dies with the supervisor, SIGKILL
included (see local_cluster); otherwise it connects to the cluster named and, when it stops,
leaves the cluster running (only its own Serve applications are removed, by their pools).
"""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Any, Callable, Optional, Union, cast

from .names import NAMESPACE, address_file

log = logging.getLogger("speedysvc.ray")

_lock = threading.Lock()
LOCAL_START_TIMEOUT_S = 120.0

# what signal.getsignal() returns
SignalHandler = Union[Callable[[int, Optional[FrameType]], Any], int, None]


class RayUnavailable(Exception):
    """No Ray cluster could be reached or started."""


def quiet_ray_environment() -> None:
    """Settings every process that imports Ray here gets (no usage reporting)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # never start a Ray instance behind the user's back: without this, a Serve handle's
    # background thread that outlives ray.shutdown() calls ray.init() and starts one
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")


def use_auth(environment: dict[str, str]) -> None:
    """Authenticate to the cluster with this RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH (from a local
    instance's helper or a supervisor's address file), before this process joins it."""
    os.environ.update(environment)
    if "ray" in sys.modules:
        try:  # Ray read its configuration when imported; have it read the environment again
            import ray._raylet
            cast(Any, ray._raylet).Config.initialize("")  # its stub does not declare Config
        except Exception:  # noqa: BLE001
            pass


def connect(address: Optional[str]) -> Any:
    """Join this process to the Ray cluster at `address` ('auto', 'ray://host:port' or a GCS
    'host:port'), once; returns the ray module."""
    quiet_ray_environment()
    import ray
    with _lock:
        if ray.is_initialized():
            return ray
        # ray.init installs SIGTERM/SIGINT handlers that exit the process at once; the
        # supervisor's (record the signal, stop gracefully) and a client's own must stay
        kept = _signal_handlers()
        try:
            context = ray.init(address=address or "auto", namespace=NAMESPACE,
                               log_to_driver=False, configure_logging=False,
                               include_dashboard=False)
            _joined["dashboard_url"] = getattr(context, "dashboard_url", None)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailable(f"cannot reach a Ray cluster at {address or 'auto'}: {exc}") from None
        finally:
            _restore_signal_handlers(kept)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not a line per handle
    return ray


def _signal_handlers() -> dict[signal.Signals, SignalHandler]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signal_handlers(kept: dict[signal.Signals, SignalHandler]) -> None:
    for sig, handler in kept.items():
        if handler is not None and signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


_handles: "weakref.WeakSet[Any]" = weakref.WeakSet()
_joined: dict[str, Optional[str]] = {}   # what ray.init told this process (its dashboard's URL)


def track_handle(handle: Any) -> Any:
    """Remember a Serve handle so that disconnect() closes it (see there)."""
    _handles.add(handle)
    return handle


def close_handle(handle: Any) -> None:
    _handles.discard(handle)
    try:
        handle.shutdown()
    except Exception:  # noqa: BLE001 - already closed, or Ray already gone
        pass


def disconnect() -> None:
    """Leave the cluster. Serve's handles are closed first: their routers' threads would
    otherwise go on calling Ray after it is shut down."""
    import ray
    if not ray.is_initialized():
        return
    for handle in list(_handles):
        close_handle(handle)
    try:
        from ray.serve import context
        client: Any = context._global_client  # its shutdown_cached_handles() is unannotated
        if client is not None:
            client.shutdown_cached_handles()
    except Exception:  # noqa: BLE001 - Serve was never used here, or is already gone
        pass
    _stop_router_loop()
    ray.shutdown()


def _stop_router_loop() -> None:
    """Stop the event loop thread Serve's routers share in this process: its periodic tasks
    (autoscaling metrics) would log errors once Ray is gone, and a later connect makes anew."""
    try:
        from ray.serve._private.router import SingletonThreadRouter as router_cls
    except ImportError:
        return
    loop = getattr(router_cls, "_asyncio_loop", None)
    if loop is None:
        return
    with router_cls._asyncio_loop_creation_lock:
        router_cls._asyncio_loop = None
    loop.call_soon_threadsafe(loop.stop)


def gcs_address() -> Optional[str]:
    import ray
    try:
        address: Optional[str] = ray.get_runtime_context().gcs_address
        return address
    except Exception:  # noqa: BLE001 - a Ray Client connection has none to tell
        return None


class RayRuntime:
    """The supervisor's Ray: a local instance it owns, or a cluster it joins."""

    def __init__(self, supervisor_config: Any, scope: str):
        self.config = supervisor_config
        self.scope = scope
        self.helper: Optional[subprocess.Popen[bytes]] = None
        self.address: Optional[str] = None     # what clients should use to join
        self.dashboard_url: Optional[str] = None
        self.auth: dict[str, str] = {}   # RAY_AUTH_* of a local instance
        self.started = False
        self._address_file = address_file(os.path.join(supervisor_config.runtime_dir,
                                                       f"{scope}.json"))

    @property
    def temp_dir(self) -> str:
        # Ray puts unix sockets under its temp dir; their paths must stay under ~107 bytes
        return os.path.join("/tmp", f"ssr-{self.scope}")

    def start(self) -> None:
        if self.started:
            return
        quiet_ray_environment()
        wanted = self.config.ray_address
        if wanted == "local":
            self.address = self._start_local()
            log.info("started a local Ray instance (%s, temp dir %s)", self.address, self.temp_dir)
        else:
            self.address = wanted
        ray = connect(self.address)
        if wanted == "auto":
            self.address = gcs_address() or wanted
        from ray import serve
        serve.start(proxy_location="Disabled")
        self.dashboard_url = self._dashboard_url(ray)
        self.started = True
        self._write_address()
        log.info("Ray Serve ready on %s%s", self.address,
                 f", dashboard {self.dashboard_url}" if self.dashboard_url else "")

    def _start_local(self) -> str:
        argv = [sys.executable, "-m", "speedysvc.ray_engine.local_cluster",
                "--parent-pid", str(os.getpid()), "--temp-dir", self.temp_dir,
                "--num-cpus", f"{self.config.ray_local_cpus:g}"]
        if self.config.ray_dashboard:
            argv.append("--dashboard")
        # a session of its own: Ctrl-C in the terminal is the supervisor's to interpret, and
        # the helper stops Ray only when told to or when the supervisor is gone
        self.helper = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       start_new_session=True)
        stdout = self.helper.stdout
        assert stdout is not None  # stdout=PIPE
        deadline = time.monotonic() + LOCAL_START_TIMEOUT_S
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 1.0)
            if ready:
                line = stdout.readline()
                break
            if self.helper.poll() is not None:
                break
        if not line.startswith(b"READY "):
            self._stop_helper()
            raise RayUnavailable("the local Ray instance did not start (see the supervisor's "
                                 "output for ray start's messages)")
        from .local_cluster import auth_environment
        self.auth = auth_environment(self.temp_dir)
        use_auth(self.auth)
        return line.split()[1].decode()

    @staticmethod
    def _dashboard_url(ray: Any) -> Optional[str]:
        url = _joined.get("dashboard_url")
        if not url:
            return None
        return url if url.startswith("http") else f"http://{url}"

    def _write_address(self) -> None:
        try:
            os.makedirs(os.path.dirname(self._address_file), exist_ok=True)
            fd = os.open(self._address_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                # the address, then the environment that authenticates to it (a token's path)
                f.write("\n".join([self.address or "",
                                    *(f"{k}={v}" for k, v in self.auth.items())]) + "\n")
        except OSError as exc:
            log.warning("cannot write %s (ray:// clients without an address will use 'auto'): "
                        "%s", self._address_file, exc)

    def stop(self) -> None:
        """Leave the cluster; a local instance is stopped (every process, its temp dir)."""
        if self.started:
            try:
                disconnect()
            except Exception:  # noqa: BLE001 - the cluster may already be gone
                log.exception("leaving the Ray cluster failed")
        self.started = False
        self._stop_helper()
        try:
            os.unlink(self._address_file)
        except OSError:
            pass

    def _stop_helper(self) -> None:
        helper, self.helper = self.helper, None
        if helper is None:
            return
        helper.terminate()
        try:
            helper.wait(30)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
        if helper.stdout is not None:
            helper.stdout.close()
        log.info("stopped the local Ray instance")
