"""A real supervisor (`python -m speedysvc FILE.ini`) whose services run on Ray Serve.

Built on the supervisor tests' harness: its own scope, runtime and log directories, and a
cleanup that checks no process it saw is left. Ray services stop gracefully first (SIGTERM),
so their Serve applications are deleted from the shared test cluster.
"""
from __future__ import annotations

import os
import signal
from typing import Optional

from supervisor_harness import Supervisor, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))

# Short intervals so that scaling and readings are seen within seconds on 2 cores.
RAY_DEFAULTS = {
    "min_proc_num": "1",
    "max_proc_num": "1",
    "metrics_interval": "250ms",
    "graceful_timeout": "5s",
    "start_timeout": "60s",
    "ray_num_cpus": "0.1",
    "scale_interval": "500ms",
    "scale_up_intervals": "2",
    "scale_up_cooldown": "1s",
    "scale_down_cooldown": "4s",
    "wait_until_completed": "false",   # Serve deploys the applications side by side
}


def ray_ini(scope: str, log_dir: str, services: dict[str, dict], defaults: Optional[dict] = None,
            supervisor: Optional[dict] = None, web_monitor: Optional[dict] = None) -> str:
    sup = {"scope": scope, "control_port": "0", "client_sweep_interval": "1s", "engine": "ray",
           "ray_address": "auto", **(supervisor or {})}
    lines = ["[supervisor]", *(f"{k} = {v}" for k, v in sup.items()), "", "[web monitor]"]
    web = {"enabled": "false"} if web_monitor is None else web_monitor
    lines += [f"{k} = {v}" for k, v in web.items()]
    lines += ["", "[defaults]", f"log_dir = {log_dir}"]
    lines += [f"{k} = {v}" for k, v in {**RAY_DEFAULTS, **(defaults or {})}.items()]
    for section, options in services.items():
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {v}" for k, v in {"import_from": "support_services", **options}.items()]
    return "\n".join(lines) + "\n"


class RaySupervisor(Supervisor):
    def __init__(self, tmp_path, scope: str, services: dict[str, dict], *,
                 defaults: Optional[dict] = None, supervisor: Optional[dict] = None,
                 web_monitor: Optional[dict] = None):
        self._supervisor_options = supervisor
        super().__init__(tmp_path, scope, services, defaults=defaults, web_monitor=web_monitor)
        self.env["PYTHONPATH"] = os.pathsep.join([HERE, self.env["PYTHONPATH"]])

    def write_ini(self, services: dict[str, dict], defaults: Optional[dict] = None,
                  web_monitor: Optional[dict] = None) -> None:
        with open(self.ini, "w") as f:
            f.write(ray_ini(self.scope, self.log_dir, services, defaults,
                            getattr(self, "_supervisor_options", None), web_monitor))

    def workers(self, name: str, states=("idle", "busy")) -> list[dict]:
        return [w for w in self.service(name)["workers"] if w["state"] in states]

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for child in self.children():
                self.seen_pids.add(child.pid)
            self.proc.send_signal(signal.SIGTERM)  # graceful: Serve applications are deleted
            try:
                self.proc.wait(60)
            except Exception:  # noqa: BLE001 - the base cleanup kills it
                pass
        super().cleanup()


def serve_apps(scope: str) -> list[str]:
    """The Serve applications of `scope` in the test cluster."""
    from ray import serve
    import speedysvc.ray_engine.runtime as runtime
    runtime.connect(None)
    return sorted(a for a in serve.status().applications if a.startswith(scope + "."))


__all__ = ["RaySupervisor", "serve_apps", "wait_until", "ray_ini"]
