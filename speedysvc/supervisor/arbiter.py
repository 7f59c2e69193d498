"""The arbiter: owns every service pool of one supervisor and runs its main loop.

One thread (the process's main thread) does all supervision, in the manner of gunicorn's
arbiter: signal handlers only record the signal and wake the loop through a pipe; control API
calls arrive from the control service's threads as commands on a queue and are carried out by
the loop, which also ticks every ServicePool. Only this thread starts processes, so
PR_SET_PDEATHSIG binds every worker to the supervisor's life.

Signals: TERM and the first INT stop gracefully (services in reverse file order, each worker
finishing its call within graceful_timeout); a second INT stops at once (KILL). HUP re-reads
the .ini file and touches only what changed. TTIN / TTOU add / remove one worker in every
running service (within min_proc_num..max_proc_num), as a manual scale does.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import logging
import os
import queue
import secrets
import select
import signal
import sys
import time
from typing import Any, Callable, Optional

from .. import naming
from ..monitoring.collector import Collector, ServiceSnapshot
from ..monitoring.log_capture import SERVICE_LOGGER, LogCapture, ServiceLogHandler, WriterHandler
from ..monitoring.log_store import LogReader
from ..monitoring.metrics_store import MetricsStore
from . import service_pool as sp_mod
from .config import Config, ConfigError, config_diff, load_config
from .control_service import CONTROL_SERVICE_NAME, ControlService, UnknownService
from .helper_process import start_helper
from .ports import port_holder
from .restart_policy import RestartPolicy
from .pool_interface import ServiceState, SupervisedPool
from .service_pool import ServicePool
from . import log_isolation
from .state_file import AlreadyRunning, StateFile, find_all, reap_dead_scopes
from .system import System

log = logging.getLogger("speedysvc.supervisor")

EXIT_OK = 0
EXIT_BOOT_FAILURE = 70   # EX_SOFTWARE
SUPERVISOR_LOG = "speedysvc-supervisor"
# exit codes of `python -m web_monitor` (web_monitor/__main__.py) that a restart cannot heal
WEB_MONITOR_CONFIG_ERROR, WEB_MONITOR_PORT_TAKEN = 2, 3
WEB_MONITOR_UNHEALABLE = (WEB_MONITOR_CONFIG_ERROR, WEB_MONITOR_PORT_TAKEN)
CONTROL_THREADS = 3
COMMAND_TIMEOUT_S = 30.0
MAX_SLEEP_S = 1.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                   signal.SIGCHLD)


class BootError(Exception):
    """The supervisor could not start (exit code 70)."""


class ControlUnavailable(Exception):
    """The supervisor is shutting down and no longer takes commands."""


class Arbiter:
    def __init__(self, config: Config, *, system: Optional[System] = None,
                 pool_factory: Optional[Callable] = None):
        self.config = config
        self.scope = config.supervisor.scope
        self.system = system or System()
        self.pool_factory = pool_factory or sp_mod.default_pool_factory
        self.pools: dict[str, SupervisedPool] = {}   # by section name, in file order
        self.started_at = time.time()
        self.phase = "booting"        # booting, running, stopping
        self.exit_code = EXIT_OK
        self._signals: list[int] = []
        self._commands: "queue.SimpleQueue" = queue.SimpleQueue()
        self._accepting = True
        self._wake_r = self._wake_w = -1
        self._boot_queue: list[str] = []
        self._boot_started: set[str] = set()
        self._stop_queue: list[str] = []
        self._removing: set[str] = set()
        self._pending_add: dict[str, Any] = {}
        self._next_collect: dict[str, float] = {}
        self._stack = contextlib.ExitStack()
        self.capture: Optional[LogCapture] = None
        self.collector: Optional[Collector] = None
        self.metrics: Optional[MetricsStore] = None
        self.state: Optional[StateFile] = None
        self._shared_log_dirs: set[str] = set()  # log dirs another running supervisor writes to
        self.control = None
        self.control_secret: Optional[str] = None
        self.web: Optional[Any] = None
        self.web_url: Optional[str] = None
        self._web_url_written: Optional[str] = None
        self._web_policy = RestartPolicy(1.0, 30.0, 5, 60.0)
        self._web_start_at: Optional[float] = 0.0
        self._next_client_sweep = 0.0
        self._log_handlers: list[tuple[logging.Logger, logging.Handler]] = []

    # -- from other threads ----------------------------------------------------------------
    def call(self, command: str, *args: Any, timeout: float = COMMAND_TIMEOUT_S) -> Any:
        """Run a command on the main loop and return its result (control API threads)."""
        if not self._accepting:
            raise ControlUnavailable("the supervisor is shutting down")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._commands.put((command, args, future))
        self._wake()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(0.25)
            except concurrent.futures.TimeoutError:
                if not self._accepting:
                    raise ControlUnavailable("the supervisor is shutting down") from None
                if time.monotonic() > deadline:
                    raise

    def lookup(self, name: str) -> SupervisedPool:
        pools = dict(self.pools)
        if name in pools:
            return pools[name]
        for sp in pools.values():
            if sp.name == name:
                return sp
        known = ", ".join(sp.name for sp in pools.values()) or "none"
        raise UnknownService(f"no service named {name!r} in this supervisor (services: {known})")

    def service_name(self, name: str) -> str:
        return self.lookup(name).name

    def log_reader(self, name: str) -> LogReader:
        sp = self.lookup(name)
        return LogReader(*sp.log_location())

    def metrics_store_for(self, name: str) -> MetricsStore:
        self.lookup(name)
        return self.metrics

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    # -- life --------------------------------------------------------------------------------
    def run(self) -> int:
        """Boot, supervise until stopped, tear down. Returns the process exit code."""
        try:
            self._setup()
        except (BootError, AlreadyRunning, OSError) as exc:
            log.error("cannot start: %s", exc)
            self._teardown()
            return EXIT_BOOT_FAILURE
        try:
            self._loop()
        except BaseException:
            log.exception("supervisor main loop failed; stopping every service now")
            self.exit_code = EXIT_BOOT_FAILURE
            for sp in self.pools.values():
                with contextlib.suppress(Exception):
                    sp.kill_all()
        finally:
            self._teardown()
        return self.exit_code

    def _setup(self) -> None:
        sup = self.config.supervisor
        self.state = StateFile(sup.runtime_dir, self.scope)
        self.state.acquire()
        swept = naming.sweep(self.scope)
        dead_scopes = reap_dead_scopes()
        self._shared_log_dirs = log_isolation.taken_dirs(find_all()[0], self.scope)
        moved = sorted(self._shared_log_dirs & set(log_isolation.dirs_of(self.config)))
        self.config = log_isolation.separate(self.config, self.scope, self._shared_log_dirs)
        sup = self.config.supervisor
        self.capture = LogCapture()
        self._install_logging()
        if swept:
            log.warning("removed %d shared-memory object(s) left by an earlier run of scope %s",
                        swept, self.scope)
        for shared in moved:
            log.warning("log_dir %s is in use by another running supervisor; this one writes to "
                        "%s", shared, os.path.join(shared, self.scope))
        if dead_scopes:
            log.warning("removed the shared memory of supervisors that died without cleaning up "
                        "(scopes %s)", ", ".join(dead_scopes))
        for problem in self.config.warnings:
            log.warning("configuration: %s", problem)
        self.metrics = MetricsStore(os.path.join(sup.log_dir, "metrics.sqlite"),
                                    max(s.metrics_retention for s in self.config.services))
        self.collector = Collector(self.metrics)
        for svc in self.config.services:
            self.pools[svc.name] = self._make_pool(svc)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._install_signals()
        self._start_control()
        self._write_state()
        log.info("supervisor pid %d, scope %s, %s: control %s and %s", os.getpid(), self.scope,
                 self.config.path, self.control.shm_address, self.control.tcp_address)
        self._boot_queue = [s.name for s in self.config.services if s.enabled]

    def _make_pool(self, svc: Any) -> SupervisedPool:
        try:
            cls = svc.service_class()
        except Exception as exc:  # validated at load; a module may still fail the second time
            raise BootError(f"[{svc.name}] cannot import {svc.import_from}.{svc.name}: {exc}") from exc
        name = cls.service_name()
        logs = self.capture.service(name, svc.log_dir, svc.log_max_bytes, svc.log_backups,
                                    svc.log_level)
        if svc.engine == "ray":  # Ray is imported only when a service runs on it
            from ..ray_engine.pool import RayServicePool
            from ..ray_engine.runtime import RayRuntime
            if getattr(self, "ray_runtime", None) is None:
                self.ray_runtime = RayRuntime(self.config.supervisor, self.scope)
            return RayServicePool(svc, cls, self.scope, runtime=self.ray_runtime,
                                  system=self.system, logs=logs)
        return ServicePool(svc, cls, self.scope, system=self.system, logs=logs,
                           pool_factory=self.pool_factory)

    def _install_logging(self) -> None:
        sup = self.config.supervisor
        own = self.capture.service(SUPERVISOR_LOG, sup.log_dir, 10 * 2**20, 5, sup.log_level)
        root = logging.getLogger("speedysvc")
        root.setLevel(logging.DEBUG)
        file_handler = WriterHandler(own)
        file_handler.setLevel(sup.log_level)
        service_handler = ServiceLogHandler(self.capture)
        service_logger = logging.getLogger(SERVICE_LOGGER)
        for logger, handler in ((root, file_handler), (service_logger, service_handler)):
            logger.addHandler(handler)
            self._log_handlers.append((logger, handler))
        if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
                   for h in root.handlers + logging.getLogger().handlers):
            console = logging.StreamHandler(sys.stderr)
            console.setLevel(sup.log_level)
            console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(console)
            self._log_handlers.append((root, console))

    def _install_signals(self) -> None:
        def record(signum: int, _frame: Any) -> None:
            self._signals.append(signum)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, record)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _restore_signals(self) -> None:
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        for sig in HANDLED_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, signal.SIG_DFL)

    def _start_control(self) -> None:
        from ..serve import serve
        port = self.config.supervisor.control_port
        try:
            # shared memory is private to this user (mode 0600); loopback TCP is not, so it
            # needs the secret that only the (0600) state file tells
            self.control_secret = secrets.token_hex(16)
            self.control = self._stack.enter_context(serve(
                ControlService(self), workers=CONTROL_THREADS, in_process=True, scope=self.scope,
                tcp=f"127.0.0.1:{port}", secret=self.control_secret))
        except Exception as exc:
            raise BootError(f"the control API could not start on 127.0.0.1:{port}: {exc}") from exc

    def _write_state(self) -> None:
        self.state.write(scope=self.scope, ini=self.config.path,
                         control_address=self.control.shm_address,
                         control_tcp_address=self.control.tcp_address,
                         control_secret=self.control_secret, web_monitor=self.web_url, started_at=self.started_at,
                         log_dir=self.config.supervisor.log_dir,
                         log_dirs=log_isolation.dirs_of(self.config),
                         services=self._served_names())
        self._web_url_written = self.web_url

    def _served_names(self) -> list[str]:
        """What the state file lists, so clients without a scope in their address find us."""
        return sorted({CONTROL_SERVICE_NAME, *(sp.name for sp in self.pools.values())})

    def _teardown(self) -> None:
        self._accepting = False
        self._fail_pending_commands()
        for sp in self.pools.values():
            if sp.has_workers:
                with contextlib.suppress(Exception):
                    sp.kill_all()
        self._stop_web_monitor()
        if getattr(self, "ray_runtime", None) is not None:
            with contextlib.suppress(Exception):
                self.ray_runtime.stop()  # a local Ray instance stops with us
        with contextlib.suppress(Exception):
            self._stack.close()
        if self.collector is not None:
            self.collector.stop()
        if self.metrics is not None:
            self.metrics.close()
        self._restore_signals()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self.state is not None:
            self.state.remove()
        with contextlib.suppress(Exception):
            naming.sweep_dead_clients(self.scope)
        if self.capture is not None:
            log.info("supervisor stopped (exit code %d)", self.exit_code)
            for logger, handler in self._log_handlers:
                logger.removeHandler(handler)
            self.capture.stop()

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._wait(self._timeout())
            self._handle_signals()
            if self.phase == "killed":
                return
            self._run_commands()
            for name, sp in list(self.pools.items()):
                self._tick(sp)
            self._advance_boot()
            self._forget_removed()
            self._collect_metrics()
            self._sweep_dead_clients()
            self._supervise_web_monitor()
            if (self.web_url != self._web_url_written
                    or self._served_names() != self.state.data.get("services")):
                self._write_state()
            if self.phase == "stopping" and self._advance_stop():
                return

    def _sweep_dead_clients(self) -> None:
        """Clients killed with SIGKILL leave their channels in /dev/shm; remove them while the
        services run on, not only at the next start."""
        now = self.system.monotonic()
        if now < self._next_client_sweep:
            return
        self._next_client_sweep = now + self.config.supervisor.client_sweep_interval
        with contextlib.suppress(OSError):
            removed = naming.sweep_dead_clients(self.scope)
            if removed:
                log.info("removed %d shared-memory object(s) of clients that died", removed)

    def _timeout(self) -> float:
        now = self.system.monotonic()
        times = [now + MAX_SLEEP_S]
        times += [sp.next_wakeup() for sp in self.pools.values()]
        times += list(self._next_collect.values())
        if self._boot_queue or self.phase == "stopping":
            times.append(now + sp_mod.POLL_WHILE_CHANGING_S)
        if self._web_start_at is not None:
            times.append(self._web_start_at)
        return max(0.0, min(times) - now)

    def _wait(self, timeout: float) -> None:
        if self._signals or not self._commands.empty():
            timeout = 0
        try:
            ready, _, _ = select.select([self._wake_r], [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
            ready = []
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):
                    pass

    def _tick(self, sp: SupervisedPool) -> None:
        try:
            sp.tick()
        except Exception as exc:  # noqa: BLE001 - one service's trouble must not stop the others
            log.exception("supervising %s failed", sp.name)
            sp.supervision_error(exc)

    # -- signals -----------------------------------------------------------------------------
    def _handle_signals(self) -> None:
        signals, self._signals = self._signals, []
        for sig in signals:
            if sig == signal.SIGCHLD:
                continue
            name = signal.Signals(sig).name
            if sig == signal.SIGINT and self.phase == "stopping":
                log.warning("second SIGINT: stopping every service now")
                self._kill_everything()
                return
            if sig in (signal.SIGTERM, signal.SIGINT):
                if self.phase != "stopping":
                    log.info("%s: stopping gracefully (SIGINT again to stop at once)", name)
                    self.begin_stop()
            elif sig == signal.SIGHUP:
                log.info("SIGHUP: reloading %s", self.config.path)
                self._reload()
            elif sig in (signal.SIGTTIN, signal.SIGTTOU):
                self._adjust_all(1 if sig == signal.SIGTTIN else -1, name)

    def _adjust_all(self, step: int, why: str) -> None:
        for sp in self.pools.values():
            if sp.status == ServiceState.RUNNING:
                sp.scale_by(step, why)

    def begin_stop(self) -> None:
        self.phase = "stopping"
        self._boot_queue.clear()
        for sp in self.pools.values():
            sp.begin_shutdown()
        order = [name for name, sp in self.pools.items() if sp.has_workers]
        self._stop_queue = list(reversed(order))

    def _advance_stop(self) -> bool:
        """Stop services one at a time, last started first; True once all have stopped."""
        while self._stop_queue:
            sp = self.pools[self._stop_queue[0]]
            if not sp.has_workers:
                self._stop_queue.pop(0)
                continue
            if sp.status != ServiceState.STOPPING:
                sp.stop()
            return False
        return True

    def _kill_everything(self) -> None:
        self.phase = "killed"
        for sp in self.pools.values():
            with contextlib.suppress(Exception):
                sp.kill_all()

    # -- boot --------------------------------------------------------------------------------
    def _advance_boot(self) -> None:
        while self._boot_queue and self.phase == "booting":
            name = self._boot_queue[0]
            sp = self.pools.get(name)
            if sp is None:
                self._boot_queue.pop(0)
                continue
            if name not in self._boot_started:
                self._boot_started.add(name)
                try:
                    sp.start()
                except Exception as exc:  # noqa: BLE001
                    log.exception("%s could not start", sp.name)
                    sp.fail(f"could not start: {exc}")
            if not sp.config.wait_until_completed:
                self._boot_queue.pop(0)
                continue
            if sp.status == ServiceState.RUNNING:
                self._boot_queue.pop(0)
                continue
            if sp.status in (ServiceState.FAILED, ServiceState.STOPPED) and not sp.has_workers:
                log.error("%s failed to start and later services wait for it (wait_until_completed):"
                          " stopping the supervisor. %s", sp.name,
                          sp.status_dict({}, {}).get("last_error") or "")
                self.exit_code = EXIT_BOOT_FAILURE
                self.begin_stop()
            return
        if self.phase == "booting" and not self._boot_queue:
            self.phase = "running"
            log.info("all services started")

    # -- commands ----------------------------------------------------------------------------
    def _pending_commands(self):
        """Queued commands whose callers still wait for them: (command, args, future)."""
        while True:
            try:
                command, args, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                yield command, args, future

    def _run_commands(self) -> None:
        for command, args, future in self._pending_commands():
            try:
                future.set_result(getattr(self, f"_cmd_{command}")(*args))
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                future.set_exception(exc)

    def _fail_pending_commands(self) -> None:
        for _command, _args, future in self._pending_commands():
            future.set_exception(ControlUnavailable("the supervisor is shutting down"))

    def _refuse_while_stopping(self) -> Optional[dict]:
        if self.phase == "stopping":
            return {"ok": False, "message": "the supervisor is shutting down"}
        return None

    def _cmd_status(self) -> dict:
        services = []
        for sp in self.pools.values():
            latest = self.collector.latest.get(sp.name, {}) if sp.has_workers else {}
            # errors and calls count since the supervisor started, across restarts of the service
            totals = dict(self.collector.totals.get(sp.name, {}))
            if not sp.has_workers:
                totals["calls_per_s"] = 0.0
            services.append(sp.status_dict(latest, totals))
        return {"supervisor": {"pid": os.getpid(), "scope": self.scope, "ini": self.config.path,
                               "started_at": self.started_at, "phase": self.phase,
                               "control_address": self.control.shm_address,
                               "control_tcp_address": self.control.tcp_address,
                               "web_monitor": self.web_url},
                "services": services}

    def _cmd_start(self, name: str) -> dict:
        sp = self.lookup(name)
        refused = self._refuse_while_stopping()
        if refused:
            return refused
        already = sp.status in (ServiceState.RUNNING, ServiceState.STARTING)
        message = sp.start()
        return {"ok": not already, "message": message}

    def _cmd_stop(self, name: str) -> dict:
        sp = self.lookup(name)
        already = not sp.has_workers
        message = sp.stop()
        if not sp.has_workers:
            self.collector.stopped(sp.name)
        return {"ok": not already, "message": message}

    def _cmd_restart(self, name: str) -> dict:
        sp = self.lookup(name)
        return self._refuse_while_stopping() or {"ok": True, "message": sp.restart()}

    def _cmd_scale(self, name: str, n: int) -> dict:
        sp = self.lookup(name)
        refused = self._refuse_while_stopping()
        if refused:
            return refused
        ok, message = sp.scale(n)
        return {"ok": ok, "message": message}

    def _cmd_restart_worker(self, name: str, worker_id: int) -> dict:
        sp = self.lookup(name)
        if not sp.has_workers:
            return {"ok": False, "message": f"{sp.name} is {sp.status}"}
        return {"ok": True, "message": sp.restart_worker(worker_id)}

    def _cmd_reload(self) -> dict:
        return self._reload()

    # -- reload ------------------------------------------------------------------------------
    def _reload(self) -> dict:
        if self.phase == "stopping":
            return {"ok": False, "message": "the supervisor is shutting down"}
        try:
            new = log_isolation.separate(load_config(self.config.path), self.scope,
                                         self._shared_log_dirs)
        except ConfigError as exc:
            for problem in exc.errors:
                log.error("reload refused, the configuration is invalid: %s", problem)
            return {"ok": False, "message": f"configuration invalid; still running the previous "
                                            f"one:\n{exc}"}
        diff = config_diff(self.config, new)
        if not diff:
            log.info("reload: nothing changed")
            return {"ok": True, "message": "nothing changed"}
        done = []
        new_by_name = {s.name: s for s in new.services}
        for section in diff.removed:
            sp = self.pools[section]
            sp.stop()
            self._removing.add(section)
            done.append(f"removing {sp.name}")
        for section in diff.changed:
            sp = self.pools[section]
            svc = new_by_name[section]
            changed = diff.changed_options[section]
            if "import_from" in changed:
                # another class (maybe another service name): a new pool once the old one stopped
                sp.stop()
                self._removing.add(section)
                self._pending_add[section] = svc
                done.append(f"replacing {sp.name} ({section} now from {svc.import_from})")
                continue
            sp.set_logs(self.capture.service(sp.name, svc.log_dir, svc.log_max_bytes, svc.log_backups,
                                             svc.log_level))
            if not svc.enabled:
                sp.apply_settings(svc)
                done.append(sp.stop())
                continue
            if not sp.has_workers and "enabled" in changed:
                sp.apply_settings(svc)
                done.append(sp.start())
                continue
            done.append(sp.reconfigure(svc, [k for k in changed if k != "enabled"]))
        for section in diff.added:
            svc = new_by_name[section]
            try:
                self.pools[section] = self._make_pool(svc)
            except BootError as exc:
                log.error("reload: %s", exc)
                continue
            if svc.enabled:
                done.append(self.pools[section].start())
        order = [s.name for s in new.services] + [n for n in self.pools if n not in new_by_name]
        self.pools = {n: self.pools[n] for n in order if n in self.pools}
        if diff.supervisor_changed:
            log.warning("reload: [supervisor] settings changed; they apply after a restart of the "
                        "supervisor")
        self.config = new
        if diff.web_monitor_changed:
            log.info("reload: [web monitor] changed; restarting it")
            self._stop_web_monitor()
            self._web_start_at = self.system.monotonic() if new.web_monitor.enabled else None
        summary = "; ".join(done) or "applied"
        log.info("reload: %s", summary)
        return {"ok": True, "message": summary}

    def _forget_removed(self) -> None:
        for section in list(self._removing):
            sp = self.pools.get(section)
            if sp is None or not sp.has_workers:
                self.pools.pop(section, None)
                self._removing.discard(section)
                if sp is not None:
                    self.collector.forget(sp.name)
                svc = self._pending_add.pop(section, None)
                if svc is not None and self.phase != "stopping":
                    try:
                        self.pools[section] = self._make_pool(svc)
                    except BootError as exc:
                        log.error("reload: %s", exc)
                        continue
                    if svc.enabled:
                        self.pools[section].start()
                    order = [s.name for s in self.config.services]
                    self.pools = {n: self.pools[n] for n in sorted(
                        self.pools, key=lambda n: order.index(n) if n in order else len(order))}

    # -- metrics -----------------------------------------------------------------------------
    def _collect_metrics(self) -> None:
        now = self.system.monotonic()
        for sp in self.pools.values():
            if not sp.has_workers:
                if self._next_collect.pop(sp.name, None) is not None:
                    self.collector.stopped(sp.name)
                continue
            due = self._next_collect.setdefault(sp.name, now)
            if now < due:
                continue
            self._next_collect[sp.name] = now + sp.config.metrics_interval
            self.collector.submit(ServiceSnapshot(sp.name, self.system.time(), sp.metrics_readings(),
                                                  sp.config.metrics_retention))

    # -- web monitor -------------------------------------------------------------------------
    def _supervise_web_monitor(self) -> None:
        web_cfg = self.config.web_monitor
        now = self.system.monotonic()
        if self.web is not None and self.web.poll() is not None:
            code = self.web.returncode
            self.web = None
            self.web_url = None
            if self.phase == "stopping":
                return
            if code in WEB_MONITOR_UNHEALABLE:
                log.error("the web monitor cannot start: %s; not retrying (fix it, then "
                          "`speedysvc reload`)", self._web_failure(code))
                self._web_start_at = None
                return
            delay = self._web_policy.record_crash(now)
            if delay is None:
                log.error("the web monitor keeps exiting (last exit code %s); not restarting it. "
                          "See %s for its output", code,
                          os.path.join(self.config.supervisor.log_dir, SUPERVISOR_LOG + ".log"))
                self._web_start_at = None
                return
            log.warning("the web monitor exited with code %s; restarting it in %gs", code, delay)
            self._web_start_at = now + delay
        if (self.web is None and self._web_start_at is not None and now >= self._web_start_at
                and self.phase != "stopping"):
            self._web_start_at = None
            if not web_cfg.enabled:
                return
            if importlib.util.find_spec("web_monitor") is None:
                log.info("[web monitor] is enabled but the web_monitor package is not installed")
                return
            self._start_web_monitor()

    def _web_failure(self, code: int) -> str:
        web_cfg = self.config.web_monitor
        if code != WEB_MONITOR_PORT_TAKEN:
            return f"its configuration is invalid (exit code {code}; its output is in the supervisor log)"
        holder = port_holder(web_cfg.port)
        return (f"port {web_cfg.port} on {web_cfg.host} is already in use"
                + (f" by {holder}" if holder else "") + " ([web monitor] port)")

    def _start_web_monitor(self) -> None:
        web_cfg = self.config.web_monitor
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        if web_cfg.password_hash:
            env["SPEEDYSVC_MONITOR_PASSWORD_HASH"] = str(web_cfg.password_hash)
        argv = [sys.executable, "-m", "web_monitor", "--host", web_cfg.host, "--port",
                str(web_cfg.port), "--scope", self.scope]
        try:
            self.web = start_helper(argv, env=env)
        except OSError as exc:
            log.error("the web monitor could not start: %s", exc)
            return
        out, err = os.dup(self.web.stdout.fileno()), os.dup(self.web.stderr.fileno())
        self.web.stdout.close()
        self.web.stderr.close()
        self.web.stdout = self.web.stderr = None
        sink = self.capture.services[SUPERVISOR_LOG]
        self.capture.attach_process(sink, self.web.pid, out, err, on_line=self._web_line)
        host = f"[{web_cfg.host}]" if ":" in web_cfg.host else web_cfg.host
        if web_cfg.port:
            self.web_url = f"http://{host}:{web_cfg.port}/"
        log.info("web monitor starting on %s (pid %d)", self.web_url or f"{host}:<any port>",
                 self.web.pid)

    def _web_line(self, line: str) -> None:
        # "web monitor on http://127.0.0.1:5155/ (watching shm://SCOPE)"
        if line.startswith("web monitor on "):
            self.web_url = line.split()[3]
            self._wake()

    def _stop_web_monitor(self) -> None:
        web, self.web = self.web, None
        self.web_url = None
        if web is None:
            return
        web.terminate()
        try:
            web.wait(5)
        except Exception:  # noqa: BLE001
            web.kill()
            web.wait()


def run_supervisor(config: Config) -> int:
    """Run a supervisor for `config` in this process until it is stopped; returns the exit code."""
    return Arbiter(config).run()
