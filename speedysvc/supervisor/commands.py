"""The supervisor's control verbs, each defined once.

A `Command` has a name, its parameters, one line of help and a handler. From this registry
come the control service's methods (speedysvc.supervisor.control_service), the CLI's
subcommands (speedysvc.cli), and the methods the web monitor may call (web_monitor.control).
Adding a verb is one `@command` here; the CLI shows it with a generic presentation unless
cli.py gives it one of its own.

Handlers take the arbiter first. Those marked `on_loop` run on the arbiter's main-loop thread
(everything that reads or changes pools does: supervision stays single-threaded); the others
(logs, metrics) read their files in the control service's thread.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

REQUIRED = inspect.Parameter.empty


class UnknownService(LookupError):
    """No service of that name is configured in this supervisor."""


@dataclass(frozen=True)
class Param:
    name: str
    convert: Callable[[Any], Any] = str
    default: Any = REQUIRED
    help: str = ""

    def parameter(self) -> inspect.Parameter:
        return inspect.Parameter(self.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=self.default)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    params: tuple[Param, ...]
    handler: Callable[..., Any]
    on_loop: bool = True
    changes_state: bool = True   # steers the supervisor (the web monitor POSTs it, with CSRF)
    while_stopping: bool = False  # still carried out while the supervisor is shutting down

    def signature(self) -> inspect.Signature:
        return inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
                                  *(p.parameter() for p in self.params)])

    def convert(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The arguments in parameter order, each through its converter (None stays None)."""
        bound = inspect.Signature([p.parameter() for p in self.params]).bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(None if value is None else p.convert(value)
                     for p, value in zip(self.params, bound.arguments.values(), strict=True))


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *params: Param, on_loop: bool = True,
            changes_state: bool = True,
            while_stopping: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        COMMANDS[name] = Command(name, help, params, handler, on_loop, changes_state,
                                 while_stopping or not changes_state)
        return handler
    return register


def _result(ok: bool, message: str) -> dict[str, Any]:
    return {"ok": ok, "message": message}


_NAME = Param("name", str, help="the service (its name or its .ini section)")


# -- reading -------------------------------------------------------------------------------
@command("status", "The supervisor and every service, with their workers", changes_state=False)
def status(arbiter: Any) -> dict[str, Any]:
    services = []
    for sp in arbiter.pools.values():
        latest = arbiter.collector.latest.get(sp.name, {}) if sp.has_workers else {}
        # errors and calls count since the supervisor started, across restarts of the service
        totals = dict(arbiter.collector.totals.get(sp.name, {}))
        if not sp.has_workers:
            totals["calls_per_s"] = 0.0
        services.append(sp.status_dict(latest, totals))
    control = arbiter.runtime.control
    return {"supervisor": {"pid": os.getpid(), "scope": arbiter.scope, "ini": arbiter.config.path,
                           "started_at": arbiter.started_at, "phase": arbiter.phase,
                           "control_address": control.shm_address,
                           "control_tcp_address": control.tcp_address,
                           "web_monitor": arbiter.web.url if arbiter.web else None},
            "services": services}


@command("logs", "Captured output and log records of a service", _NAME,
         Param("lines", int, 200, "how many entries"), Param("text", str, None, "only entries containing this"),
         Param("level", str.upper, None, "only entries at this level or above"),
         Param("after", int, None, "entries after this cursor"), on_loop=False, changes_state=False)
def logs(arbiter: Any, name: str, lines: int, text: Optional[str], level: Optional[str],
         after: Optional[int]) -> dict[str, Any]:
    entries, cursor = arbiter.log_reader(name).query(lines=lines, text=text or None, level=level,
                                                     after=after)
    return {"entries": entries, "cursor": cursor}


@command("metrics", "Time series of a service's memory, CPU, calls and latency", _NAME,
         Param("since", float, None), Param("until", float, None), on_loop=False,
         changes_state=False)
def metrics(arbiter: Any, name: str, since: Optional[float], until: Optional[float]) -> dict[str, Any]:
    series: dict[str, Any] = arbiter.metrics_store_for(name).series(
        arbiter.service_name(name), since=since, until=until)
    return series


# -- steering ------------------------------------------------------------------------------
@command("start", "Start a stopped or failed service", _NAME)
def start(arbiter: Any, name: str) -> dict[str, Any]:
    sp = arbiter.lookup(name)
    already = sp.status in ("running", "starting")
    return _result(not already, sp.start())


@command("stop", "Stop a service gracefully", _NAME, while_stopping=True)
def stop(arbiter: Any, name: str) -> dict[str, Any]:
    sp = arbiter.lookup(name)
    already = not sp.has_workers
    message = sp.stop()
    if not sp.has_workers:
        arbiter.collector.stopped(sp.name)
    return _result(not already, message)


@command("restart", "Rolling restart: new workers start first, old ones stop once they serve",
         _NAME)
def restart(arbiter: Any, name: str) -> dict[str, Any]:
    return _result(True, arbiter.lookup(name).restart())


@command("scale", "Set the number of workers of a service", _NAME,
         Param("n", int, help="the number of workers"))
def scale(arbiter: Any, name: str, n: int) -> dict[str, Any]:
    return _result(*arbiter.lookup(name).scale(n))


@command("restart_worker", "Replace one worker of a service", _NAME,
         Param("worker_id", int, help="the worker's id (see status)"), while_stopping=True)
def restart_worker(arbiter: Any, name: str, worker_id: int) -> dict[str, Any]:
    sp = arbiter.lookup(name)
    if not sp.has_workers:
        return _result(False, f"{sp.name} is {sp.status}")
    return _result(True, sp.restart_worker(worker_id))


def _note(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("a note is a string of at most 200 characters, or None")
    return value


@command("set_note", "A short state a service reports about itself (shown by status and the "
         "web monitor); None clears it", _NAME, Param("note", _note, help="the note, or None to clear it"),
         while_stopping=True)
def set_note(arbiter: Any, name: str, note: Optional[str]) -> dict[str, Any]:
    sp = arbiter.lookup(name)
    sp.set_note(note or None)
    return _result(True, f"{sp.name}: note set")


@command("reload", "Re-read the .ini file, as SIGHUP does", while_stopping=True)  # says why itself
def reload(arbiter: Any) -> dict[str, Any]:
    result: dict[str, Any] = arbiter.reload()
    return result


def run(arbiter: Any, name: str, args: tuple[Any, ...]) -> Any:
    """Carry out a command (already on the right thread); args are converted."""
    cmd = COMMANDS[name]
    if not cmd.while_stopping and arbiter.phase == "stopping":
        if cmd.params and cmd.params[0] is _NAME:
            arbiter.lookup(args[0])  # an unknown name is still the first thing said
        return _result(False, "the supervisor is shutting down")
    return cmd.handler(arbiter, *args)
