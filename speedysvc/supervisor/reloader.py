"""Carrying out a reload: the plan (reload_planner, pure) applied to the arbiter's pools.

A removed or replaced section's pool stops first and leaves the arbiter once it has stopped;
the replacement (another class in the same section) starts then.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from . import reload_planner
from .config import ConfigError, load_config
from .pool_interface import SupervisedPool
from .runtime import BootError

log = logging.getLogger("speedysvc.supervisor")


class Reloader:
    def __init__(self, arbiter: Any):
        self.arbiter = arbiter
        self.replacing: dict[str, Any] = {}   # section -> config of the pool to add once stopped

    def reload(self) -> dict[str, Any]:
        """Re-read the .ini file and apply what changed (SIGHUP, and the reload command)."""
        a = self.arbiter
        if a.phase == "stopping":
            return {"ok": False, "message": "the supervisor is shutting down"}
        try:
            new = a.runtime.isolate(load_config(a.config.path))
        except ConfigError as exc:
            for problem in exc.errors:
                log.error("reload refused, the configuration is invalid: %s", problem)
            return {"ok": False, "message": f"configuration invalid; still running the previous "
                                            f"one:\n{exc}"}
        plan = reload_planner.plan_reload(
            a.config, new, {section: sp.has_workers for section, sp in a.pools.items()})
        if plan is None:
            log.info("reload: nothing changed")
            return {"ok": True, "message": "nothing changed"}
        done = [message for step in plan.steps if (message := self._apply(step))]
        a.pools = {n: a.pools[n] for n in plan.order if n in a.pools}
        if plan.supervisor_changed:
            log.warning("reload: [supervisor] settings changed; they apply after a restart of the "
                        "supervisor")
        a.config = new
        if plan.web_monitor_changed:
            log.info("reload: [web monitor] changed; restarting it")
            a.web.configure(new.web_monitor)
        summary = "; ".join(done) or "applied"
        log.info("reload: %s", summary)
        return {"ok": True, "message": summary}

    def _apply(self, step: reload_planner.Step) -> Optional[str]:
        a = self.arbiter
        sp: SupervisedPool
        svc = step.config
        if step.action == reload_planner.ADD:
            return self._add_pool(step.section, svc)
        sp = a.pools[step.section]
        if step.action in (reload_planner.REMOVE, reload_planner.REPLACE):
            sp.stop()
            self.replacing[step.section] = svc  # None: removed for good
            return (f"removing {sp.name}" if svc is None
                    else f"replacing {sp.name} ({step.section} now from {svc.import_from})")
        sp.set_logs(a.runtime.capture.service(sp.name, svc.log_dir, svc.log_max_bytes,
                                              svc.log_backups, svc.log_level))
        if step.action == reload_planner.STOP:
            sp.apply_settings(svc)
            return sp.stop()
        if step.action == reload_planner.START:
            sp.apply_settings(svc)
            return sp.start()
        return sp.reconfigure(svc, list(step.changed))

    def _add_pool(self, section: str, svc: Any) -> Optional[str]:
        a = self.arbiter
        try:
            a.pools[section] = a.make_pool(svc)
        except BootError as exc:
            log.error("reload: %s", exc)
            return None
        return a.pools[section].start() if svc.enabled else None

    def add_replacements(self) -> None:
        """Removed or replaced pools leave once stopped; replacements start then."""
        a = self.arbiter
        for section, svc in list(self.replacing.items()):
            sp = a.pools.get(section)
            if sp is not None and sp.has_workers:
                continue
            del self.replacing[section]
            a.pools.pop(section, None)
            if sp is not None:
                a.collector.forget(sp.name)
            if svc is not None and a.phase != "stopping":
                self._add_pool(section, svc)
                order = [s.name for s in a.config.services]
                a.pools = {n: a.pools[n] for n in sorted(
                    a.pools, key=lambda n: order.index(n) if n in order else len(order))}
