"""Loading and validating the AIMM YAML configuration (seed 000 layout).

    name: my-aimm                       # optional here (AIMM's own examples omit it)
    engine: {max_children: 4, sigterm_timeout: 5, check_children_period: 3}
    backend: {module: aimm.server.backend.sqlite, path: data/aimm.db}
    control:
      - module: aimm.server.control.repl
        server: {host: 127.0.0.1, port: 9999}
        users: [{username: user, password: "scrypt$..."}]
    plugins: {names: [my_plugins]}
    log: {version: 1, ...}

All problems are collected and raised together as one ConfigError, each naming the file, the
path of the key, what was expected and what was found. Relative paths (backend.path) are
resolved against the directory of the YAML file, not the working directory, so the same
file works whoever starts the services; `~` and $VARIABLES are expanded.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import logging.config
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from .errors import ConfigError
from .hat.config import (HatComponentConfig, HatConfig, check_event_backend,
                         check_event_control, is_hat_module, parse_hat)
from .passwords import InvalidPasswordHash, check_hash_format

log = logging.getLogger(__name__)

ENV_VAR = "AIMM_CONFIG"
TOP_LEVEL_KEYS = ("name", "engine", "backend", "control", "plugins", "log", "hat")
ENGINE_KEYS = ("max_children", "sigterm_timeout", "check_children_period", "action_history",
               "default_action_timeout")
SQLITE_BACKENDS = ("aimm.server.backend.sqlite", "aimm_services.backends.sqlite")
MEMORY_BACKENDS = ("aimm.server.backend.dummy", "aimm_services.backends.memory")
CONTROL_MODULES = ("aimm.server.control.repl", "aimm_services.repl_control",
                   "aimm_services.control")


@dataclass(frozen=True)
class EngineConfig:
    max_children: int = 2                 # plugin calls run at once (= plugin pool size)
    sigterm_timeout: float = 5.0          # kept for AIMM compatibility; cancel kills at once
    action_history: int = 1000            # finished actions (with results) kept in memory
    default_action_timeout: Optional[float] = None


@dataclass(frozen=True)
class BackendConfig:
    kind: str                             # "sqlite", "memory" or "hat" (runs in the engine)
    module: str
    path: Optional[Path] = None


@dataclass(frozen=True)
class ControlConfig:
    module: str
    host: Optional[str] = None
    port: Optional[int] = None
    users: dict = field(default_factory=dict)   # username -> password hash
    pem_file: Optional[Path] = None               # server.pem_file: serve wss


@dataclass(frozen=True)
class AimmConfig:
    name: str
    source: Path
    engine: EngineConfig
    backend: BackendConfig
    controls: tuple
    plugin_modules: tuple
    log: dict
    hat: Optional[HatConfig] = None
    hat_backend: Optional[HatComponentConfig] = None   # backend.kind == "hat"
    hat_controls: tuple = ()      # event control and custom Hat-aware controls (engine)

    @property
    def users(self) -> dict:
        """Users of every control section together (username -> password hash)."""
        merged: dict = {}
        for control in self.controls:
            merged.update(control.users)
        return merged


class _Problems:
    def __init__(self, source: Path):
        self.source = source
        self.items: list[str] = []

    def add(self, path: str, expected: str, found: Any) -> None:
        self.items.append(f"{self.source}: {path}: expected {expected}, found {_show(found)}")

    def unknown(self, path: str, key: str, known: tuple) -> None:
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        self.items.append(f"{self.source}: {path}{key}: unknown key{suggestion}; known keys: "
                          f"{', '.join(known)}")


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing (the key is missing)"
    text = repr(value)
    return f"{type(value).__name__} {text[:80] + '...' if len(text) > 80 else text}"


_MISSING = object()


def locate_config(explicit: Optional[os.PathLike | str] = None) -> Path:
    """The YAML file to use: `explicit`, else $AIMM_CONFIG."""
    candidate = explicit or os.environ.get(ENV_VAR)
    if not candidate:
        raise ConfigError(f"no AIMM configuration given: set the {ENV_VAR} environment "
                          f"variable (or the service's aimm_config) to the path of the YAML file")
    return Path(candidate).expanduser().resolve()


def load_config(path: Optional[os.PathLike | str] = None) -> AimmConfig:
    """Read and validate the YAML file; raise ConfigError listing every problem."""
    source = locate_config(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the AIMM configuration: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    return parse_config(data, source)


def parse_config(data: Any, source: Path) -> AimmConfig:
    """Validate already-parsed YAML data (`source` is used in messages and for relative paths)."""
    problems = _Problems(source)
    if not isinstance(data, dict):
        problems.add("(top level)", "a mapping with keys name, engine, backend, control, "
                     "plugins, log", data)
        raise ConfigError("\n".join(problems.items))
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.unknown("", str(key), TOP_LEVEL_KEYS)
    for key in ("engine", "backend", "control", "plugins", "log"):
        if key not in data:
            problems.add(key, _EXPECTED[key], _MISSING)

    name = data.get("name", source.stem)
    if not isinstance(name, str) or not name:
        problems.add("name", "a non-empty string", name)
    engine = _engine(data.get("engine", {}), problems)
    problem = problems.add
    # custom Hat-aware modules may sit next to the YAML, as plugins do (the supervisor
    # puts that directory on the workers' path)
    with _importable_from(source.parent):
        hat_backend = _hat_backend(data.get("backend"), problem)
        hat_controls = _hat_controls(data.get("control"), problem)
    backend = (BackendConfig("hat", hat_backend.module) if hat_backend is not None
               else _backend(data.get("backend", {}), problems, source))
    controls = _controls(data.get("control", []), problems, source,
                         skip={c.index for c in hat_controls})
    plugin_modules = _plugins(data["plugins"], problems) if "plugins" in data else []
    log_conf = data.get("log", {})
    if not isinstance(log_conf, dict):
        problems.add("log", "a mapping (logging configuration)", log_conf)
    hat = parse_hat(data["hat"], problem) if "hat" in data else None
    if "hat" not in data:
        for entry in ([hat_backend] if hat_backend else []) + hat_controls:
            where = "backend" if entry.index is None else f"control[{entry.index}]"
            problem(f"{where}.module", f"a module that needs no Hat connection ({entry.module} "
                    f"registers and receives Hat events: add a 'hat' section)", entry.module)
    if problems.items:
        raise ConfigError("invalid AIMM configuration:\n  " + "\n  ".join(problems.items))
    return AimmConfig(name=name, source=source, engine=engine, backend=backend,
                      controls=tuple(controls), plugin_modules=tuple(plugin_modules),
                      log=log_conf if isinstance(log_conf, dict) else {}, hat=hat,
                      hat_backend=hat_backend, hat_controls=tuple(hat_controls))


@contextlib.contextmanager
def _importable_from(directory: Path) -> Iterator[None]:
    added = str(directory) not in sys.path
    if added:
        sys.path.append(str(directory))
    try:
        yield
    finally:
        if added and str(directory) in sys.path:
            sys.path.remove(str(directory))


def _hat_backend(section: Any, problem: Any) -> Optional[HatComponentConfig]:
    """The backend entry when it is Hat-aware (it then runs inside the engine process)."""
    if not isinstance(section, dict) or not isinstance(section.get("module"), str):
        return None
    module = section["module"]
    if module in SQLITE_BACKENDS + MEMORY_BACKENDS or \
            not is_hat_module(module, "backend.module", problem):
        return None
    entry = HatComponentConfig(module, dict(section))
    if entry.builtin:
        check_event_backend(section, problem)
    return entry


def _hat_controls(section: Any, problem: Any) -> list[HatComponentConfig]:
    """The control entries that are Hat-aware (they run inside the engine process)."""
    if isinstance(section, dict):
        section = [section]
    if not isinstance(section, list):
        return []
    found = []
    for i, item in enumerate(section):
        if not isinstance(item, dict):
            continue
        module = item.get("module")
        if module is None and item.get("type") == "event":
            module = "aimm.server.control.event"
        if not isinstance(module, str) or module in CONTROL_MODULES or \
                not is_hat_module(module, f"control[{i}].module", problem):
            continue
        entry = HatComponentConfig(module, dict(item), i)
        if entry.builtin:
            check_event_control(item, f"control[{i}]", problem)
        found.append(entry)
    return found


_EXPECTED = {
    "engine": "a mapping (e.g. {max_children: 4})",
    "backend": f"a mapping with 'module' (one of {', '.join(SQLITE_BACKENDS + MEMORY_BACKENDS)})",
    "control": "a list of mappings with 'module' and 'users'",
    "plugins": "a mapping {names: [plugin module names]}",
    "log": "a mapping (logging configuration)",
}


def _number(section: dict, key: str, path: str, problems: _Problems, *, integer: bool,
            minimum: float, default: Any) -> Any:
    value = section.get(key, default)
    if value is default:
        return value
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        problems.add(f"{path}.{key}", f"{'an integer' if integer else 'a number'} >= {minimum}",
                     value)
        return default
    return value


def _engine(section: Any, problems: _Problems) -> EngineConfig:
    if not isinstance(section, dict):
        problems.add("engine", _EXPECTED["engine"], section)
        return EngineConfig()
    for key in section:
        if key not in ENGINE_KEYS:
            problems.unknown("engine.", str(key), ENGINE_KEYS)
    defaults = EngineConfig()
    _number(section, "check_children_period", "engine", problems, integer=False, minimum=0,
            default=None)   # AIMM polled children; nothing here polls, so it is only checked
    return EngineConfig(
        max_children=int(_number(section, "max_children", "engine", problems, integer=False,
                                 minimum=1, default=defaults.max_children)),
        sigterm_timeout=float(_number(section, "sigterm_timeout", "engine", problems,
                                      integer=False, minimum=0,
                                      default=defaults.sigterm_timeout)),
        action_history=int(_number(section, "action_history", "engine", problems,
                                   integer=True, minimum=1, default=defaults.action_history)),
        default_action_timeout=_number(section, "default_action_timeout", "engine", problems,
                                       integer=False, minimum=0, default=None))


def _backend(section: Any, problems: _Problems, source: Path) -> BackendConfig:
    if not isinstance(section, dict):
        problems.add("backend", _EXPECTED["backend"], section)
        return BackendConfig("memory", MEMORY_BACKENDS[1])
    module = section.get("module", _MISSING)
    if module in SQLITE_BACKENDS:
        path = section.get("path", _MISSING)
        if not isinstance(path, str) or not path:
            problems.add("backend.path", "a file path for the SQLite database", path)
            return BackendConfig("sqlite", module)
        resolved = Path(os.path.expandvars(path)).expanduser()
        if not resolved.is_absolute():
            resolved = source.parent / resolved
        return BackendConfig("sqlite", module, resolved.resolve())
    if module in MEMORY_BACKENDS:
        return BackendConfig("memory", module)
    problems.add("backend.module", f"one of {', '.join(SQLITE_BACKENDS + MEMORY_BACKENDS)}",
                 module)
    return BackendConfig("memory", MEMORY_BACKENDS[1])


def _controls(section: Any, problems: _Problems, source: Path,
              skip: frozenset | set = frozenset()) -> list[ControlConfig]:
    if isinstance(section, dict):   # a single control written without the list
        section = [section]
    if not isinstance(section, list):
        problems.add("control", _EXPECTED["control"], section)
        return []
    controls = []
    for i, item in enumerate(section):
        path = f"control[{i}]"
        if i in skip:
            continue            # a Hat-aware control: checked by _hat_controls
        if not isinstance(item, dict):
            problems.add(path, "a mapping with 'module' and 'users'", item)
            continue
        module = item.get("module", _MISSING)
        if module is _MISSING and item.get("type") == "repl":
            module = CONTROL_MODULES[0]
        if item.get("type", "repl") != "repl":
            problems.add(f"{path}.type", "repl (the only control type supported)",
                         item.get("type"))
            continue
        if module not in CONTROL_MODULES:
            problems.add(f"{path}.module", f"one of {', '.join(CONTROL_MODULES)}, "
                         f"aimm.server.control.event, or a module defining get_subscriptions "
                         f"(a Hat-aware control)", module)
            continue
        host, port, pem_file = None, None, None
        server = item.get("server")
        if server is not None:
            if not isinstance(server, dict):
                problems.add(f"{path}.server", "a mapping {host, port}", server)
            else:
                host = server.get("host")
                port = server.get("port")
                if not isinstance(host, str):
                    problems.add(f"{path}.server.host", "a host name or address", host)
                if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
                    problems.add(f"{path}.server.port", "a port number 0-65535", port)
                pem = server.get("pem_file")
                if pem is not None:
                    if not isinstance(pem, str) or not pem:
                        problems.add(f"{path}.server.pem_file", "the path of a PEM file with "
                                     "the certificate and its key", pem)
                    else:
                        pem_file = Path(os.path.expandvars(pem)).expanduser()
                        if not pem_file.is_absolute():
                            pem_file = source.parent / pem_file
                        if not pem_file.is_file():
                            problems.add(f"{path}.server.pem_file", "an existing PEM file",
                                         str(pem_file))
        controls.append(ControlConfig(module=module, host=host, port=port,
                                      users=_users(item.get("users", _MISSING), path, problems),
                                      pem_file=pem_file))
    return controls


def _users(users: Any, path: str, problems: _Problems) -> dict:
    if not isinstance(users, list):
        problems.add(f"{path}.users", "a list of {username, password} mappings", users)
        return {}
    result = {}
    for j, user in enumerate(users):
        upath = f"{path}.users[{j}]"
        if not isinstance(user, dict):
            problems.add(upath, "a mapping {username, password}", user)
            continue
        username, password = user.get("username", _MISSING), user.get("password", _MISSING)
        if not isinstance(username, str) or not username:
            problems.add(f"{upath}.username", "a non-empty string", username)
            continue
        if not isinstance(password, str):
            problems.add(f"{upath}.password", "a password hash string", password)
            continue
        try:
            check_hash_format(password)
        except InvalidPasswordHash as exc:
            # never echo the value: it may be a plain-text password
            problems.items.append(f"{problems.source}: {upath}.password: {exc}; found a value "
                                  f"in neither format (not shown)")
            continue
        if username in result:
            problems.add(f"{upath}.username", "a username not listed before", username)
        result[username] = password
    return result


def _plugins(section: Any, problems: _Problems) -> list[str]:
    if not isinstance(section, dict) or "names" not in section:
        problems.add("plugins", _EXPECTED["plugins"], section)
        return []
    names = section["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        problems.add("plugins.names", "a list of module names", names)
        return []
    return list(names)


_applied_logs: set = set()


def apply_log_config(config: AimmConfig) -> None:
    """Apply the `log` section as AIMM does: logging.config.dictConfig when it has `version`,
    else logging.basicConfig(**log). Once per process and file. Two differences, so the
    speedysvc worker's own records are not lost: existing loggers stay enabled unless the
    section sets disable_existing_loggers, and basicConfig replaces the worker's default
    handler (force=True) instead of being ignored."""
    if config.source in _applied_logs or not config.log:
        return
    _applied_logs.add(config.source)
    section = dict(config.log)
    root = logging.getLogger()
    try:
        if "version" in section:
            section.setdefault("disable_existing_loggers", False)
            before = list(root.handlers)
            logging.config.dictConfig(section)
            if not root.handlers:       # no root handler configured: keep the captured one
                for handler in before:
                    root.addHandler(handler)
        else:
            logging.basicConfig(**{"force": True, **section})
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise ConfigError(f"{config.source}: log: the logging configuration was refused: "
                          f"{exc}") from exc


# the first releases applied only the level; kept for callers of that name
apply_log_level = apply_log_config
