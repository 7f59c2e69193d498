"""The policy-level owner of one service: a WorkerPool plus the decisions about it.

The arbiter calls `tick()` from its main loop, serve() from its monitor thread (the only thread
that starts processes, because PR_SET_PDEATHSIG ties a worker to the thread that spawned it).
Each tick:

- reaps exited workers; an exit nobody asked for is a crash, answered with an exponentially
  growing delay before the replacement starts, and a crash loop marks the service failed;
- kills workers that did not become ready within start_timeout, or whose call (or idle loop)
  has not moved for worker_hang_timeout (the worker table's busy_since / heartbeat words);
- retires workers above max_proc_mem_bytes: the replacement starts first, and only once it
  serves calls is the old one asked to stop, finishing its call (no call is lost);
- every scale_interval asks the pure scaling policy for a worker count, logging its reason;
- reconciles: starts or stops workers until the serving ones match the target.

Retiring (memory recycling, restart, restart_worker) is one mechanism: a retiring worker no
longer counts towards the target, so a replacement starts; once enough replacements serve
calls, the retiring worker is stopped gracefully.
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..exit_codes import WORKER_CANNOT_HEAL
from ..methods import ServerMethodsBase
from ..shm import service_segment as ss
from ..monitoring.collector import WorkerReading
from . import scaling_policy, worker_health
from .config import ServiceConfig
from .options import SERVICE, options_for
from .pool_interface import ServiceState, SupervisedPool
from .restart_policy import RestartPolicy
from .system import System

if TYPE_CHECKING:
    from ..tcp.settings import TCPSettings

STARTING, RUNNING, STOPPING, STOPPED, FAILED = (
    ServiceState.STARTING, ServiceState.RUNNING, ServiceState.STOPPING, ServiceState.STOPPED,
    ServiceState.FAILED)
HANG_DUMP_GRACE_S = 0.5  # time a hung worker gets to write its stacks before SIGKILL

# Options a reload applies to a running service without touching its workers (marked in the
# option registry).
LIVE_OPTIONS = frozenset(opt.name for opt in options_for(SERVICE).values() if opt.live)

QUEUE_SAMPLES_PER_INTERVAL = 5
POLL_WHILE_CHANGING_S = 0.05     # how soon to look again while workers start or stop


def default_pool_factory(service_cls: type, scope: str, name: str, import_path: str,
                         allow_insecure: Optional[bool], tcp: Any = None) -> Any:
    from .pool import WorkerPool
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # print() in a worker reaches its log line by line
    return WorkerPool(service_cls, scope, import_path=import_path, name=name,
                      allow_insecure=allow_insecure, env=env, tcp=tcp)


def tcp_settings(config: ServiceConfig) -> Any:
    """The workers' TCP settings from a service's configuration (None: shared memory only)."""
    if config.tcp_bind is None:
        return None
    from ..tcp.settings import TCPSettings
    return TCPSettings(host=config.tcp_bind.host, port=config.port or 0,
                       secret=config.tcp_secret or None, max_frame=config.tcp_max_frame_bytes,
                       compression=config.tcp_compression, drain_timeout=config.graceful_timeout,
                       header_timeout=config.tcp_header_timeout, idle_timeout=config.tcp_idle_timeout,
                       max_connections=config.tcp_max_connections,
                       max_connections_per_address=config.tcp_max_connections_per_address,
                       auth_failure_backoff=config.tcp_auth_failure_backoff,
                       tls_cert=config.tcp_tls_cert, tls_key=config.tcp_tls_key,
                       tls_client_ca=config.tcp_tls_client_ca)


class ServicePool(SupervisedPool):
    """A service run by worker processes on this machine (see the module docstring)."""

    def __init__(self, config: ServiceConfig, service_cls: type[ServerMethodsBase], scope: str, *,
                 system: Optional[System] = None, logs: Any = None,
                 pool_factory: Callable[..., Any] = default_pool_factory,
                 name: Optional[str] = None, tcp: Optional[TCPSettings] = None):
        """`name` and `tcp` stand in for the class's name and the config's tcp_* options
        (serve() takes both as arguments)."""
        self.config = config
        self.service_cls = service_cls
        self.name: str = name or service_cls.service_name()
        self.tcp = tcp
        self.section = config.name
        self.scope = scope
        self.system = system or System()
        self.logs = logs                   # monitoring.log_capture.ServiceLogs, or None
        self.log = logging.getLogger(f"speedysvc.service.{self.name}")
        self.pool_factory = pool_factory
        self.pool: Any = None
        self.status: ServiceState = STOPPED
        self.target = 0
        self.started_at: Optional[float] = None   # wall clock, for the control API
        self.restarts = 0
        self.boot_failures = 0   # workers in a row that exited before they became ready
        self.last_error: Optional[str] = None
        self.start_failure: Optional[Exception] = None  # why the last start could not open the pool
        self.last_traceback: Optional[str] = None  # of the last crash, shown in status
        self.retry_at: Optional[float] = None      # a crash loop's automatic start (monotonic)
        self._kill_after: dict[int, float] = {}     # hung workers dumping their stacks first
        self._traceback_shown: Optional[str] = None
        self.last_scaling: Optional[str] = None
        # a short state the service reports about itself (e.g. "hat: connected"); set by
        # the service through the control API's set_note, shown by status and the monitor
        self.note: Optional[str] = None
        self.restart_policy = RestartPolicy.from_service(config)
        self.scaling_state = scaling_policy.ScalingState()
        self.spawn_not_before = 0.0
        self.retiring: set[int] = set()           # worker ids being replaced
        self.kill_reasons: dict[int, str] = {}    # worker id -> why the supervisor killed it
        self.spawned_at: dict[int, float] = {}    # worker id -> monotonic time of spawn
        self.stop_deadline: Optional[float] = None
        self.fail_when_stopped = False
        self.start_when_stopped = False
        self.shutting_down = False   # the supervisor is stopping: exits are not crashes any more
        self.tcp_address: Optional[str] = None
        self._busy_seen: dict[int, int] = {}
        self._last_scale_at: Optional[float] = None
        self._next_queue_sample = 0.0
        self._queue_samples: list[int] = []
        self._next_mem_check = 0.0
        self._last_hold_reason: Optional[scaling_policy.Hold] = None

    # -- commands (main-loop thread) ---------------------------------------------------
    def start(self, keep_error: bool = False) -> str:
        """Start the workers; `keep_error` keeps the last error visible (an automatic retry)."""
        self.retry_at = None
        if self.status in (RUNNING, STARTING):
            return f"{self.name} is already {self.status}"
        if self.status == STOPPING:
            self.start_when_stopped = True
            return f"{self.name} will start again once it has stopped"
        now = self.system.monotonic()
        self.restart_policy.reset()
        self.scaling_state = scaling_policy.ScalingState()
        if not keep_error:
            self.last_error = None
            self.last_traceback = None
        self.fail_when_stopped = False
        self.start_failure = None
        self.boot_failures = 0
        self.spawn_not_before = 0.0
        self.retiring.clear()
        self._busy_seen.clear()
        self._queue_samples.clear()
        self._last_scale_at = now
        self.pool = self.pool_factory(self.service_cls, self.scope, self.name,
                                      f"{self.config.import_from}:{self.section}",
                                      bool(self.config.force_insecure_serialisation),
                                      self.tcp if self.tcp is not None else tcp_settings(self.config))
        try:
            self.pool.open()  # reserves the TCP port the workers will share
        except (OSError, RuntimeError) as exc:  # a taken port; a service already running in the scope
            self.pool.close()
            self.pool = None
            self.status = FAILED
            self.last_error = str(exc)
            self.start_failure = exc
            self.log.error("cannot start %s: %s", self.name, exc)
            return f"{self.name} failed: {exc}"
        self.tcp_address = self.pool.tcp_address
        if self.tcp_address:
            self.log.info("%s serves TCP on %s (through its TCP front)", self.name, self.tcp_address)
        self.status = STARTING
        self.started_at = self.system.time()
        self.target = self.config.min_proc_num
        self.log.info("starting %s with %d worker(s)", self.name, self.target)
        self._reconcile(now)
        return f"starting {self.name}"

    def stop(self, fail_reason: Optional[str] = None) -> str:
        """Stop every worker gracefully (KILL after graceful_timeout); fail_reason marks failed."""
        if fail_reason is not None:
            self.last_error = fail_reason
            self.fail_when_stopped = True
        self.start_when_stopped = False
        if self.status in (STOPPED, FAILED):
            if fail_reason is not None:
                self.status = FAILED
            return f"{self.name} is already {self.status}"
        if self.status == STOPPING:
            return f"{self.name} is already stopping"
        self.status = STOPPING
        self.target = 0
        self.stop_deadline = self.system.monotonic() + self.config.graceful_timeout
        for w in list(self.pool.workers):
            self.pool.request_stop(w)
        self.log.info("stopping %s (%d worker(s), up to %gs to finish their calls)", self.name,
                      len(self.pool.workers), self.config.graceful_timeout)
        return f"stopping {self.name}"

    def kill_all(self) -> None:
        """Immediate stop: KILL every process and release the shared memory."""
        if self.pool is not None:
            for w in list(self.pool.workers):
                self.pool.kill(w)
            self.pool.wait_exited(5.0)
            self.pool.reap()
        self._close_pool()
        self.status = STOPPED

    def restart(self) -> str:
        """Rolling restart: replacements start first; the old workers stop once they serve."""
        if self.status in (STOPPED, FAILED):
            return self.start()
        if self.status == STOPPING:
            self.start_when_stopped = True
            return f"{self.name} will start again once it has stopped"
        ids = [w.worker_id for w in self._active()]
        self.retiring.update(ids)
        self.log.info("restarting %s: replacing worker(s) %s", self.name, _ids(ids))
        self._reconcile(self.system.monotonic())
        return f"restarting {self.name} ({len(ids)} worker(s))"

    def restart_worker(self, worker_id: int) -> str:
        for w in self._active():
            if w.worker_id == worker_id:
                self.retiring.add(worker_id)
                self.log.info("replacing worker %d (pid %d) on request", worker_id, w.pid)
                self._reconcile(self.system.monotonic())
                return f"replacing worker {worker_id} of {self.name}"
        raise KeyError(f"{self.name} has no running worker {worker_id!r}")

    def scale(self, n: int, reason: str = "on request") -> tuple[bool, str]:
        lo, hi = self.config.min_proc_num, self.config.max_proc_num
        if self.status not in (RUNNING, STARTING):
            return False, f"{self.name} is {self.status}; start it before scaling"
        if not lo <= n <= hi:
            return False, (f"{self.name}: {n} is outside min_proc_num..max_proc_num ({lo}..{hi})")
        now = self.system.monotonic()
        before = self.target
        self.target = n
        # a manual change counts as scaling, so the cool-downs keep the policy from undoing it
        self.scaling_state = scaling_policy.ScalingState(last_scale_up=now, last_scale_down=now)
        self.last_scaling = f"{before} -> {n} ({reason})"
        self.log.info("scaling %s %s", self.name, self.last_scaling)
        self._reconcile(now)
        return True, f"{self.name} scaled from {before} to {n}"

    def reconfigure(self, new_config: ServiceConfig, changed: list[str]) -> str:
        """Apply a reloaded section: live options in place, others by restarting what uses them."""
        self.config = new_config
        self.restart_policy.update_settings(new_config)
        if self.status in (STOPPED, FAILED):
            return f"{self.name}: new settings apply at the next start"
        needs_restart = [k for k in changed if k not in LIVE_OPTIONS]
        if needs_restart:
            self.log.info("reload: %s changed; restarting %s", ", ".join(needs_restart), self.name)
            self.stop()
            self.start_when_stopped = True
            return f"{self.name}: restarting for {', '.join(needs_restart)}"
        lo, hi = new_config.min_proc_num, new_config.max_proc_num
        if self.target < lo or self.target > hi:
            self.target = min(max(self.target, lo), hi)
            self.log.info("reload: worker count now %d (within %d..%d)", self.target, lo, hi)
        self._reconcile(self.system.monotonic())
        live = [k for k in changed if k in LIVE_OPTIONS]
        if live:
            self.log.info("reload: applied %s", ", ".join(f"{k}={getattr(new_config, k)!r}"
                                                          for k in live))
        return f"{self.name}: applied {', '.join(changed)}"

    def scale_by(self, step: int, reason: str) -> str:
        lo, hi = self.config.min_proc_num, self.config.max_proc_num
        if self.status != RUNNING:
            return f"{self.name} is {self.status}"
        n = min(max(self.target + step, lo), hi)
        if n == self.target:
            message = f"{self.name} stays at {n} worker(s) (min {lo}, max {hi})"
            self.log.info("%s: %s", reason, message)
            return message
        return self.scale(n, reason=reason)[1]

    def apply_settings(self, new_config: ServiceConfig) -> None:
        """New settings for a service that is not running: they apply at its next start."""
        self.config = new_config
        self.restart_policy.update_settings(new_config)

    def supervision_error(self, exc: BaseException) -> None:
        now = self.system.monotonic()
        delay = self.restart_policy.record_crash(now)
        if delay is None:
            try:
                self.stop(fail_reason=f"supervisor error: {type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - already failing; the kill at shutdown remains
                self.log.exception("stopping %s after a supervision error failed", self.name)
        else:
            self.spawn_not_before = now + delay

    # -- what the arbiter reads ----------------------------------------------------------
    @property
    def has_workers(self) -> bool:
        return self.pool is not None

    def log_location(self) -> tuple[str, str]:
        return self.config.log_dir, self.name

    def metrics_readings(self) -> list[WorkerReading]:
        stats = self.read_stats()
        return [WorkerReading(r["worker_id"], r["pid"], r["calls"], r["errors"],
                              stats.get(r["worker_id"], {}))
                for r in self.worker_rows()]

    # -- the tick ------------------------------------------------------------------------
    def tick(self) -> None:
        if self.pool is None:
            self._retry_after_crash_loop()
            return
        now = self.system.monotonic()
        self._reap(now)
        if self.pool is None:
            return
        if self.status == STOPPING:
            self._advance_stop(now)
            return
        self._check_health(now)
        self._sample_queue(now)
        if self.status == RUNNING:
            self._scale(now)
        self._reconcile(now)
        self._stop_replaced()
        # running: enough workers serve (a ready worker already listens on TCP too)
        if (self.status == STARTING
                and self._ready_count() >= min(self.target, self.config.min_proc_num)):
            self.status = RUNNING
            self.log.info("%s is running (%d worker(s) ready)", self.name, self._ready_count())

    def next_wakeup(self) -> float:
        """Monotonic time by which tick() wants to run again."""
        now = self.system.monotonic()
        if self.pool is None:
            return self.retry_at if self.retry_at is not None else now + 3600
        if self.status in (STARTING, STOPPING) or self.retiring or any(
                self._state(w) == ss.STARTING for w in self.pool.workers):
            return now + POLL_WHILE_CHANGING_S
        times = [self._next_queue_sample, self._next_mem_check if self.config.max_proc_mem_bytes else now + 1.0,
                 now + 1.0]
        if self.spawn_not_before > now:
            times.append(self.spawn_not_before)
        return max(now + 0.005, min(times))

    # -- workers -------------------------------------------------------------------------
    def _state(self, w: Any) -> int:
        state: int = self.pool.segment.worker_word(w.slot, ss.W_STATE)
        return state

    def _active(self) -> list[Any]:
        """Workers that count towards the target: alive, not stopping, not being replaced."""
        return [w for w in self.pool.workers
                if w.stopping_since is None and w.worker_id not in self.retiring and w.alive()]

    def _ready(self, w: Any) -> bool:
        return w.alive() and self._state(w) in (ss.IDLE, ss.BUSY)

    def _ready_count(self) -> int:
        return sum(1 for w in self._active() if self._ready(w))

    def _spawn(self, now: float) -> Any:
        pipes = self.logs.new_pipes() if self.logs is not None else None
        if pipes is not None:
            self.pool.stdout, self.pool.stderr = pipes.stdout_w, pipes.stderr_w
        try:
            worker = self.pool.spawn()
        except BaseException:
            if pipes is not None:
                self.logs.discard(pipes)
            raise
        finally:
            self.pool.stdout = self.pool.stderr = None
        if pipes is not None:
            self.logs.attach(pipes, worker.pid, worker.worker_id)
        self.spawned_at[worker.worker_id] = now
        self.log.debug("started worker %d (pid %d)", worker.worker_id, worker.pid)
        return worker

    def _reap(self, now: float) -> None:
        for w, code in self.pool.reap():
            self.retiring.discard(w.worker_id)
            self.spawned_at.pop(w.worker_id, None)
            self._busy_seen.pop(w.worker_id, None)
            reason = self.kill_reasons.pop(w.worker_id, None)
            # Ctrl-C reaches the whole process group: while the supervisor stops, workers that
            # leave on their own are not crashes to answer with replacements
            if w.stopping_since is not None or self.status == STOPPING or self.shutting_down:
                if self.logs is not None:
                    self.logs.forget(w.worker_id)
                self.log.debug("worker %d (pid %d) stopped (%s)", w.worker_id, w.pid,
                               _describe_exit(code))
                continue
            self.restarts += 1
            self.boot_failures = 0 if w.booted else self.boot_failures + 1
            what = reason or f"exited unexpectedly with {_describe_exit(code)}"
            last = self.logs.last_error_line(w.worker_id) if self.logs is not None else None
            detail = f"worker {w.worker_id} (pid {w.pid}) {what}" + (f"; last error: {last}" if last else "")
            self.last_error = detail
            tb = self.logs.last_traceback(w.worker_id) if self.logs is not None else None
            if tb:
                self.last_traceback = tb
                if tb != self._traceback_shown:  # each new traceback once, not every restart
                    self._traceback_shown = tb
                    self.log.error("worker %d (pid %d) of %s crashed:\n%s", w.worker_id, w.pid,
                                   self.name, tb)
            if code == WORKER_CANNOT_HEAL:
                message = (f"{detail}; restarting cannot help (fix the cause, then start "
                           f"{self.name} again); marking {self.name} failed")
                self.log.error("%s", message)
                self.stop(fail_reason=message)
                return
            delay = self.restart_policy.record_crash(now)
            if delay is None:
                self.retry_at = self.restart_policy.retry_after_loop(now)
                then = (f"starting it again in {self.config.crash_loop_backoff:g}s"
                        if self.retry_at is not None else "not starting it again (crash_loop_backoff 0)")
                message = (f"crash loop: {len(self.restart_policy.crashes)} crashes within "
                           f"{self.config.crash_loop_window:g}s ({detail}); marking {self.name} "
                           f"failed, {then}")
                self.log.error("%s", message)
                self.stop(fail_reason=message)
                return
            self.spawn_not_before = max(self.spawn_not_before, now + delay)
            self.log.warning("%s; restarting in %.3gs", detail, delay)

    def _check_health(self, now: float) -> None:
        """Judge every live worker (worker_health) and carry the verdicts out."""
        if self._kill_after:
            self._kill_dumped(now)
        settings = worker_health.HealthSettings.from_service(self.config)
        measure_memory = bool(settings.max_proc_mem_bytes) and now >= self._next_mem_check
        if measure_memory:
            self._next_mem_check = now + min(1.0, self.config.metrics_interval)
        wall = self.system.time_ns()
        seg = self.pool.segment
        for w in list(self.pool.workers):
            if w.worker_id in self.kill_reasons or w.worker_id in self.retiring or not w.alive():
                continue
            reading = worker_health.HealthReading(
                state=self._state(w), spawned_at=self.spawned_at.get(w.worker_id, now),
                stopping_since=w.stopping_since,
                busy_since_ns=seg.worker_word(w.slot, ss.W_BUSY_SINCE_NS),
                heartbeat_ns=seg.worker_word(w.slot, ss.W_HEARTBEAT_NS),
                rss=self.system.rss(w.pid) if measure_memory and w.stopping_since is None else None)
            verdict = worker_health.judge(reading, settings, now, wall)
            if verdict is None:
                continue
            if verdict.action == worker_health.KILL:
                self._kill(w, verdict.reason, dump_stacks=verdict.dump_stacks)
            else:
                self.retiring.add(w.worker_id)
                self.log.warning("worker %d (pid %d) %s", w.worker_id, w.pid, verdict.reason)
                self.restarts += 1

    def _kill(self, w: Any, reason: str, dump_stacks: bool = False) -> None:
        self.kill_reasons[w.worker_id] = reason
        dump = getattr(self.pool, "dump_stacks", None)
        if dump_stacks and dump is not None and dump(w):
            # faulthandler writes every thread's stack to the worker's stderr (its log) first
            self.log.error("worker %d (pid %d) %s; its Python stacks go to its log, then it is "
                           "killed", w.worker_id, w.pid, reason)
            self._kill_after[w.worker_id] = self.system.monotonic() + HANG_DUMP_GRACE_S
            return
        self.log.error("worker %d (pid %d) %s; killing it", w.worker_id, w.pid, reason)
        self.pool.kill(w)

    def _kill_dumped(self, now: float) -> None:
        for w in self.pool.workers:
            due = self._kill_after.get(w.worker_id)
            if due is not None and (now >= due or not w.alive()):
                del self._kill_after[w.worker_id]
                self.pool.kill(w)

    def _retry_after_crash_loop(self) -> None:
        if self.status != FAILED or self.retry_at is None or self.shutting_down:
            return
        if self.system.monotonic() < self.retry_at:
            return
        self.log.warning("%s failed in a crash loop %gs ago; starting it again", self.name,
                         self.config.crash_loop_backoff)
        self.start(keep_error=True)

    def _reconcile(self, now: float) -> None:
        if self.status not in (STARTING, RUNNING) or self.shutting_down:
            return
        active = self._active()
        missing = self.target - len(active)
        if missing > 0 and now >= self.spawn_not_before:
            for _ in range(missing):
                self._spawn(now)
        elif missing < 0:
            # stop the newest idle workers first: they have the least warm state
            by_preference = sorted(active, key=lambda w: (self._state(w) == ss.BUSY, -w.worker_id))
            for w in by_preference[:-missing]:
                self.pool.request_stop(w)
                self.log.info("stopping worker %d (pid %d): scaled down", w.worker_id, w.pid)

    def _stop_replaced(self) -> None:
        """Stop retiring workers once enough of their replacements serve calls."""
        if not self.retiring or self._ready_count() < self.target:
            return
        for w in self.pool.workers:
            if w.worker_id in self.retiring and w.stopping_since is None:
                self.log.info("worker %d (pid %d) replaced; stopping it gracefully", w.worker_id, w.pid)
                self.pool.request_stop(w)

    def _advance_stop(self, now: float) -> None:
        if self.pool.workers and now >= (self.stop_deadline or now):
            for w in list(self.pool.workers):
                if w.alive():
                    self.log.warning("worker %d (pid %d) did not stop within graceful_timeout "
                                     "%gs; killing it", w.worker_id, w.pid, self.config.graceful_timeout)
                    self.pool.kill(w)
        if self.pool.workers:
            return
        self._close_pool()
        self.status = FAILED if self.fail_when_stopped else STOPPED
        self.log.info("%s %s", self.name, self.status)
        if self.start_when_stopped and not self.fail_when_stopped:
            self.start_when_stopped = False
            self.start()

    def _close_pool(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        self.tcp_address = None
        self.retiring.clear()
        self.kill_reasons.clear()
        self.spawned_at.clear()

    # -- scaling -------------------------------------------------------------------------
    def _sample_queue(self, now: float) -> None:
        if now >= self._next_queue_sample:
            self._queue_samples.append(self.pool.segment.queue_depth())
            self._next_queue_sample = now + self.config.scale_interval / QUEUE_SAMPLES_PER_INTERVAL

    def measure(self, now: float, dt: float) -> scaling_policy.Measurements:
        """Load over the last interval: busy fraction from the workers' busy-time counters
        (including the call in progress), mean queue depth, and the machine's CPU."""
        wall = self.system.time_ns()
        seg = self.pool.segment
        busy_ns, n = 0, 0
        seen = {}
        for w in self._active():
            if not self._ready(w):
                continue
            n += 1
            total = seg.worker_word(w.slot, ss.W_BUSY_NS)
            since = seg.worker_word(w.slot, ss.W_BUSY_SINCE_NS)
            if since and self._state(w) == ss.BUSY:
                total += max(0, wall - since)
            before = self._busy_seen.get(w.worker_id, total)
            busy_ns += max(0, total - before)
            seen[w.worker_id] = total
        self._busy_seen = seen
        busy = min(1.0, busy_ns / (dt * 1e9 * n)) if n and dt > 0 else 0.0
        queue = sum(self._queue_samples) / len(self._queue_samples) if self._queue_samples else 0.0
        self._queue_samples.clear()
        return scaling_policy.Measurements(workers=len(self._active()), busy=busy, queue_depth=queue,
                                           cpu=self.system.machine_cpu())

    def _scale(self, now: float) -> None:
        last = self._last_scale_at if self._last_scale_at is not None else now
        if now - last < self.config.scale_interval:
            return
        self._last_scale_at = now
        m = self.measure(now, now - last)
        if self.retiring or now < self.spawn_not_before:
            return  # a replacement or restart is under way: the count is not the pool's choice
        m = scaling_policy.Measurements(self.target, m.busy, m.queue_depth, m.cpu)
        decision = scaling_policy.decide(m, scaling_policy.ScalingSettings.from_service(self.config),
                                         self.scaling_state, now)
        self.scaling_state = decision.state
        if decision.desired != self.target:
            self.last_scaling = decision.reason
            self.log.info("scaling %s: %s", self.name, decision.reason)
            self.target = decision.desired
            self._last_hold_reason = None
            return
        # Holding under load (at max, CPU-bound, cooling down) is worth an INFO line once per
        # reason; routine decisions (steady, idle at min, still counting) are DEBUG.
        hold = decision.hold
        pressing = (decision.state.high_readings > 0 and hold is not None
                    and hold != scaling_policy.Hold.WAITING)
        level = logging.INFO if pressing and hold != self._last_hold_reason else logging.DEBUG
        self._last_hold_reason = hold if pressing else None
        self.log.log(level, "scaling %s: %s", self.name, decision.reason)

    # -- reporting -----------------------------------------------------------------------
    def worker_rows(self) -> list[dict[str, Any]]:
        """The worker table as read from shared memory (main-loop thread only)."""
        if self.pool is None:
            return []
        rows = []
        seg = self.pool.segment
        for w in self.pool.workers:
            state = self._state(w)
            if w.stopping_since is not None:
                name = "stopping"
            elif w.worker_id in self.retiring:
                name = "retiring"
            else:
                name = ss.STATE_NAMES.get(state, str(state))
            rows.append({"worker_id": w.worker_id, "pid": w.pid, "slot": w.slot,
                         "started_at": w.started_at, "state": name,
                         "calls": seg.worker_word(w.slot, ss.W_CALLS),
                         "errors": seg.worker_word(w.slot, ss.W_ERRORS)})
        return rows

    def read_stats(self) -> dict[int, dict[str, Any]]:
        """Per-worker method statistics {worker_id: {method: [count, errors, buckets]}}."""
        if self.pool is None:
            return {}
        return {w.worker_id: self.pool.segment.read_stats(w.slot) for w in self.pool.workers}

    def status_dict(self, latest: dict[int, dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
        """One ServiceStatus of the control API; `latest` holds the collector's last samples."""
        now = self.system.time()
        workers = []
        for row in self.worker_rows():
            sample = latest.get(row["worker_id"], {})
            workers.append({"worker_id": row["worker_id"], "pid": row["pid"],
                            "started_at": row["started_at"], "state": row["state"],
                            "rss": sample.get("rss", 0), "uss": sample.get("uss", 0),
                            "cpu_percent": sample.get("cpu_percent", 0.0), "calls": row["calls"]})
        up = self.status in (RUNNING, STARTING, STOPPING) and self.started_at is not None
        return {
            "name": self.name, "section": self.section, "status": self.status.value,
            "workers": workers,
            "min_proc_num": self.config.min_proc_num, "max_proc_num": self.config.max_proc_num,
            "current": len([w for w in workers if w["state"] in ("idle", "busy", "starting")]),
            "target": self.target,
            "started_at": self.started_at,
            "uptime_s": now - self.started_at if up and self.started_at is not None else 0.0,
            "restarts": self.restarts, "boot_failures": self.boot_failures,
            "rss": sum(w["rss"] for w in workers), "uss": sum(w["uss"] for w in workers),
            "cpu_percent": sum(w["cpu_percent"] for w in workers),
            "calls_per_s": totals.get("calls_per_s", 0.0), "errors": totals.get("errors", 0),
            "tcp_address": self.tcp_address, "last_error": self.last_error,
            "last_traceback": self.last_traceback,
            "retry_in_s": (max(0.0, self.retry_at - self.system.monotonic())
                           if self.retry_at is not None and self.status == FAILED else None),
            "last_scaling": self.last_scaling, "note": self.note,
        }


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids) or "none"


def _describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        import signal
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
