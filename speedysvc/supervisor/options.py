"""The one registry of .ini options (as gunicorn's `Setting`s): name, converter, default, bounds
and one line of help. Parsing, validation, --check-config, --print-config and the README table
are all driven from `OPTIONS`.

`python -m speedysvc.supervisor.options` prints the README table.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from . import converters as c

SERVICE = "service"          # allowed in [defaults] and in each service section
WEB_MONITOR = "web monitor"
SUPERVISOR = "supervisor"
SECTIONS = (SERVICE, WEB_MONITOR, SUPERVISOR)

SECRET_MASK = "********"


@dataclass(frozen=True)
class Option:
    name: str
    section: str
    converter: Callable[[str], Any]
    # ini text run through the converter, a callable computing the value, or None (unset)
    default: str | Callable[[], Any] | None
    help: str
    minimum: Any = None
    maximum: Any = None
    secret: bool = False
    in_defaults: bool = True      # False: only in a service section ([defaults] makes no sense)
    required: bool = False
    is_path: bool = False         # relative paths are taken relative to the .ini file
    default_help: str | None = None  # how the README shows a computed default
    live: bool = False            # a reload applies it to running workers without restarting them

    @property
    def expected(self) -> str:
        text: str = self.converter.expected  # type: ignore[attr-defined]  # converters carry .expected
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            return f"{text}, between {self.format(lo)} and {self.format(hi)}"
        if lo is not None:
            return f"{text}, at least {self.format(lo)}"
        if hi is not None:
            return f"{text}, at most {self.format(hi)}"
        return text

    def convert(self, raw: str) -> Any:
        """Convert and bounds-check `raw`; a ConversionError names this option's expectation."""
        try:
            value = self.converter(raw)
        except c.ConversionError:
            raise c.ConversionError(self.expected, raw) from None
        if value is not None and (
            (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            raise c.ConversionError(self.expected, raw)
        return value

    def default_value(self) -> Any:
        if callable(self.default):
            return self.default()
        return None if self.default is None else self.convert(self.default)

    def format(self, value: Any, mask_secrets: bool = False) -> str:
        if value is None:
            return ""
        if self.secret and mask_secrets and value:
            return SECRET_MASK
        text: str = self.converter.format(value)  # type: ignore[attr-defined]  # converters carry .format
        return text


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _default_log_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "speedysvc_logs")


def _default_runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return os.path.join(base, "speedysvc")
    return os.path.join(tempfile.gettempdir(), f"speedysvc-{os.getuid()}")


def _default_engine() -> str:
    # `speedysvc run --engine ray FILE.ini` sets this for files that do not choose an engine
    return os.environ.get("SPEEDYSVC_ENGINE") or "local"


def _service(name: str, converter: Callable[..., Any], default: Any, help: str, **kw: Any) -> Option:
    return Option(name, SERVICE, converter, default, help, **kw)


OPTIONS: tuple[Option, ...] = (
    # --- what to run, and where it listens
    _service("import_from", c.python_module, None,
             "Module defining the ServerMethodsBase class the section is named after",
             in_defaults=False, required=True),
    _service("enabled", c.boolean, "true", "Start the service with the supervisor"),
    _service("port", c.bind_port, None, "TCP port, overriding the class's `port`",
             in_defaults=False, default_help="the class's port"),
    _service("tcp_bind", c.tcp_bind, "none",
             "Address to serve TCP on (host or host:port); none = shared memory only",
             default_help="none"),
    _service("tcp_secret", c.secret, "",
             "Shared secret for the TCP handshake; empty = no handshake", secret=True),
    _service("tcp_max_frame_bytes", c.byte_size, "64MiB", "Largest TCP frame accepted",
             minimum=1024),
    _service("tcp_compression", c.one_of("none", "zlib", "lz4", "zstd"), "none",
             "Compression of TCP frames (lz4 and zstd need their packages installed)"),
    _service("tcp_header_timeout", c.duration, "10s",
             "Time a TCP peer has for the handshake, for each frame header, and for its first "
             "frame; a body must progress at least this often", minimum=0.1),
    _service("tcp_idle_timeout", c.duration, "5m",
             "A TCP connection with no call for this long is closed", minimum=1.0),
    _service("tcp_max_connections", c.positive_int, "1024",
             "Most TCP connections; at the limit the idlest connection makes room"),
    _service("tcp_max_connections_per_address", c.positive_int, "256",
             "Most TCP connections from one client address"),
    _service("tcp_auth_failure_backoff", c.duration, "1s",
             "An address whose handshake failed is refused this long, doubled per failure "
             "(up to 64x); 0 = never"),
    _service("tcp_tls_cert", c.path, None,
             "Certificate (PEM) to serve TCP over TLS (clients use tcps://); empty = plain TCP",
             is_path=True),
    _service("tcp_tls_key", c.path, None,
             "Private key (PEM) of tcp_tls_cert, when not in the same file", is_path=True),
    _service("tcp_tls_client_ca", c.path, None,
             "CA certificates (PEM) that clients must present a certificate from (mutual TLS)",
             is_path=True),
    _service("force_insecure_serialisation", c.boolean, "false",
             "Allow pickle and marshal methods to be called over TCP"),
    _service("wait_until_completed", c.boolean, "true",
             "Wait until this service is ready before starting the next one", live=True),
    # --- pool size and scaling
    _service("min_proc_num", c.positive_int, "1", "Fewest worker processes", live=True),
    _service("max_proc_num", c.positive_int, _cpu_count, "Most worker processes",
             default_help="CPU count", live=True),
    _service("scale_interval", c.duration, "2s", "How often load is measured for scaling",
             minimum=0.05, live=True),
    _service("scale_up_busy", c.fraction, "0.75",
             "Busy fraction of the workers above which workers are added", live=True),
    _service("scale_down_busy", c.fraction, "0.25",
             "Busy fraction of the workers below which a worker is removed", live=True),
    _service("scale_up_queue", c.non_negative_float, "1",
             "Queued calls per worker above which workers are added; 0 = ignore the queue", live=True),
    _service("scale_up_intervals", c.positive_int, "2",
             "Consecutive busy measurements needed before adding workers", live=True),
    _service("scale_down_intervals", c.positive_int, "5",
             "Consecutive idle measurements needed before removing a worker", live=True),
    _service("scale_up_cooldown", c.duration, "5s", "Least time between two scale-ups", live=True),
    _service("scale_down_cooldown", c.duration, "60s",
             "Least time after any scaling before a scale-down", live=True),
    _service("scale_step_max", c.positive_int, "2", "Most workers added in one scale-up", live=True),
    _service("scale_up_max_cpu", c.fraction, "0.95",
             "Machine CPU fraction above which no workers are added (1 = no limit)", live=True),
    # --- keeping workers healthy
    _service("max_proc_mem_bytes", c.byte_size, "0",
             "Memory (RSS) above which a worker is replaced gracefully; 0 = unlimited", live=True),
    _service("restart_backoff_initial", c.duration, "1s",
             "Delay before restarting a crashed worker, doubled per crash", minimum=0.01, live=True),
    _service("restart_backoff_max", c.duration, "60s", "Longest restart delay", live=True),
    _service("crash_loop_restarts", c.positive_int, "5",
             "Crashes within crash_loop_window that mark the service failed", live=True),
    _service("crash_loop_window", c.duration, "60s", "Window for crash_loop_restarts",
             minimum=1.0, live=True),
    _service("crash_loop_backoff", c.duration, "5m",
             "Time a service failed by a crash loop waits before it is started again; 0 = never", live=True),
    _service("worker_hang_timeout", c.duration, "30s",
             "Missed-heartbeat time after which a worker is killed; 0 = never", live=True),
    _service("start_timeout", c.duration, "30s", "Time a worker has to become ready",
             minimum=0.1, live=True),
    _service("graceful_timeout", c.duration, "10s",
             "Time a stopping worker has to finish its calls before it is killed", live=True),
    # --- logs and metrics
    _service("log_dir", c.path, _default_log_dir,
             "Directory of the service's log files", is_path=True,
             default_help="<tmp>/speedysvc_logs/<scope>", live=True),
    _service("log_level", c.log_level, "INFO", "Lowest level of log records kept", live=True),
    _service("log_max_bytes", c.byte_size, "10MiB",
             "Size at which a log file is rotated; 0 = never", live=True),
    _service("log_backups", c.non_negative_int, "5", "Rotated log files kept", maximum=1000, live=True),
    _service("metrics_interval", c.duration, "5s", "How often memory, CPU and calls are sampled",
             minimum=0.1, live=True),
    _service("metrics_retention", c.duration, "24h", "How long metric samples are kept",
             minimum=60.0, live=True),
    # --- Ray Serve (engine = ray)
    _service("engine", c.one_of("local", "ray"), None,
             "Where the service runs: local worker processes, or Ray Serve replicas (ray)",
             default_help="engine of [supervisor]"),
    _service("max_ongoing_requests", c.positive_int, "1",
             "Calls one Ray replica runs at once (1: one call per worker, as local workers do)"),
    _service("ray_num_cpus", c.non_negative_float, "0.25",
             "CPUs each Ray replica reserves in the cluster (fractions allowed)"),

    Option("enabled", WEB_MONITOR, c.boolean, "true", "Serve the web monitor"),
    Option("host", WEB_MONITOR, c.host, "127.0.0.1",
           "Address of the web monitor; other than loopback requires password_hash"),
    Option("port", WEB_MONITOR, c.bind_port, "5155", "Port of the web monitor"),
    Option("password_hash", WEB_MONITOR, c.secret, "",
           "Password hash for the web monitor login; empty = no login (loopback only)",
           secret=True),

    Option("scope", SUPERVISOR, c.scope, None,
           "Name scoping shared memory, so supervisors can run side by side",
           default_help="derived from the .ini path"),
    Option("runtime_dir", SUPERVISOR, c.path, _default_runtime_dir,
           "Directory of the supervisor's state file", is_path=True,
           default_help="$XDG_RUNTIME_DIR/speedysvc"),
    Option("log_dir", SUPERVISOR, c.path, None,
           "Directory of the supervisor's own log and the metrics database", is_path=True,
           default_help="log_dir of [defaults]"),
    Option("log_level", SUPERVISOR, c.log_level, "INFO", "Lowest level of the supervisor's log"),
    Option("python_path", SUPERVISOR, c.path_list, "",
           "Directories prepended to sys.path to import services", is_path=True),
    Option("control_port", SUPERVISOR, c.bind_port, "0",
           "Loopback TCP port of the control API; 0 = any free port"),
    Option("client_sweep_interval", SUPERVISOR, c.duration, "30s",
           "How often shared memory left by clients that died is removed", minimum=0.1),
    Option("engine", SUPERVISOR, c.one_of("local", "ray"), _default_engine,
           "Default engine of the services: local worker processes, or Ray Serve (ray)",
           default_help="local (--engine sets it)"),
    Option("ray_address", SUPERVISOR, c.ray_address, "local",
           "Ray cluster of engine = ray services: local (start one, dies with the supervisor), "
           "auto (the running cluster / RAY_ADDRESS), ray://host:10001 or a GCS host:port"),
    Option("ray_local_cpus", SUPERVISOR, c.non_negative_float, "0",
           "CPUs of a local Ray instance (ray_address = local); 0 = the machine's CPU count"),
    Option("ray_dashboard", SUPERVISOR, c.boolean, "false",
           "Run the Ray dashboard in a local Ray instance (linked from status and the monitor)"),
)


def options_for(section: str) -> dict[str, Option]:
    """Options of one scope (SERVICE, WEB_MONITOR or SUPERVISOR), by name, in registry order."""
    if section not in SECTIONS:
        raise KeyError(f"no option section {section!r}; expected one of {SECTIONS}")
    return {o.name: o for o in OPTIONS if o.section == section}


def markdown_table() -> str:
    """The options as a Markdown table, for the README."""
    where = {SERVICE: "[defaults], service", WEB_MONITOR: "[web monitor]",
             SUPERVISOR: "[supervisor]"}
    rows = ["| Option | Section | Default | Meaning |", "| --- | --- | --- | --- |"]
    for o in OPTIONS:
        section = where[o.section] if o.in_defaults else "service"
        if o.default_help is not None:
            default = o.default_help
        elif o.required:
            default = "(required)"
        else:
            default = o.format(o.default_value()) or "(empty)"
        help = o.help + (" (kept secret)" if o.secret else "") + (
            " (a reload applies it without restarting workers)" if o.live else "")
        cells = [f"`{o.name}`", section, f"`{default}`", help]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
