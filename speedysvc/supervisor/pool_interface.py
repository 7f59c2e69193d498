"""The interface the arbiter drives for each service, whatever runs the service.

The arbiter owns the order of things (boot, stop, reload, signals, commands, metrics); a
pool owns one service's workers and every decision about them. `ServicePool` runs worker
processes on this machine; a pool of another engine (Ray Serve replicas, say) implements the
same methods, and the arbiter, the control API, the CLI and the web monitor do not need to
know which one they have.

Every method is called from the arbiter's main-loop thread.
"""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any, Optional

from ..monitoring.collector import WorkerReading
from .config import ServiceConfig


class ServiceState(str, enum.Enum):
    """A service's life cycle. A str, so status dicts and comparisons read as plain words."""
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class SupervisedPool(ABC):
    """One service under supervision."""

    name: str            # the service name (shared memory, logs, metrics)
    section: str         # its .ini section
    config: ServiceConfig
    status: ServiceState
    last_error: Optional[str]
    logs: Any            # monitoring.log_capture.ServiceLogs, or None
    note: Optional[str]  # a short state the service reports about itself (set_note)
    shutting_down: bool  # the supervisor is stopping: worker exits are not crashes any more

    # -- shared by every engine ----------------------------------------------------------
    def set_logs(self, logs: Any) -> None:
        """Where captured output goes from now on (a reload may move it)."""
        self.logs = logs

    def set_note(self, note: Optional[str]) -> None:
        """A short state the service reports about itself, shown by status and the monitor."""
        self.note = note

    def begin_shutdown(self) -> None:
        """The supervisor is stopping: worker exits are no longer crashes to answer."""
        self.shutting_down = True

    def fail(self, reason: str) -> None:
        """Mark the service failed, e.g. when it could not even begin to start."""
        self.status, self.last_error = ServiceState.FAILED, reason

    # -- what the arbiter asks -----------------------------------------------------------
    @property
    @abstractmethod
    def has_workers(self) -> bool:
        """Workers exist (starting, running or stopping): False once fully stopped."""

    @abstractmethod
    def status_dict(self, latest: dict[int, dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
        """The control API's ServiceStatus; `latest` and `totals` come from the collector."""

    @abstractmethod
    def metrics_readings(self) -> list[WorkerReading]:
        """One reading per worker for the metrics collector."""

    @abstractmethod
    def log_location(self) -> tuple[str, str]:
        """(log_dir, log name) of the service's captured output."""

    @abstractmethod
    def next_wakeup(self) -> float:
        """Monotonic time by which tick() wants to run again."""

    # -- what the arbiter tells ----------------------------------------------------------
    @abstractmethod
    def tick(self) -> None:
        """Observe the workers and act (reap, replace, scale, retry)."""

    @abstractmethod
    def start(self, keep_error: bool = False) -> str:
        """Start the service; `keep_error` keeps the last error visible (automatic retries)."""

    @abstractmethod
    def stop(self, fail_reason: Optional[str] = None) -> str:
        """Stop gracefully; a `fail_reason` leaves the service failed, with that reason."""

    @abstractmethod
    def kill_all(self) -> None:
        """Stop at once, without grace."""

    @abstractmethod
    def restart(self) -> str:
        """Replace every worker without a gap in service."""

    @abstractmethod
    def restart_worker(self, worker_id: int) -> str:
        """Replace one worker; KeyError when there is no such running worker."""

    @abstractmethod
    def scale(self, n: int, reason: str = "on request") -> tuple[bool, str]:
        """Run `n` workers (within min..max); (done, message)."""

    @abstractmethod
    def scale_by(self, step: int, reason: str) -> str:
        """One worker more or fewer, within min..max (SIGTTIN/SIGTTOU)."""

    @abstractmethod
    def reconfigure(self, new_config: ServiceConfig, changed: list[str]) -> str:
        """Apply a reloaded section: live options in place, the others by a restart."""

    @abstractmethod
    def apply_settings(self, new_config: ServiceConfig) -> None:
        """New settings for a service that is not running: they apply at its next start."""





    @abstractmethod
    def supervision_error(self, exc: BaseException) -> None:
        """tick() raised: count it as a crash of the service (back-off, crash loop)."""
