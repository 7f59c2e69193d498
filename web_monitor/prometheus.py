"""Prometheus text exposition format (version 0.0.4) for the supervisor's status. Written by hand
because it is a few lines of escaping; see
https://prometheus.io/docs/instrumenting/exposition_formats/."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = ("running", "starting", "stopped", "stopping", "failed")


def escape_label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(float(value))


@dataclass
class Metric:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    samples: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    def add(self, labels: dict[str, Any], value: Any) -> None:
        if value is None:
            return
        try:
            number = float(value)
        except (TypeError, ValueError):
            return  # a missing or malformed reading is left out rather than reported as 0
        self.samples.append((labels, number))

    def render(self) -> str:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            label_text = ",".join(f'{key}="{escape_label_value(val)}"' for key, val in labels.items())
            lines.append(f"{self.name}{{{label_text}}} {format_value(value)}" if label_text
                         else f"{self.name} {format_value(value)}")
        return "\n".join(lines)


def render(status: Mapping[str, Any] | None) -> str:
    """Exposition text for a control.status() answer; None means the supervisor was unreachable."""
    reachable = Metric("speedysvc_supervisor_up", "gauge",
                       "1 if the monitor could query the supervisor's control service, else 0.")
    reachable.add({}, 0 if status is None else 1)
    metrics = [reachable]
    if status is None:
        return "\n".join(m.render() for m in metrics) + "\n"

    def metric(name: str, kind: str, help_text: str) -> Metric:
        m = Metric(name, kind, help_text)
        metrics.append(m)
        return m

    up = metric("speedysvc_service_up", "gauge", "1 if the service is running, else 0.")
    state = metric("speedysvc_service_status", "gauge",
                   "Current status of the service: 1 for the status it is in, 0 for the others.")
    workers = metric("speedysvc_service_workers", "gauge", "Worker processes currently running.")
    min_workers = metric("speedysvc_service_workers_min", "gauge", "Configured min_proc_num.")
    max_workers = metric("speedysvc_service_workers_max", "gauge", "Configured max_proc_num.")
    uptime = metric("speedysvc_service_uptime_seconds", "gauge", "Seconds since the service started.")
    restarts = metric("speedysvc_service_restarts_total", "counter", "Worker restarts since the supervisor started.")
    errors = metric("speedysvc_service_errors_total", "counter", "Failed calls reported by the supervisor.")
    rss = metric("speedysvc_service_rss_bytes", "gauge", "Resident memory of all workers, bytes.")
    uss = metric("speedysvc_service_uss_bytes", "gauge", "Unique memory of all workers, bytes.")
    cpu = metric("speedysvc_service_cpu_percent", "gauge", "CPU use of all workers, percent of one core.")
    calls = metric("speedysvc_service_calls_per_second", "gauge", "Calls per second, recent rate.")
    w_info = metric("speedysvc_worker_info", "gauge",
                    "Always 1; labels give each worker's current pid (kept off the other worker "
                    "series so a restart does not start new series).")
    w_rss = metric("speedysvc_worker_rss_bytes", "gauge", "Resident memory of one worker, bytes.")
    w_uss = metric("speedysvc_worker_uss_bytes", "gauge", "Unique memory of one worker, bytes.")
    w_cpu = metric("speedysvc_worker_cpu_percent", "gauge", "CPU use of one worker, percent of one core.")
    w_calls = metric("speedysvc_worker_calls_total", "counter", "Calls served by one worker.")

    for svc in status.get("services") or []:
        labels = {"service": svc.get("name", "")}
        current = svc.get("status", "")
        up.add(labels, 1 if current == "running" else 0)
        for name in STATUSES if current in STATUSES else (*STATUSES, current):
            state.add({**labels, "status": name}, 1 if name == current else 0)
        workers.add(labels, svc.get("current"))
        min_workers.add(labels, svc.get("min_proc_num"))
        max_workers.add(labels, svc.get("max_proc_num"))
        uptime.add(labels, svc.get("uptime_s"))
        restarts.add(labels, svc.get("restarts"))
        errors.add(labels, svc.get("errors"))
        rss.add(labels, svc.get("rss"))
        uss.add(labels, svc.get("uss"))
        cpu.add(labels, svc.get("cpu_percent"))
        calls.add(labels, svc.get("calls_per_s"))
        for worker in svc.get("workers") or []:
            wlabels = {**labels, "worker_id": worker.get("worker_id", "")}
            w_info.add({**wlabels, "pid": worker.get("pid", "")}, 1)
            w_rss.add(wlabels, worker.get("rss"))
            w_uss.add(wlabels, worker.get("uss"))
            w_cpu.add(wlabels, worker.get("cpu_percent"))
            w_calls.add(wlabels, worker.get("calls"))
    return "\n".join(m.render() for m in metrics) + "\n"
