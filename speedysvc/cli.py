"""The `speedysvc` command: run a supervisor, or steer a running one through its control API.

    speedysvc run FILE.ini [--check-config | --print-config]   (also: python -m speedysvc FILE.ini)
    speedysvc status [NAME] [--json]
    speedysvc start|stop|restart NAME...
    speedysvc scale NAME N
    speedysvc restart-worker NAME WORKER_ID
    speedysvc logs NAME [-n LINES] [-f] [--grep TEXT] [--level LEVEL] [--json] [-c FILE.ini]
    speedysvc metrics NAME [--since T] [--until T]
    speedysvc reload

Every verb after `run` is a command of the supervisor's control API
(speedysvc.supervisor.commands); the web monitor uses the same ones.

The running supervisor is found through its state file (see speedysvc.supervisor.state_file);
with several running, say which with -c FILE.ini or --scope SCOPE.

Exit codes: 0 success; 1 the supervisor refused or failed the request; 2 usage;
status: 3 not running, 4 unreachable (LSB); run: 78 configuration error, 70 boot failure.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from .exit_codes import EXIT_BOOT_FAILURE, EXIT_CONFIG, EXIT_OK  # noqa: F401 - re-exported

if TYPE_CHECKING:
    pass

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_UNREACHABLE = 4
def _subcommands() -> set[str]:
    from .supervisor.commands import COMMANDS
    return {"run", *(name.replace("_", "-") for name in COMMANDS)}
PROG = "speedysvc"


class CliError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# -- finding and calling the supervisor ---------------------------------------------------------
def _targets(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Live supervisors matching -c/--scope (or all in the runtime dir); raises when none."""
    from .supervisor import state_file
    runtime_dir, scope = state_file.default_runtime_dir(), args.scope
    if args.config:
        from .supervisor.config import ConfigError, load_config
        try:
            cfg = load_config(args.config, check_imports=False)
        except ConfigError as exc:
            raise CliError(f"{args.config}:\n{exc}", EXIT_CONFIG) from None
        runtime_dir, scope = cfg.supervisor.runtime_dir, cfg.supervisor.scope
    live, stale = state_file.find(runtime_dir, scope)
    if not live:
        where = f"scope {scope}" if scope else f"state files in {runtime_dir}"
        extra = " (stale state file of a dead supervisor found)" if stale else ""
        raise CliError(f"no running supervisor ({where}){extra}", EXIT_NOT_RUNNING)
    return live


def _one_target(args: argparse.Namespace) -> dict[str, Any]:
    live = _targets(args)
    if len(live) > 1:
        names = "; ".join(f"scope {s['scope']} ({s.get('ini')})" for s in live)
        raise CliError(f"several supervisors are running: {names}. Choose one with -c FILE.ini "
                       f"or --scope SCOPE", EXIT_USAGE)
    return live[0]


def _connect(state: dict[str, Any]) -> Any:
    from . import connect
    from .supervisor.control_service import CONTROL_SERVICE_NAME
    addresses = [a for a in (state.get("control_address"), state.get("control_tcp_address")) if a]
    try:
        return connect(CONTROL_SERVICE_NAME, addresses, connect_timeout=2.0, timeout=60.0,
                       secret=state.get("control_secret"))
    except Exception as exc:  # noqa: BLE001 - any failure here means "cannot reach it"
        raise CliError(f"the supervisor (pid {state.get('pid')}, scope {state.get('scope')}) "
                       f"does not answer: {exc}", EXIT_UNREACHABLE) from None


def _call(client: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    from .errors import SpeedysvcError
    from .supervisor.control_service import UnknownService
    try:
        return getattr(client, method)(*args, **kwargs)
    except UnknownService as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    except (SpeedysvcError, OSError) as exc:
        if type(exc).__name__ == "RemoteError":
            raise CliError(str(exc), EXIT_FAILED) from None
        raise CliError(f"the supervisor does not answer: {exc}", EXIT_UNREACHABLE) from None


# -- run ----------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .supervisor.config import ConfigError, load_config
    if getattr(args, "engine", None):
        os.environ["SPEEDYSVC_ENGINE"] = args.engine  # the default of [supervisor] engine
    try:
        config = load_config(args.ini)
    except ConfigError as exc:
        print(f"{PROG}: {len(exc.errors)} configuration error(s) in {args.ini}:", file=sys.stderr)
        for problem in exc.errors:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if args.print_config:
        print(config.to_ini_text(mask_secrets=True))
        return EXIT_OK
    if args.check_config:
        names = ", ".join(s.name for s in config.services)
        print(f"{args.ini}: configuration OK ({len(config.services)} service(s): {names}; "
              f"scope {config.supervisor.scope})")
        return EXIT_OK
    from .supervisor.arbiter import run_supervisor
    return run_supervisor(config)


# -- status -------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}MiB" if n else "-"


def format_status(status: dict[str, Any]) -> str:
    sup = status["supervisor"]
    head = (f"supervisor pid {sup['pid']}, scope {sup['scope']}, {sup['ini']}, up "
            f"{_duration(time.time() - sup['started_at'])}")
    if sup.get("web_monitor"):
        head += f", web monitor {sup['web_monitor']}"
    rows = [("NAME", "STATUS", "WORKERS", "MIN-MAX", "RESTARTS", "CALLS/S", "ERRORS", "RSS", "CPU%",
             "UPTIME", "TCP")]
    notes = []
    for s in status["services"]:
        ready = sum(1 for w in s["workers"] if w["state"] in ("idle", "busy"))
        rows.append((s["name"], s["status"], f"{ready}/{s.get('target', s['current'])}",
                     f"{s['min_proc_num']}-{s['max_proc_num']}", str(s["restarts"]),
                     f"{s['calls_per_s']:.1f}", str(s["errors"]), _mib(s["rss"]),
                     f"{s['cpu_percent']:.1f}", _duration(s["uptime_s"]) if s["uptime_s"] else "-",
                     s["tcp_address"] or "-"))
        if s.get("note"):
            notes.append(f"  {s['name']}: {s['note']}")
        if s.get("last_error") and s["status"] in ("failed", "starting", "running"):
            notes.append(f"  {s['name']}: last error: {s['last_error']}")
            if s.get("last_traceback") and s["status"] != "running":
                notes.extend("    " + line for line in s["last_traceback"].splitlines())
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines + notes)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        targets = _targets(args)
    except CliError as exc:
        if args.json:
            print(json.dumps({"running": False, "message": str(exc)}))
        else:
            print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    results, code = [], EXIT_OK
    for state in targets:
        try:
            client = _connect(state)
            try:
                status = _call(client, "status")
            finally:
                client.close()
        except CliError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            code = max(code, EXIT_UNREACHABLE)
            continue
        if args.name:
            matches = [s for s in status["services"] if args.name in (s["name"], s.get("section"))]
            if not matches:
                print(f"{PROG}: no service named {args.name!r} (services: "
                      f"{', '.join(s['name'] for s in status['services'])})", file=sys.stderr)
                return EXIT_UNREACHABLE
            status["services"] = matches
            if matches[0]["status"] != "running":
                code = max(code, EXIT_NOT_RUNNING)
        results.append(status)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2, default=str))
    else:
        print("\n\n".join(format_status(s) for s in results))
    return code


# -- start, stop, restart, scale, reload --------------------------------------------------------
def _wait_for(client: Any, name: str, wanted: tuple[str, ...], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = _call(client, "status")
        svc = next((s for s in status["services"] if name in (s["name"], s.get("section"))), None)
        if svc is None or svc["status"] in wanted or time.monotonic() > deadline:
            return svc or {}
        time.sleep(0.1)


def cmd_action(args: argparse.Namespace) -> int:
    state = _one_target(args)
    client = _connect(state)
    code = EXIT_OK
    try:
        for name in args.names:
            result = _call(client, args.command, name)
            print(f"{result['message']}")
            if not result["ok"] and args.command != "start":
                code = EXIT_FAILED
                continue
            if args.no_wait:
                continue
            if args.command == "stop":
                svc = _wait_for(client, name, ("stopped", "failed"), args.timeout)
            else:
                svc = _wait_for(client, name, ("running", "failed", "stopped"), args.timeout)
                if args.command == "restart":
                    svc = _wait_restarted(client, name, args.timeout)
            print(f"{name}: {svc.get('status', 'unknown')}")
            expected = "stopped" if args.command == "stop" else "running"
            if svc.get("status") != expected:
                if svc.get("last_error"):
                    print(f"{name}: last error: {svc['last_error']}", file=sys.stderr)
                code = EXIT_FAILED
    finally:
        client.close()
    return code


def _wait_restarted(client: Any, name: str, timeout: float) -> dict[str, Any]:
    """A rolling restart is done when no worker is retiring or stopping."""
    deadline = time.monotonic() + timeout
    while True:
        status = _call(client, "status")
        svc: dict[str, Any] = next((s for s in status["services"] if name in (s["name"], s.get("section"))), {})
        busy = [w for w in svc.get("workers", []) if w["state"] in ("retiring", "stopping", "starting")]
        if not busy or svc.get("status") != "running" or time.monotonic() > deadline:
            return svc
        time.sleep(0.1)


def cmd_generic(args: argparse.Namespace) -> int:
    """Any registered command without a presentation of its own: call it, print its answer."""
    from .supervisor.commands import COMMANDS
    cmd = COMMANDS[args.command]
    values = {p.name: getattr(args, p.name) for p in cmd.params}
    client = _connect(_one_target(args))
    try:
        result = _call(client, cmd.name, **values)
    finally:
        client.close()
    if isinstance(result, dict) and set(result) == {"ok", "message"}:
        print(result["message"])
        return EXIT_OK if result["ok"] else EXIT_FAILED
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


# -- logs ---------------------------------------------------------------------------------------
def format_entry(e: dict[str, Any]) -> str:
    ts = datetime.datetime.fromtimestamp(e["ts"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    who = f"w{e['worker_id']} pid {e['pid']}" if e.get("worker_id") is not None else f"pid {e['pid']}"
    return f"{ts} {e['level']:<8} [{who} {e['stream']}] {e['message']}"


def _show_entries(entries: list[Any], as_json: bool) -> None:
    for e in entries:
        print(json.dumps(e) if as_json else format_entry(e), flush=True)


def cmd_logs(args: argparse.Namespace) -> int:
    try:
        state = _one_target(args)
    except CliError as exc:
        if exc.code != EXIT_NOT_RUNNING or not args.config:
            raise
        return _logs_from_files(args)  # a stopped deployment: its files tell the same
    client = _connect(state)
    try:
        result = _call(client, "logs", args.name, lines=args.lines, text=args.grep,
                       level=args.level, after=None)
        _show_entries(result["entries"], args.json)
        cursor = result["cursor"]
        while args.follow:
            time.sleep(args.interval)
            result = _call(client, "logs", args.name, lines=1000, text=args.grep,
                           level=args.level, after=cursor)
            _show_entries(result["entries"], args.json)
            cursor = result["cursor"]
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    return EXIT_OK


def _newest_log(log_dir: str, name: str) -> float:
    try:
        return os.stat(os.path.join(log_dir, f"{name}.log")).st_mtime
    except OSError:
        return 0.0


def _logs_from_files(args: argparse.Namespace) -> int:
    """`speedysvc logs -c FILE NAME` when no supervisor of FILE runs: read its log files."""
    from .monitoring.log_store import LogReader
    from .supervisor.config import ConfigError, load_config
    from .supervisor.arbiter import SUPERVISOR_LOG
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise CliError(f"{args.config}:\n{exc}", EXIT_CONFIG) from None
    places = {SUPERVISOR_LOG: (cfg.supervisor.log_dir, SUPERVISOR_LOG)}
    for svc in cfg.services:
        try:
            name = svc.service_class().service_name()
        except Exception:  # noqa: BLE001 - an unimportable class still has its section's logs
            name = svc.name
        places[name] = places[svc.name] = (svc.log_dir, name)
    if args.name not in places:
        raise CliError(f"{args.config} has no service named {args.name!r} (services: "
                       f"{', '.join(sorted(places))})", EXIT_USAGE)
    log_dir, name = places[args.name]
    # a deployment that shared its log_dir with another running one wrote to <log_dir>/<scope>
    own = os.path.join(log_dir, cfg.supervisor.scope)
    if _newest_log(own, name) > _newest_log(log_dir, name):
        log_dir = own
    entries, cursor = LogReader(log_dir, name).query(lines=args.lines, text=args.grep, level=args.level)
    if not entries and not args.json:
        print(f"{PROG}: no log entries of {name!r} in {log_dir}", file=sys.stderr)
    _show_entries(entries, args.json)
    try:
        while args.follow:  # a supervisor started meanwhile keeps writing the same files
            time.sleep(args.interval)
            more, cursor = LogReader(log_dir, name).query(lines=1000, text=args.grep,
                                                          level=args.level, after=cursor)
            _show_entries(more, args.json)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# -- argument parsing ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .supervisor.commands import COMMANDS, REQUIRED
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from .shm.native import path_name
    parser.add_argument("--version", action="version", version=f"speedysvc {__version__}; {path_name()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    target = argparse.ArgumentParser(add_help=False)
    group = target.add_mutually_exclusive_group()
    group.add_argument("-c", "--config", metavar="FILE.ini", help="the supervisor started with this file")
    group.add_argument("--scope", help="the supervisor of this scope")

    run = sub.add_parser("run", help="start the supervisor for FILE.ini (in the foreground)")
    run.add_argument("ini", metavar="FILE.ini")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--check-config", action="store_true",
                      help="validate the file, print every problem, start nothing (exit 78 if invalid)")
    mode.add_argument("--print-config", action="store_true",
                      help="print the resolved configuration (secrets masked) and exit")
    run.add_argument("--engine", choices=("local", "ray"),
                     help="engine of services whose .ini does not choose one ([supervisor] engine)")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", parents=[target], help="services and workers (exit 0/3/4 as LSB)")
    status.add_argument("name", nargs="?", help="only this service; exit 3 unless it is running")
    status.add_argument("--json", action="store_true", help="the control API's status() as JSON")
    status.set_defaults(func=cmd_status)

    for command, text in (("start", "start stopped or failed services"),
                          ("stop", "stop services gracefully"),
                          ("restart", "rolling restart: new workers first, then the old ones stop")):
        p = sub.add_parser(command, parents=[target], help=text)
        p.add_argument("names", nargs="+", metavar="NAME")
        p.add_argument("--no-wait", action="store_true", help="return once the supervisor has the request")
        p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
        p.set_defaults(func=cmd_action)

    logs = sub.add_parser("logs", parents=[target], help="captured output and log records of a service")
    logs.add_argument("name")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many recent entries (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    logs.add_argument("--grep", metavar="TEXT", help="only entries containing TEXT (any case)")
    logs.add_argument("--level", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                      help="only entries at this level or above")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    logs.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    logs.set_defaults(func=cmd_logs)

    # every other verb of the command registry, presented as its answer
    for cmd in COMMANDS.values():
        if cmd.name in sub.choices:
            continue
        p = sub.add_parser(cmd.name.replace("_", "-"), parents=[target], help=cmd.help)
        for param in cmd.params:
            if param.default is REQUIRED:
                p.add_argument(param.name, type=param.convert, help=param.help or None)
            else:
                p.add_argument(f"--{param.name.replace('_', '-')}", dest=param.name, type=param.convert,
                               default=param.default, help=param.help or None)
        p.set_defaults(func=cmd_generic, command=cmd.name)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in _subcommands() and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "run")  # python -m speedysvc FILE.ini [--check-config]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `speedysvc logs x | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
