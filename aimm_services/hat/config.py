"""The `hat` section and the Hat-aware backend/control entries of an AIMM YAML.

    hat:
      monitor_component: {host: 127.0.0.1, port: 23010, group: aimm,
                          event_server_group: event}      # event_server_group optional
    # or, without a monitor server:
    hat:
      eventer_server: {host: 127.0.0.1, port: 23012}

These are AIMM 1.2's shapes (aimm://server/hat.yaml#). A backend or control module is
Hat-aware when it is AIMM's event backend/control or defines `get_subscriptions` (AIMM's
documentation) or `create_subscription` (AIMM 1.2's code); it then gets an event client.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional

EVENT_BACKENDS = ("aimm.server.backend.event", "aimm_services.hat.event_backend")
EVENT_CONTROLS = ("aimm.server.control.event", "aimm_services.hat.event_control")
EVENT_CONTROL_ACTIONS = ("create_instance", "add_instance", "update_instance", "fit",
                         "predict", "cancel")

Problem = Callable[[str, str, Any], None]     # (key path, expected, found)


@dataclass(frozen=True)
class HatConfig:
    """Where the Hat servers are. `group` set: register with the monitor server (active /
    standby by its blessing); `event_server_group` set too: connect to the event server of
    that group. `group` None: connect straight to the eventer server at host:port."""

    host: str
    port: int
    group: Optional[str] = None
    event_server_group: Optional[str] = None

    @property
    def uses_monitor(self) -> bool:
        return self.group is not None

    @property
    def uses_events(self) -> bool:
        return self.event_server_group is not None or not self.uses_monitor

    def describe(self) -> str:
        if not self.uses_monitor:
            return f"event server {self.host}:{self.port}"
        tail = (f", event server group {self.event_server_group!r}"
                if self.event_server_group else "")
        return f"monitor {self.host}:{self.port} group {self.group!r}{tail}"


@dataclass(frozen=True)
class HatComponentConfig:
    """A Hat-aware backend or control entry: its module name, its YAML mapping as written,
    and (custom modules) the imported module."""

    module: str
    conf: dict = field(default_factory=dict)
    index: Optional[int] = None              # control[index]; None for the backend

    @property
    def builtin(self) -> bool:
        return self.module in EVENT_BACKENDS + EVENT_CONTROLS

    def import_module(self) -> ModuleType:
        return importlib.import_module(self.module)


def parse_hat(section: Any, problem: Problem) -> Optional[HatConfig]:
    if not isinstance(section, dict) or len(section) != 1 or not (
            {"monitor_component", "eventer_server"} & set(section)):
        problem("hat", "a mapping with exactly one of monitor_component {host, port, group"
                ", event_server_group} or eventer_server {host, port}", section)
        return None
    key, entry = next(iter(section.items()))
    if not isinstance(entry, dict):
        problem(f"hat.{key}", "a mapping {host, port, ...}", entry)
        return None
    default_port = 23010 if key == "monitor_component" else 23012
    host, port = entry.get("host", "127.0.0.1"), entry.get("port", default_port)
    ok = True
    if not isinstance(host, str) or not host:
        problem(f"hat.{key}.host", "a host name or address", host)
        ok = False
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        problem(f"hat.{key}.port", "a port number 1-65535", port)
        ok = False
    if key == "eventer_server":
        return HatConfig(host, port) if ok else None
    group = entry.get("group")
    if not isinstance(group, str) or not group:
        problem(f"hat.{key}.group", "the monitor group name of this AIMM server (a string)",
                group)
        ok = False
    server_group = entry.get("event_server_group")
    if server_group is not None and (not isinstance(server_group, str) or not server_group):
        problem(f"hat.{key}.event_server_group", "the monitor group of the event servers "
                "(a string)", server_group)
        ok = False
    return HatConfig(host, port, group, server_group) if ok else None


def is_hat_module(module: str, path: str, problem: Problem) -> bool:
    """AIMM's event backend/control, or an importable module declaring subscriptions. A
    module that exists but fails to import is reported (at `path`) with its error."""
    if module in EVENT_BACKENDS + EVENT_CONTROLS:
        return True
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return False        # no such module: the caller reports it as unknown
        problem(path, f"an importable module ({module} fails to import)", str(exc))
        return False
    except Exception as exc:
        problem(path, f"an importable module ({module} fails to import)",
                f"{type(exc).__name__}: {exc}")
        return False
    return subscription_function(imported) is not None


def subscription_function(module: ModuleType) -> Optional[Callable[[dict], list]]:
    """`get_subscriptions(conf)` (AIMM's documentation) or `create_subscription(conf)`
    (AIMM 1.2's code), whichever the module defines."""
    for name in ("get_subscriptions", "create_subscription"):
        function = getattr(module, name, None)
        if callable(function):
            return function
    return None


def check_event_backend(conf: dict, problem: Problem) -> None:
    prefix = conf.get("model_prefix")
    if not _string_list(prefix):
        problem("backend.model_prefix", "a list of strings (the event type prefix of models, "
                "e.g. [aimm, model])", prefix)


def check_event_control(conf: dict, path: str, problem: Problem) -> None:
    prefixes = conf.get("event_prefixes")
    if not isinstance(prefixes, dict):
        problem(f"{path}.event_prefixes", f"a mapping of {', '.join(EVENT_CONTROL_ACTIONS)} "
                "to event type prefixes (lists of strings)", prefixes)
    else:
        for action, prefix in prefixes.items():
            if action not in EVENT_CONTROL_ACTIONS:
                problem(f"{path}.event_prefixes.{action}",
                        f"one of {', '.join(EVENT_CONTROL_ACTIONS)}", action)
            elif not _string_list(prefix):
                problem(f"{path}.event_prefixes.{action}", "a list of strings", prefix)
    for key in ("state_event_type", "action_state_event_type"):
        if not _string_list(conf.get(key)):
            problem(f"{path}.{key}", "an event type (a list of strings)", conf.get(key))


def _string_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and
            all(isinstance(item, str) and item for item in value))
