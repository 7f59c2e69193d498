"""Reading the supervisor's .ini file into a validated `Config`.

Every problem in the file is collected and raised together as one `ConfigError`, each naming
file, section, key, what was expected and what was found, before any process starts.
"""
from __future__ import annotations

import ast
import configparser
import difflib
import hashlib
import importlib
import importlib.util
import ipaddress
import os
import sys
import traceback
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Iterable, Optional

from . import converters as c
from .options import OPTIONS, SERVICE, SUPERVISOR, WEB_MONITOR, Option, options_for

if TYPE_CHECKING:  # the supervisor imports service modules only when it must
    from ..methods import ServerMethodsBase

DEFAULTS_SECTION = "defaults"
_SPECIAL = {DEFAULTS_SECTION: DEFAULTS_SECTION, WEB_MONITOR: WEB_MONITOR, SUPERVISOR: SUPERVISOR}
_OPTIONAL_MODULES = {"lz4": "lz4", "zstd": "zstandard"}


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    section: str | None
    key: str | None
    expected: str
    found: str | None          # the value as written; None when nothing was written
    note: str | None = None    # did-you-mean hints, import errors, line numbers

    def __str__(self) -> str:
        where = self.file + ":"
        if self.section is not None:
            where += f" [{self.section}]"
        if self.key is not None:
            where += f" {self.key}"
        if self.section is not None or self.key is not None:
            where += ":"
        found = "nothing" if self.found is None else repr(self.found)
        note = f" ({self.note})" if self.note else ""
        return f"{where} expected {self.expected}, found {found}{note}"


class ConfigError(Exception):
    """The configuration is invalid; `.errors` lists every problem, str() has one per line."""

    def __init__(self, errors: Iterable[ConfigProblem]):
        self.errors = list(dict.fromkeys(errors))  # a [defaults] problem is reported once
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class ServiceConfig:
    """Resolved values of one service section (every SERVICE option of the registry,
    speedysvc.supervisor.options; test_config checks the two agree)."""
    name: str
    import_from: str
    enabled: bool
    port: Optional[int]
    tcp_bind: Optional[c.BindAddress]
    tcp_secret: c.Secret
    tcp_max_frame_bytes: int
    tcp_compression: str
    tcp_header_timeout: float
    tcp_idle_timeout: float
    tcp_max_connections: int
    tcp_max_connections_per_address: int
    tcp_auth_failure_backoff: float
    tcp_tls_cert: Optional[str]
    tcp_tls_key: Optional[str]
    tcp_tls_client_ca: Optional[str]
    force_insecure_serialisation: bool
    wait_until_completed: bool
    min_proc_num: int
    max_proc_num: int
    scale_interval: float
    scale_up_busy: float
    scale_down_busy: float
    scale_up_queue: float
    scale_up_intervals: int
    scale_down_intervals: int
    scale_up_cooldown: float
    scale_down_cooldown: float
    scale_step_max: int
    scale_up_max_cpu: float
    max_proc_mem_bytes: int
    restart_backoff_initial: float
    restart_backoff_max: float
    crash_loop_restarts: int
    crash_loop_window: float
    crash_loop_backoff: float
    worker_hang_timeout: float
    start_timeout: float
    graceful_timeout: float
    log_dir: str
    log_level: str
    log_max_bytes: int
    log_backups: int
    metrics_interval: float
    metrics_retention: float
    engine: Optional[str]            # local | ray; None in the file means [supervisor]'s engine
    max_ongoing_requests: int
    ray_num_cpus: float

    @classmethod
    def for_class(cls, service_cls: type, **overrides: Any) -> "ServiceConfig":
        """The configuration of a service run without an .ini file (serve()): the registry's
        defaults, `service_cls` as the section, then `overrides` (option names)."""
        values = {name: option.default_value() for name, option in options_for(SERVICE).items()}
        unknown = sorted(set(overrides) - values.keys())
        if unknown:
            raise TypeError(f"unknown service options {', '.join(unknown)}; see "
                            "python -m speedysvc.supervisor.options")
        values.update(import_from=service_cls.__module__, engine="local")
        values.update(overrides)
        return cls(name=service_cls.__qualname__, **values)

    def service_class(self) -> type[ServerMethodsBase]:
        """Import and return the service class (the section's name from `import_from`)."""
        cls: type[ServerMethodsBase] = getattr(importlib.import_module(self.import_from), self.name)
        return cls

    @property
    def tcp_address(self) -> str | None:
        """tcp://host:port when TCP is enabled; the port is None until the class is imported."""
        if self.tcp_bind is None:
            return None
        return f"tcp://{c.BindAddress(self.tcp_bind.host, self.port)}"


@dataclass(frozen=True)
class WebMonitorConfig:
    """Resolved values of [web monitor]."""
    enabled: bool
    host: str
    port: int
    password_hash: c.Secret


@dataclass(frozen=True)
class SupervisorConfig:
    """Resolved values of [supervisor]."""
    scope: str
    runtime_dir: str
    log_dir: str
    log_level: str
    python_path: tuple[str, ...]
    control_port: int
    client_sweep_interval: float
    engine: str
    ray_address: str
    ray_local_cpus: float
    ray_dashboard: bool


@dataclass(frozen=True)
class Config:
    path: str                        # absolute path of the .ini file
    services: list[ServiceConfig]    # in file order
    web_monitor: WebMonitorConfig
    supervisor: SupervisorConfig
    warnings: list[ConfigProblem] = field(default_factory=list)  # worth logging, not fatal

    def service(self, name: str) -> ServiceConfig:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(f"no service [{name}] in {self.path}")

    def to_ini_text(self, mask_secrets: bool = True) -> str:
        """The resolved configuration as .ini text (for --print-config); secrets masked."""
        out = [f"# speedysvc configuration resolved from {self.path}"]
        blocks = [(SUPERVISOR, SUPERVISOR, self.supervisor),
                  (WEB_MONITOR, WEB_MONITOR, self.web_monitor)]
        blocks += [(s.name, SERVICE, s) for s in self.services]
        for title, section, values in blocks:
            out.append(f"\n[{title}]")
            for name, option in options_for(section).items():
                value = getattr(values, name)
                if value is None:
                    out.append(f"# {name} is unset")
                else:
                    out.append(f"{name} = {option.format(value, mask_secrets)}".rstrip())
        return "\n".join(out) + "\n"


@dataclass(frozen=True)
class ConfigDiff:
    """What a reload changes; service names in file order."""
    added: list[str]
    removed: list[str]
    changed: list[str]
    changed_options: dict[str, list[str]]  # service name -> names of options that differ
    web_monitor_changed: bool
    supervisor_changed: bool

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed
                    or self.web_monitor_changed or self.supervisor_changed)


def config_diff(old: Config, new: Config) -> ConfigDiff:
    old_by_name = {s.name: s for s in old.services}
    new_by_name = {s.name: s for s in new.services}
    changed_options = {}
    for name, svc in new_by_name.items():
        before = old_by_name.get(name)
        if before is not None and before != svc:
            changed_options[name] = [f.name for f in fields(svc)
                                     if getattr(before, f.name) != getattr(svc, f.name)]
    return ConfigDiff(
        added=[n for n in new_by_name if n not in old_by_name],
        removed=[n for n in old_by_name if n not in new_by_name],
        changed=list(changed_options),
        changed_options=changed_options,
        web_monitor_changed=old.web_monitor != new.web_monitor,
        supervisor_changed=old.supervisor != new.supervisor,
    )


def load_config(path: str | os.PathLike[str], *, check_imports: bool = True) -> Config:
    """Read and validate `path`. Raises ConfigError listing every problem.

    With check_imports, each service class is imported (so its `port` is known) after the
    [supervisor] python_path directories have been put at the front of sys.path.
    """
    return _Loader(os.fspath(path), check_imports).load()


def default_scope(ini_path: str) -> str:
    """A scope derived from the .ini file's absolute path, stable across restarts."""
    return hashlib.sha256(os.path.abspath(ini_path).encode()).hexdigest()[:10]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Loader:
    def __init__(self, path: str, check_imports: bool):
        self.file = path
        self.abspath = os.path.abspath(path)
        self.ini_dir = os.path.dirname(self.abspath)
        self.check_imports = check_imports
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []

    def problem(self, section: str | None, key: str | None, expected: str, found: str | None,
                note: str | None = None, warning: bool = False) -> None:
        p = ConfigProblem(self.file, section, key, expected, found, note)
        (self.warnings if warning else self.problems).append(p)

    def load(self) -> Config:
        parser = self._parse()
        special, services = self._classify(parser)

        def raw(kind: str) -> tuple[str, dict[str, str]]:
            name = special.get(kind, kind)
            return name, dict(parser[name]) if name in parser else {}

        sup_name, sup_raw = raw(SUPERVISOR)
        sup_values, _ = self._convert(sup_name, sup_raw, options_for(SUPERVISOR))
        web_name, web_raw = raw(WEB_MONITOR)
        web_values, web_failed = self._convert(web_name, web_raw, options_for(WEB_MONITOR))
        def_name, def_raw = raw(DEFAULTS_SECTION)
        defaults, def_failed = self._convert(def_name, def_raw, options_for(SERVICE), defaults=True)

        sup_values.setdefault("scope", default_scope(self.abspath))
        self._scope = sup_values["scope"]
        if "log_dir" not in sup_values:
            sup_values["log_dir"] = (defaults.get("log_dir")
                                     or self._default(options_for(SERVICE)["log_dir"]))
        supervisor = self._build(SupervisorConfig, SUPERVISOR, sup_values)
        web_monitor = self._build(WebMonitorConfig, WEB_MONITOR, web_values)
        if not web_failed & {"enabled", "host", "password_hash"}:
            self._check_web_monitor(web_name, web_monitor)

        self._engine = supervisor.engine
        if self.check_imports:
            for d in reversed(supervisor.python_path):
                if d not in sys.path:
                    sys.path.insert(0, d)
        if not services:
            self.problem(None, None, "at least one service section ([ClassName] with import_from)",
                         None)
        configs, classes = [], {}
        for name in services:
            svc, cls = self._service(name, dict(parser[name]), def_name, defaults, def_failed)
            if svc is not None:
                configs.append(svc)
                classes[name] = cls
        self._check_unique(configs, classes, web_monitor, supervisor)
        if self.problems:
            raise ConfigError(self.problems)
        return Config(self.abspath, configs, web_monitor, supervisor, list(dict.fromkeys(self.warnings)))

    def _parse(self) -> configparser.ConfigParser:
        # No interpolation: '%' in a secret or path must stay as written. No DEFAULT magic either:
        # [defaults] is ours, and configparser's [DEFAULT] would leak into [web monitor].
        parser = configparser.ConfigParser(interpolation=None, default_section="\0",
                                           inline_comment_prefixes=("#", ";"))
        try:
            with open(self.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            detail = e.strerror if isinstance(e, OSError) else str(e)
            raise ConfigError([ConfigProblem(self.file, None, None, "a readable UTF-8 .ini file",
                                             None, detail)]) from None
        try:
            parser.read_string(text, source=self.file)
        except configparser.MissingSectionHeaderError as e:
            self.problem(None, None, "a [section] header before the first key", e.line.strip(),
                         f"line {e.lineno}")
        except configparser.ParsingError as e:
            for lineno, line in e.errors:
                self.problem(None, None, "'key = value', a [section] header or a comment",
                             _unrepr(line).strip(), f"line {lineno}")
        except configparser.DuplicateSectionError as e:
            self.problem(e.section, None, "each section once", f"[{e.section}]",
                         f"line {e.lineno}: a second time")
        except configparser.DuplicateOptionError as e:
            self.problem(e.section, e.option, "each key once per section", e.option,
                         f"line {e.lineno}: a second time")
        except configparser.Error as e:
            self.problem(None, None, "a valid .ini file", None, str(e))
        if self.problems:
            raise ConfigError(self.problems)
        return parser

    def _classify(self, parser: configparser.ConfigParser) -> tuple[dict[str, str], list[str]]:
        """Special sections (matched case-insensitively) by kind, and service section names."""
        special: dict[str, str] = {}
        services = []
        for name in parser.sections():
            kind = _SPECIAL.get(" ".join(name.lower().split()))
            if kind is None:
                services.append(name)
            elif kind in special:
                self.problem(name, None, f"one [{kind}] section", f"[{name}]",
                             f"[{special[kind]}] came first")
            else:
                special[kind] = name
        return special, services

    def _default(self, option: Option) -> Any:
        value = option.default_value()
        if option.name == "log_dir" and getattr(self, "_scope", None):
            # one directory per deployment: two copies of one .ini never share log files
            value = os.path.join(value, str(self._scope))
        return self._resolve_path(option, value)

    def _resolve_path(self, option: Option, value: Any) -> Any:
        if not option.is_path or value is None:
            return value
        if isinstance(value, tuple):
            return tuple(os.path.normpath(os.path.join(self.ini_dir, v)) for v in value)
        return os.path.normpath(os.path.join(self.ini_dir, value))

    def _convert(self, section: str, raw: dict[str, str], options: dict[str, Option],
                 defaults: bool = False) -> tuple[dict[str, Any], set[str]]:
        """Converted values of the keys present, and the keys that failed."""
        values, failed = {}, set()
        for key, text in raw.items():
            option = options.get(key)
            if option is None or (defaults and not option.in_defaults):
                self._unknown(section, key, options, defaults)
                failed.add(key)
                continue
            try:
                values[key] = self._resolve_path(option, option.convert(text))
            except c.ConversionError as e:
                self.problem(section, key, e.expected, text)
                failed.add(key)
        return values, failed

    def _unknown(self, section: str, key: str, options: dict[str, Option], defaults: bool) -> None:
        option = options.get(key)
        if option is not None:  # a service-only key in [defaults]
            self.problem(section, key, "an option allowed in [defaults]", key,
                         f"set {key} in each service section instead")
            return
        close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
        elsewhere = sorted({f"[{o.section}]" if o.section != SERVICE else "a service section"
                            for o in OPTIONS if o.name == key})
        if close:
            note = f"did you mean {close[0]!r}?"
        elif elsewhere:
            note = f"{key} belongs in " + " or ".join(elsewhere)
        else:
            note = "see python -m speedysvc.supervisor.options for every option"
        self.problem(section, key, f"an option of [{section}]", key, note)

    def _build(self, cls: type, section: str, values: dict[str, Any], **extra: Any) -> Any:
        resolved = {name: values[name] if name in values else self._default(option)
                    for name, option in options_for(section).items()}
        return cls(**extra, **resolved)

    def _service(self, name: str, raw: dict[str, str], def_name: str, defaults: dict[str, Any],
                 def_failed: set[str]) -> tuple[Any, type | None]:
        options = options_for(SERVICE)
        own, failed = self._convert(name, raw, options)
        failed |= def_failed - own.keys()
        if not name.isidentifier():
            self.problem(name, None, "a section named after a ServerMethodsBase class "
                         "(a Python identifier), [defaults], [web monitor] or [supervisor]", name)
            return None, None
        if "import_from" not in raw:
            close = difflib.get_close_matches(name.lower(), list(_SPECIAL), n=1, cutoff=0.7)
            note = f"did you mean [{close[0]}]?" if close else None
            self.problem(name, "import_from", options["import_from"].expected, None, note)
            failed.add("import_from")
        values = {**defaults, **own}
        # A clash between two values neither set in this section is reported once, in [defaults].
        where = {k: name if k in own else def_name if k in defaults else None for k in options}
        self._cross_check(name, def_name, values, where, failed)
        cls = None
        if self.check_imports and "import_from" not in failed:
            cls = self._import_class(name, values["import_from"])
        values["port"] = self._resolve_port(name, values, cls, failed)
        values.setdefault("import_from", "")
        values["engine"] = values.get("engine") or self._engine
        if values["engine"] == "ray":
            self._warn_ignored_on_ray(name, def_name, own, defaults)
        return self._build(ServiceConfig, SERVICE, values, name=name), cls

    def _cross_check(self, name: str, def_name: str, values: dict[str, Any],
                     where: dict[str, str | None], failed: set[str]) -> None:
        """Checks between options; `where` says which section set each key (None: built-in)."""
        def get(key: str) -> Any:
            return values[key] if key in values else options_for(SERVICE)[key].default_value()

        def check(low_key: str, high_key: str, strict: bool) -> None:
            if low_key in failed or high_key in failed:
                return
            low, high = get(low_key), get(high_key)
            if low < high or (not strict and low == high):
                return
            # Blame the key the user wrote closest to this service.
            order = [(where[low_key], name), (where[high_key], name),
                     (where[low_key], def_name), (where[high_key], def_name)]
            blame_low = next((i % 2 == 0 for i, (w, s) in enumerate(order) if w == s), False)
            key, other = (low_key, high_key) if blame_low else (high_key, low_key)
            relation = ("less than" if strict else "at most") if blame_low else \
                ("more than" if strict else "at least")
            option = options_for(SERVICE)[key]
            self.problem(where[key] or name, key,
                         f"{relation} {other} ({option.format(get(other))})",
                         option.format(get(key)))

        check("min_proc_num", "max_proc_num", strict=False)
        check("scale_down_busy", "scale_up_busy", strict=True)
        check("restart_backoff_initial", "restart_backoff_max", strict=False)
        compression = get("tcp_compression")
        module = _OPTIONAL_MODULES.get(compression)
        if module and "tcp_compression" not in failed and importlib.util.find_spec(module) is None:
            self.problem(where["tcp_compression"] or name, "tcp_compression",
                         f"a compression whose package is installed (pip install {module})",
                         compression)
        bind = get("tcp_bind")
        if bind is not None and not is_loopback(bind.host) and not get("tcp_secret"):
            self.problem(name, "tcp_secret", "a secret when tcp_bind is not loopback", None,
                         f"anyone who can reach {bind.host} can call [{name}]", warning=True)

    def _warn_ignored_on_ray(self, name: str, def_name: str, own: dict[str, Any],
                             defaults: dict[str, Any]) -> None:
        from ..ray_engine.options_on_ray import ignored_options  # plain Python, no Ray import
        for key, why in ignored_options(set(own) | set(defaults)):
            section = name if key in own else def_name
            option = options_for(SERVICE)[key]
            value = own[key] if key in own else defaults[key]
            self.problem(section, key, "an option with a meaning on Ray Serve (engine = ray)",
                         option.format(value), f"ignored on Ray: {why}", warning=True)

    def _import_class(self, name: str, module_name: str) -> type | None:
        expected = f"a module defining class {name}"
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as e:  # a broken module may raise anything on import
            self.problem(name, "import_from", expected, module_name,
                         f"{type(e).__name__}: {e}{_where_raised(e)}")
            return None
        cls = getattr(module, name, None)
        if not isinstance(cls, type):
            classes = [k for k, v in vars(module).items() if isinstance(v, type)]
            close = difflib.get_close_matches(name, classes, n=1)
            note = f"module {module_name!r} has no class {name!r}"
            note += f"; did you mean [{close[0]}]?" if close else ""
            self.problem(name, "import_from", expected, module_name, note)
            return None
        base = _server_methods_base()
        if base is not None and not issubclass(cls, base):
            self.problem(name, "import_from", f"{expected} derived from ServerMethodsBase",
                         module_name, f"{module_name}.{name} does not derive from it")
            return None
        return cls

    def _resolve_port(self, name: str, values: dict[str, Any], cls: type | None,
                      failed: set[str]) -> int | None:
        """The TCP port: from tcp_bind, else the port option, else the class's port."""
        bind, port = values.get("tcp_bind"), values.get("port")
        if bind is not None and bind.port is not None:
            if port is not None and port != bind.port and "port" not in failed:
                self.problem(name, "port", f"the port of tcp_bind ({bind.port})", str(port))
            return int(bind.port)
        if port is not None:
            return int(port)
        class_port = getattr(cls, "port", None)
        if cls is not None and bind is not None and not isinstance(class_port, int):
            self.problem(name, "port", f"a port, as {name}.port is not set", None,
                         "set port or tcp_bind = host:port")
        return class_port if isinstance(class_port, int) else None

    def _check_web_monitor(self, section: str, web: Any) -> None:
        if web.enabled and not is_loopback(web.host) and not web.password_hash:
            self.problem(section, "host", "a loopback address unless password_hash is set",
                         web.host, "the web monitor can start and stop services")

    def _check_unique(self, services: list[Any], classes: dict[str, type | None], web: Any,
                      supervisor: Any) -> None:
        used: dict[int, str] = {}
        if web.enabled and web.port:
            used[web.port] = f"[{WEB_MONITOR}] port"
        if supervisor.control_port:
            used.setdefault(supervisor.control_port, f"[{SUPERVISOR}] control_port")
        names: dict[str, str] = {}
        for svc in services:
            if svc.tcp_bind is not None and svc.port:
                if svc.port in used:
                    self.problem(svc.name, "port", f"a port not used by {used[svc.port]}",
                                 str(svc.port))
                else:
                    used[svc.port] = f"[{svc.name}]"
            cls = classes.get(svc.name)
            if cls is not None:
                service_name = getattr(cls, "name", None) or cls.__name__
                if service_name in names:
                    self.problem(svc.name, "import_from",
                                 f"a class whose name is not also that of [{names[service_name]}]",
                                 svc.import_from, f"both are named {service_name!r}")
                names.setdefault(service_name, svc.name)


def _server_methods_base() -> type | None:
    # The RPC core may be mid-rewrite; without it, a class is checked only for existence.
    try:
        from speedysvc.methods import ServerMethodsBase
    except Exception:
        return None
    return ServerMethodsBase


def _unrepr(line: str) -> str:
    # configparser stores repr() of a bad line
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        return line
    return value if isinstance(value, str) else line


def _where_raised(exc: BaseException) -> str:
    """' at FILE, line N' of the user's code that raised during an import (not importlib's)."""
    if isinstance(exc, SyntaxError):  # its message names the file and line already
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename != __file__ and "importlib" not in f.filename
              and not f.filename.startswith("<frozen")]
    if not frames:
        return ""
    return f" at {frames[-1].filename}, line {frames[-1].lineno}"
