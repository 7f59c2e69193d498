"""A stand-in for the supervisor's control API (docs/ARCHITECTURE.md, "Supervisor control API")
for tests of the web layer. It keeps services, workers and a log in memory and makes up metrics
as smooth functions of time, so charts have something to draw."""
from __future__ import annotations

import itertools
import math
import threading
import time
from typing import Any, Callable

LEVELS = ("debug", "info", "warning", "error", "critical")
MIB = 1024 * 1024


class UnknownService(Exception):
    """Same class name as the supervisor's, which is what the monitor looks at."""


class ServiceUnavailable(Exception):
    """Same class name as speedysvc.errors.ServiceUnavailable: the control service is gone."""


class FakeControl:
    def __init__(self, services: dict[str, dict[str, Any]] | None = None, *,
                 history_s: float = 1800.0, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.history_s = history_s
        self.interval_s = interval_s
        self.started_at = clock()
        self.unreachable = False
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.RLock()
        self._pids = itertools.count(41000)
        self._cursor = itertools.count(1)
        self._log: list[dict[str, Any]] = []
        self.services: dict[str, dict[str, Any]] = {}
        if services is None:
            services = {"echo": {"min": 2, "max": 4}, "aimm_engine": {"min": 1, "max": 3},
                        "device_api": {"min": 1, "max": 1, "status": "failed",
                                       "last_error": "ImportError: no module named 'zmq'"}}
        for index, (name, spec) in enumerate(services.items()):
            self._add(name, index, **spec)

    # ---- set-up helpers for tests ---------------------------------------------------------
    def _add(self, name: str, index: int, min: int = 1, max: int = 2, status: str = "running",
             last_error: str = "", note: str = "") -> None:
        svc = {"name": name, "index": index, "status": status, "min": min, "max": max,
               "restarts": 0, "errors": 3 * index, "started_at": self.started_at - self.history_s,
               "last_error": last_error, "note": note, "workers": [], "next_worker": 0}
        self.services[name] = svc
        if status == "running":
            self._spawn(svc, min)
        self.emit(name, f"{name} starting", stream="log", level="info")

    def _spawn(self, svc: dict[str, Any], n: int) -> None:
        for _ in range(n):
            svc["workers"].append({"worker_id": svc["next_worker"], "pid": next(self._pids),
                                   "started_at": self.clock(), "state": "idle"})
            svc["next_worker"] += 1

    def emit(self, name: str, message: str, stream: str = "stdout", level: str = "info",
             worker_id: int | None = 0) -> int:
        with self._lock:
            cursor = next(self._cursor)
            self._log.append({"cursor": cursor, "ts": self.clock(), "pid": 40000 + (worker_id or 0),
                              "worker_id": worker_id, "stream": stream, "level": level,
                              "message": message, "service": name})
            return cursor

    def pids(self, name: str) -> list[int]:
        with self._lock:
            return [w["pid"] for w in self._svc(name)["workers"]]

    def _svc(self, name: str) -> dict[str, Any]:
        if self.unreachable:
            raise ServiceUnavailable("speedysvc_control is not running")
        try:
            return self.services[name]
        except KeyError:
            raise UnknownService(f"no service named {name!r}") from None

    def _record(self, method: str, *args: Any) -> None:
        if self.unreachable:
            raise ServiceUnavailable("speedysvc_control is not running")
        self.calls.append((method, args))

    # ---- made-up measurements -------------------------------------------------------------
    @staticmethod
    def _rss(index: int, wid: int, t: float) -> float:
        return (60 + 25 * index + 8 * wid + 6 * math.sin(t / 90 + wid)) * MIB

    @staticmethod
    def _cpu(index: int, wid: int, t: float) -> float:
        return max(0.0, 12 + 8 * index + 9 * math.sin(t / 40 + wid * 1.3))

    def _worker_status(self, svc: dict[str, Any], w: dict[str, Any], now: float) -> dict[str, Any]:
        rss = self._rss(svc["index"], w["worker_id"], now)
        return {**w, "rss": rss, "uss": rss * 0.7, "cpu_percent": self._cpu(svc["index"], w["worker_id"], now),
                "calls": int((now - w["started_at"]) * 40)}

    # ---- the control API ------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            self._record("status")
            now = self.clock()
            out = []
            for svc in self.services.values():
                workers = [self._worker_status(svc, w, now) for w in svc["workers"]]
                running = svc["status"] == "running"
                out.append({
                    "name": svc["name"], "status": svc["status"], "workers": workers,
                    "min_proc_num": svc["min"], "max_proc_num": svc["max"],
                    "current": len(workers), "started_at": svc["started_at"],
                    "uptime_s": now - svc["started_at"] if running else 0,
                    "restarts": svc["restarts"], "rss": sum(w["rss"] for w in workers),
                    "uss": sum(w["uss"] for w in workers),
                    "cpu_percent": sum(w["cpu_percent"] for w in workers),
                    "calls_per_s": 40.0 * len(workers), "errors": svc["errors"],
                    "tcp_address": f"tcp://127.0.0.1:{6000 + svc['index']}",
                    "last_error": svc["last_error"] or None, "note": svc["note"] or None,
                })
            return {"supervisor": {"pid": 4242, "scope": "fake", "ini": "/srv/app/example.ini",
                                   "started_at": self.started_at}, "services": out}

    def _result(self, ok: bool, message: str) -> dict[str, Any]:
        return {"ok": ok, "message": message}

    def start(self, name: str) -> dict[str, Any]:
        with self._lock:
            svc = self._svc(name)
            self._record("start", name)
            if svc["status"] == "running":
                return self._result(False, f"{name} is already running")
            svc["status"], svc["last_error"], svc["started_at"] = "running", "", self.clock()
            self._spawn(svc, svc["min"])
            return self._result(True, f"{name} started with {svc['min']} workers")

    def stop(self, name: str) -> dict[str, Any]:
        with self._lock:
            svc = self._svc(name)
            self._record("stop", name)
            svc["status"], svc["workers"] = "stopped", []
            return self._result(True, f"{name} stopped")

    def restart(self, name: str) -> dict[str, Any]:
        with self._lock:
            svc = self._svc(name)
            self._record("restart", name)
            count = max(len(svc["workers"]), svc["min"])
            svc["workers"], svc["status"] = [], "running"
            svc["restarts"] += count
            self._spawn(svc, count)
            self.emit(name, f"{name} restarted", stream="log", level="warning")
            return self._result(True, f"{name} restarted ({count} workers)")

    def scale(self, name: str, n: int) -> dict[str, Any]:
        with self._lock:
            svc = self._svc(name)
            self._record("scale", name, n)
            if not svc["min"] <= n <= svc["max"]:
                return self._result(False, f"{name}: {n} is outside min_proc_num..max_proc_num "
                                           f"({svc['min']}..{svc['max']})")
            if n > len(svc["workers"]):
                self._spawn(svc, n - len(svc["workers"]))
            else:
                del svc["workers"][n:]
            return self._result(True, f"{name} scaled to {n}")

    def restart_worker(self, name: str, worker_id: Any) -> dict[str, Any]:
        with self._lock:
            svc = self._svc(name)
            self._record("restart_worker", name, worker_id)
            for w in svc["workers"]:
                if w["worker_id"] == worker_id:
                    w["pid"], w["started_at"] = next(self._pids), self.clock()
                    svc["restarts"] += 1
                    return self._result(True, f"worker {worker_id} of {name} restarted")
            raise KeyError(f"{name} has no worker {worker_id!r}")

    def logs(self, name: str, lines: int = 200, text: str | None = None, level: str | None = None,
             after: int | None = None) -> dict[str, Any]:
        with self._lock:
            self._svc(name)
            self._record("logs", name, lines, text, level, after)
            entries = [e for e in self._log if e["service"] == name]
            cursor = entries[-1]["cursor"] if entries else (after or 0)
            if after is not None:
                entries = [e for e in entries if e["cursor"] > after]
            if level:
                entries = [e for e in entries if LEVELS.index(e["level"]) >= LEVELS.index(level)]
            if text:
                entries = [e for e in entries if text.lower() in e["message"].lower()]
            entries = entries[-lines:]
            return {"entries": [{k: v for k, v in e.items() if k != "service"} for e in entries],
                    "cursor": cursor}

    def metrics(self, name: str, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        with self._lock:
            svc = self._svc(name)
            self._record("metrics", name, since, until)
            now = self.clock()
            first = self.started_at - self.history_s
            start = max(first, since) if since is not None else first
            stop = min(now, until) if until is not None else now
            step = self.interval_s
            ts = [first + step * i for i in range(math.ceil((start - first) / step),
                                                  int((stop - first) / step) + 1)]
            wids = [w["worker_id"] for w in svc["workers"]] if svc["status"] == "running" else []
            workers = {}
            for wid in wids:
                rss = [self._rss(svc["index"], wid, t) for t in ts]
                workers[wid] = {"ts": ts, "rss": rss, "uss": [r * 0.7 for r in rss],
                                "cpu_percent": [self._cpu(svc["index"], wid, t) for t in ts]}
            total = lambda key: [sum(w[key][i] for w in workers.values()) for i in range(len(ts))]  # noqa: E731
            calls = [40.0 * len(wids) * (1 + 0.3 * math.sin(t / 30)) for t in ts]
            return {
                "ts": ts, "rss": total("rss"), "uss": total("uss"), "cpu_percent": total("cpu_percent"),
                "calls_per_s": calls, "errors": [1 if int(t) % 97 == 0 else 0 for t in ts],
                "p50_ms": [0.05 + 0.01 * math.sin(t / 20) for t in ts],
                "p99_ms": [0.4 + 0.2 * math.sin(t / 15) ** 2 for t in ts],
                "workers": workers,
                "methods": [{"name": "echo", "count": 123456, "errors": 2, "p50_ms": 0.041, "p99_ms": 0.35},
                            {"name": "slow_sum", "count": 512, "errors": 0, "p50_ms": 4.2, "p99_ms": 11.8}]
                if wids else [],
            }
