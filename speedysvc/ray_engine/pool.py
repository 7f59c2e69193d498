"""RayServicePool: a service run by Ray Serve replicas, behind the arbiter's pool interface.

One service = one Serve application `<scope>.<service>` with one deployment, plus the
service's board actor (board.py). Serve owns the replicas: it places them on the cluster's
nodes, autoscales them between min_proc_num and max_proc_num on ongoing requests, health-checks
and replaces them. This pool deploys, watches (serve.status() and the board), reports and
removes; the arbiter, the control API, the CLI and the web monitor see a SupervisedPool.

Workers in status are the replicas that reported to the board recently (each replica reports
its own pid, node, memory, CPU, calls and latencies); worker ids are small integers given in
the order replicas first report. Scaling decisions are Serve's: the pool shows the latest
change of the replica count with Serve's trigger and message as its reason.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional

from ..client import RAY_SERVICES_ENV
from ..methods import ServerMethodsBase
from ..monitoring.collector import WorkerReading
from ..supervisor.pool_interface import ServiceState, SupervisedPool
from ..supervisor.system import System
from .names import NAMESPACE, app_name, board_name

STARTING, RUNNING, STOPPING, STOPPED, FAILED = (
    ServiceState.STARTING, ServiceState.RUNNING, ServiceState.STOPPING, ServiceState.STOPPED,
    ServiceState.FAILED)
POLL_WHILE_CHANGING_S = 0.25
POLL_S = 1.0
STALE_READING_INTERVALS = 4      # a replica silent this many metrics intervals is not listed
BOARD_TIMEOUT_S = 5.0
KILL_TIMEOUT_S = 30.0
LIVE_OPTIONS = frozenset({"log_dir", "log_level", "log_max_bytes", "log_backups",
                          "metrics_interval", "metrics_retention", "wait_until_completed"})


def serve_options(config: Any, min_replicas: int) -> dict[str, Any]:
    """The deployment options of a service section (see options_on_ray for the mapping)."""
    max_ongoing = config.max_ongoing_requests
    actor_options: dict[str, Any] = {"num_cpus": config.ray_num_cpus}
    if config.max_proc_mem_bytes:
        actor_options["memory"] = config.max_proc_mem_bytes
    return {
        "max_ongoing_requests": max_ongoing,
        "ray_actor_options": actor_options,
        "graceful_shutdown_timeout_s": config.graceful_timeout,
        # how often a stopping replica looks whether its calls are done (Serve waits 2 s)
        "graceful_shutdown_wait_loop_s": min(0.5, max(0.1, config.graceful_timeout)),
        "health_check_period_s": max(1.0, min(10.0, config.metrics_interval)),
        "autoscaling_config": {
            "min_replicas": min_replicas,
            "initial_replicas": min_replicas,
            "max_replicas": max(min_replicas, config.max_proc_num),
            "target_ongoing_requests": max(0.1, config.scale_up_busy * max_ongoing),
            "metrics_interval_s": config.scale_interval,
            "look_back_period_s": max(config.scale_interval,
                                      config.scale_interval * config.scale_up_intervals),
            "upscale_delay_s": config.scale_up_cooldown,
            "downscale_delay_s": config.scale_down_cooldown,
        },
    }


class RayServicePool(SupervisedPool):
    def __init__(self, config: Any, service_cls: type[ServerMethodsBase], scope: str, *,
                 runtime: Any, system: Optional[System] = None, logs: Any = None):
        self.config = config
        self.service_cls = service_cls
        self.name: str = service_cls.service_name()
        self.note: Optional[str] = None  # set by the service through the control API's set_note
        self.section = config.name
        self.scope = scope
        self.runtime = runtime
        self.system = system or System()
        self.logs = logs
        self.log = logging.getLogger(f"speedysvc.service.{self.name}")
        self.app = app_name(scope, self.name)
        # siblings (local workers started later, replicas) reach this service with ray://
        listed = [n for n in os.environ.get(RAY_SERVICES_ENV, "").split(",") if n]
        os.environ[RAY_SERVICES_ENV] = ",".join(dict.fromkeys([*listed, self.name]))
        self.status: ServiceState = STOPPED
        self.deployed = False
        self.board: Any = None
        self.version = 0
        self.min_replicas = config.min_proc_num   # raised by a manual scale
        self.started_at: Optional[float] = None
        self.start_deadline = 0.0
        self.restarts = 0
        self.last_error: Optional[str] = None
        self.last_scaling: Optional[str] = None
        self.start_when_stopped = False
        self.fail_when_stopped = False
        self.shutting_down = False
        self.worker_ids: dict[str, int] = {}
        self.readings: dict[str, dict[str, Any]] = {}
        self.replica_states: dict[str, int] = {}
        self.deployment_message = ""
        self._replica_count: Optional[int] = None
        self._manual_reason: Optional[str] = None   # why the last count change was ours
        self._log_cursor = 0
        self._next_poll = 0.0
        self._next_board = 0.0

    # -- Ray -------------------------------------------------------------------------------
    @staticmethod
    def _serve() -> Any:
        from ray import serve
        return serve

    def _deploy(self) -> None:
        from ray.serve.api import RunTarget
        from .replica import build_application
        settings = {"max_ongoing_requests": self.config.max_ongoing_requests,
                    "max_proc_mem_bytes": self.config.max_proc_mem_bytes,
                    "metrics_interval": min(1.0, self.config.metrics_interval),
                    "at_most_once": True, "claims_dir": self.claims_dir}
        options = serve_options(self.config, self.min_replicas)
        # a new generation changes the replicas' options, so Serve replaces them (a restart)
        env = {"SPEEDYSVC_SCOPE": self.scope, "RAY_USAGE_STATS_ENABLED": "0",
               # calls run on Serve's thread pool, not its event loop: a method may block (and
               # call a sibling service) without stalling the replica (the default of later Rays)
               "RAY_SERVE_RUN_SYNC_IN_THREADPOOL": "1",
               "SPEEDYSVC_GENERATION": str(self.version),
               RAY_SERVICES_ENV: os.environ.get(RAY_SERVICES_ENV, "")}
        # replicas import the service as the supervisor does (on a cluster's other nodes
        # these directories must hold the same code, or use a runtime_env working_dir)
        paths = [*self.runtime.config.python_path, *filter(None, os.environ.get(
            "PYTHONPATH", "").split(os.pathsep))]
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        options["ray_actor_options"]["runtime_env"] = {"env_vars": env}
        app = build_application(f"{self.config.import_from}:{self.section}", self.scope,
                                self.name, settings, options)
        self._serve().run_many([RunTarget(app, name=self.app, route_prefix=None)],
                               wait_for_ingress_deployment_creation=False,
                               wait_for_applications_running=False)
        self.deployed = True

    @property
    def claims_dir(self) -> Optional[str]:
        if self.runtime.config.ray_address == "local":
            return os.path.join(self.runtime.temp_dir, "claims")  # removed with the instance
        return None

    def _app_status(self) -> Any:
        return self._serve().status().applications.get(self.app)

    # -- commands --------------------------------------------------------------------------
    def start(self, keep_error: bool = False) -> str:
        if self.status in (RUNNING, STARTING):
            return f"{self.name} is already {self.status}"
        if self.status == STOPPING:
            self.start_when_stopped = True
            return f"{self.name} will start again once it has stopped"
        if not keep_error:
            self.last_error = None
        self.fail_when_stopped = False
        self.min_replicas = self.config.min_proc_num
        self._manual_reason = None
        try:
            self.runtime.start()
            import ray
            from . import board as board_mod
            self.board = board_mod.get_or_create(board_name(self.scope, self.name), NAMESPACE)
            ray.get(self.board.head.remote(), timeout=60)
            self._deploy()
        except Exception as exc:  # noqa: BLE001 - no cluster, bad options: the service fails
            self.status = FAILED
            self.last_error = f"cannot deploy {self.name} to Ray Serve: {type(exc).__name__}: {exc}"
            self.log.error("%s", self.last_error)
            return f"{self.name} failed: {self.last_error}"
        self.status = STARTING
        self.started_at = self.system.time()
        self.start_deadline = self.system.monotonic() + self.config.start_timeout + 60.0
        self._next_poll = 0.0
        self.log.info("deploying %s to Ray Serve as application %s (%d..%d replicas)", self.name,
                      self.app, self.config.min_proc_num, self.config.max_proc_num)
        return f"starting {self.name}"

    def stop(self, fail_reason: Optional[str] = None) -> str:
        if fail_reason is not None:
            self.last_error = fail_reason
            self.fail_when_stopped = True
        self.start_when_stopped = False
        if not self.deployed:
            if fail_reason is not None:
                self.status = FAILED
            return f"{self.name} is already {self.status}"
        if self.status == STOPPING:
            return f"{self.name} is already stopping"
        self.status = STOPPING
        try:
            self._serve().delete(self.app, _blocking=False)
        except Exception as exc:  # noqa: BLE001 - the cluster is gone: nothing left to stop
            self.log.warning("deleting application %s failed: %s", self.app, exc)
            self._stopped()
        self._next_poll = 0.0
        self.log.info("stopping %s (Serve stops its replicas, up to %gs for their calls)",
                      self.name, self.config.graceful_timeout)
        return f"stopping {self.name}"

    def kill_all(self) -> None:
        if self.deployed:
            try:
                self._serve().delete(self.app, _blocking=True)
            except Exception as exc:  # noqa: BLE001
                self.log.warning("deleting application %s failed: %s", self.app, exc)
        self._stopped(final=STOPPED)

    def restart(self) -> str:
        if self.status in (STOPPED, FAILED):
            return self.start()
        if self.status == STOPPING:
            self.start_when_stopped = True
            return f"{self.name} will start again once it has stopped"
        self.version += 1
        self.restarts += 1
        self._deploy()  # a new version: Serve replaces the replicas, new ones first
        self.log.info("restarting %s: Serve rolls its replicas over to version %d", self.name,
                      self.version)
        return f"restarting {self.name} (Serve replaces every replica)"

    def restart_worker(self, worker_id: int) -> str:
        import ray
        for replica, wid in self.worker_ids.items():
            reading = self.readings.get(replica)
            if wid == worker_id and reading is not None:
                actor = ray.get_actor(reading["actor"], namespace="serve")
                ray.kill(actor, no_restart=True)  # Serve notices and starts a replacement
                self.restarts += 1
                self.log.info("replica %s (worker %d, pid %s on %s) killed on request; Serve "
                              "replaces it", replica, worker_id, reading["pid"], reading["node"])
                return f"replacing worker {worker_id} of {self.name}"
        raise KeyError(f"{self.name} has no running worker {worker_id!r}")

    def scale(self, n: int, reason: str = "on request") -> tuple[bool, str]:
        lo, hi = self.config.min_proc_num, self.config.max_proc_num
        if self.status not in (RUNNING, STARTING):
            return False, f"{self.name} is {self.status}; start it before scaling"
        if not lo <= n <= hi:
            return False, f"{self.name}: {n} is outside min_proc_num..max_proc_num ({lo}..{hi})"
        before = self.min_replicas
        self.min_replicas = n
        self._deploy()  # autoscaling settings change in place: no replica is replaced
        self.last_scaling = f"at least {n} replica(s), was {before} ({reason})"
        self._manual_reason = f"at least {n} replica(s) {reason}"
        self.log.info("scaling %s: Serve keeps at least %d replica(s) (autoscaling up to %d) "
                      "(%s)", self.name, n, hi, reason)
        return True, f"{self.name} scaled to at least {n} replica(s) (Serve autoscales up to {hi})"

    def scale_by(self, step: int, reason: str) -> str:
        if self.status != RUNNING:
            return f"{self.name} is {self.status}"
        n = min(max(self.min_replicas + step, self.config.min_proc_num), self.config.max_proc_num)
        if n == self.min_replicas:
            return f"{self.name} stays at {n} replica(s)"
        return self.scale(n, reason=reason)[1]

    def reconfigure(self, new_config: Any, changed: list[str]) -> str:
        self.config = new_config
        if not self.deployed or self.status in (STOPPED, FAILED):
            return f"{self.name}: new settings apply at the next start"
        if set(changed) <= LIVE_OPTIONS:
            return f"{self.name}: applied {', '.join(changed)}"
        self.min_replicas = min(max(self.min_replicas, new_config.min_proc_num),
                                new_config.max_proc_num)
        self._deploy()  # Serve changes what it can in place and rolls replicas for the rest
        return f"{self.name}: redeployed for {', '.join(changed)}"

    def apply_settings(self, new_config: Any) -> None:
        self.config = new_config

    def supervision_error(self, exc: BaseException) -> None:
        self.last_error = f"supervisor error: {type(exc).__name__}: {exc}"

    # -- observing -------------------------------------------------------------------------
    @property
    def has_workers(self) -> bool:
        return self.deployed

    def next_wakeup(self) -> float:
        now = self.system.monotonic()
        if not self.deployed:
            return now + 3600
        return max(now + 0.01, min(self._next_poll, self._next_board))

    def tick(self) -> None:
        if not self.deployed:
            return
        now = self.system.monotonic()
        if now >= self._next_poll:
            changing = self.status in (STARTING, STOPPING)
            self._next_poll = now + (POLL_WHILE_CHANGING_S if changing else POLL_S)
            self._observe_app(now)
        if self.deployed and now >= self._next_board:
            self._next_board = now + min(1.0, self.config.metrics_interval)
            self._read_board()

    def _observe_app(self, now: float) -> None:
        app = self._app_status()
        if self.status == STOPPING:
            if app is None:
                self._stopped()
            return
        if app is None:
            self.status = FAILED
            self.last_error = f"application {self.app} disappeared from Ray Serve"
            self.log.error("%s", self.last_error)
            self._stopped(final=FAILED)
            return
        state = str(app.status.value if hasattr(app.status, "value") else app.status)
        deployment = app.deployments.get(self.name)
        if deployment is not None:
            self.replica_states = {str(getattr(k, "value", k)): v
                                   for k, v in deployment.replica_states.items()}
            self.deployment_message = deployment.message or ""
            self._note_scaling(deployment)
        if state == "RUNNING":
            if self.status == STARTING:
                self.status = RUNNING
                self.log.info("%s is running (%d replica(s))", self.name,
                              self.replica_states.get("RUNNING", 0))
        elif state == "DEPLOY_FAILED":
            message = "; ".join(m for m in (app.message, self.deployment_message) if m) or \
                "deploy failed"
            self.log.error("Ray Serve could not deploy %s: %s", self.name, message)
            self.stop(fail_reason=f"Ray Serve could not deploy it: {message}")
        elif state == "UNHEALTHY":
            self.last_error = f"Ray Serve reports it unhealthy: {app.message or self.deployment_message}"
        if self.status == STARTING and now > self.start_deadline:
            self.stop(fail_reason=f"not running within start_timeout ({state}: "
                                  f"{app.message or self.deployment_message})")

    def _note_scaling(self, deployment: Any) -> None:
        count = sum(v for k, v in self.replica_states.items() if k in ("STARTING", "RUNNING"))
        before, self._replica_count = self._replica_count, count
        if before is None or before == count or self.status != RUNNING:
            return
        trigger = str(getattr(deployment.status_trigger, "value", deployment.status_trigger))
        if trigger.startswith("CONFIG_UPDATE") and self._manual_reason:
            why = self._manual_reason   # Serve applying our own scale or redeploy
        else:
            why = f"Serve autoscaler: {trigger}" + (f", {deployment.message}"
                                                     if deployment.message else "")
        self.last_scaling = f"{before} -> {count} replica(s) ({why})"
        self.log.info("scaling %s: %s", self.name, self.last_scaling)

    def _read_board(self) -> None:
        import ray
        try:
            snap = ray.get(self.board.snapshot.remote(self._log_cursor), timeout=BOARD_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - keep the last readings; try again later
            self.log.debug("reading the board of %s failed: %s", self.name, exc)
            return
        fresh_after = time.time() - STALE_READING_INTERVALS * max(1.0, self.config.metrics_interval)
        self.readings = {r: v for r, v in snap["readings"].items() if v["reported_at"] >= fresh_after}
        for replica in self.readings:
            if replica not in self.worker_ids:
                self.worker_ids[replica] = len(self.worker_ids) + 1
        for seq, ts, stream, level, message, replica in snap["logs"]:
            self._log_cursor = max(self._log_cursor, seq)
            reading = snap["readings"].get(replica, {})
            if self.logs is not None:
                self.logs.write(stream, message, pid=reading.get("pid"),
                                worker_id=self.worker_ids.get(replica), level=level, ts=ts)

    def _stopped(self, final: Optional[ServiceState] = None) -> None:
        self.deployed = False
        try:
            from .claims import remove_everywhere
            remove_everywhere(self.claims_dir, self.app)
        except Exception:  # noqa: BLE001 - the cluster may be gone
            pass
        if self.board is not None:
            try:
                import ray
                ray.kill(self.board, no_restart=True)
            except Exception:  # noqa: BLE001 - gone with the cluster
                pass
            self.board = None
        self.readings.clear()
        self.replica_states.clear()
        self._replica_count = None
        self.status = final or (FAILED if self.fail_when_stopped else STOPPED)
        self.log.info("%s %s", self.name, self.status)
        if self.start_when_stopped and not self.fail_when_stopped and not self.shutting_down:
            self.start_when_stopped = False
            self.start()

    # -- reporting -------------------------------------------------------------------------
    def log_location(self) -> tuple[str, str]:
        return self.config.log_dir, self.name

    def _rows(self) -> list[tuple[int, str, dict[str, Any]]]:
        return sorted((self.worker_ids[r], r, v) for r, v in self.readings.items())

    def metrics_readings(self) -> list[WorkerReading]:
        return [WorkerReading(wid, v["pid"], v["calls"], v["errors"], v["stats"],
                              os_reading={"rss": v["rss"], "uss": v["uss"],
                                          "cpu_percent": v["cpu_percent"]})
                for wid, _r, v in self._rows()]

    def status_dict(self, latest: dict[int, dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
        now = self.system.time()
        workers = [{"worker_id": wid, "pid": v["pid"], "started_at": v["started_at"],
                    "state": v["state"], "rss": v["rss"], "uss": v["uss"],
                    "cpu_percent": v["cpu_percent"], "calls": v["calls"], "node": v["node"],
                    "replica": replica, "redeliveries": v.get("redeliveries", 0)}
                   for wid, replica, v in self._rows()]
        up = self.status in (RUNNING, STARTING, STOPPING)
        target = sum(v for k, v in self.replica_states.items() if k in ("STARTING", "RUNNING"))
        return {
            "name": self.name, "section": self.section, "status": self.status.value,
            "engine": "ray", "ray_application": self.app,
            "ray_dashboard": self.runtime.dashboard_url,
            "replica_states": dict(self.replica_states),
            "workers": workers,
            "min_proc_num": self.config.min_proc_num, "max_proc_num": self.config.max_proc_num,
            "current": len(workers), "target": target,
            "started_at": self.started_at,
            "uptime_s": now - self.started_at if up and self.started_at is not None else 0.0,
            "restarts": self.restarts,
            "rss": sum(w["rss"] for w in workers), "uss": sum(w["uss"] for w in workers),
            "cpu_percent": sum(w["cpu_percent"] for w in workers),
            "calls_per_s": totals.get("calls_per_s", 0.0), "errors": totals.get("errors", 0),
            "tcp_address": None, "last_error": self.last_error, "last_traceback": None,
            "retry_in_s": None, "last_scaling": self.last_scaling, "note": self.note,
        }
