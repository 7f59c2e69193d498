"""Where a service's pool comes from: the engine its section names (`engine = local`, worker
processes on this machine, or `engine = ray`, replicas on a Ray cluster through Ray Serve).

Both pools implement pool_interface.SupervisedPool, so the arbiter drives them alike. Ray is
imported only when a service runs on it, and its runtime (a connection to the cluster, or a
local Ray instance) is started with the first such service and stopped with the supervisor.
A new engine is one more branch here and one more SupervisedPool implementation.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

from . import service_pool as sp_mod
from .config import Config, ServiceConfig
from .pool_interface import SupervisedPool
from .runtime import BootError
from .system import System


class Engines:
    def __init__(self, scope: str, system: System, pool_factory: Callable[..., Any]):
        self.scope = scope
        self.system = system
        self.pool_factory = pool_factory
        self.ray_runtime: Any = None   # speedysvc.ray_engine.runtime.RayRuntime, once needed

    def make_pool(self, svc: ServiceConfig, config: Config, capture: Any) -> SupervisedPool:
        """The pool of one service section; `capture` (monitoring.log_capture) gets its logs."""
        try:
            cls = svc.service_class()
        except Exception as exc:  # validated at load; a module may still fail the second time
            raise BootError(f"[{svc.name}] cannot import {svc.import_from}.{svc.name}: {exc}") from exc
        logs = capture.service(cls.service_name(), svc.log_dir, svc.log_max_bytes, svc.log_backups,
                               svc.log_level)
        if svc.engine == "ray":
            from ..ray_engine.pool import RayServicePool
            from ..ray_engine.runtime import RayRuntime
            if self.ray_runtime is None:
                self.ray_runtime = RayRuntime(config.supervisor, self.scope)
            return RayServicePool(svc, cls, self.scope, runtime=self.ray_runtime, system=self.system,
                                  logs=logs)
        return sp_mod.ServicePool(svc, cls, self.scope, system=self.system, logs=logs,
                                  pool_factory=self.pool_factory)

    def stop(self) -> None:
        if self.ray_runtime is not None:
            with contextlib.suppress(Exception):
                self.ray_runtime.stop()  # a local Ray instance stops with us
