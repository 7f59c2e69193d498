"""The plugin registry: which function implements which plugin kind for which key.

Keys are model types (instantiate, fit, predict, serialize, deserialize) or data access
names. Each entry remembers where it was declared so a clash can name both places.
"""
from __future__ import annotations

import importlib
import inspect
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from ..errors import DuplicatePluginError, PluginLoadError, UnknownDataAccess, UnknownModelType

PLUGIN_KINDS = ("instantiate", "data_access", "fit", "predict", "serialize", "deserialize")


@dataclass(frozen=True)
class Plugin:
    """One registered plugin function and how it wants to be called."""

    kind: str
    key: str
    function: Callable
    state_cb_arg_name: Optional[str] = None
    instance_arg_name: Optional[str] = None
    place: str = "<unknown>"
    # @model classes treat a fit returning None as "fitted in place"
    returns_self_when_none: bool = False


def describe_place(obj: Any) -> str:
    """'module.qualname (file:line)' for error messages naming where a plugin was declared."""
    target = inspect.unwrap(obj) if callable(obj) else obj
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    try:
        file = inspect.getsourcefile(target) or "?"
        line = inspect.getsourcelines(target)[1]
        return f"{name} ({file}:{line})"
    except (TypeError, OSError):
        return name


class PluginRegistry:
    """Thread-safe mapping kind -> key -> Plugin."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plugins: dict[str, dict[str, Plugin]] = {kind: {} for kind in PLUGIN_KINDS}

    def declare(self, plugin: Plugin) -> None:
        if plugin.kind not in self._plugins:
            raise ValueError(f"unknown plugin kind {plugin.kind!r}; expected one of {PLUGIN_KINDS}")
        with self._lock:
            existing = self._plugins[plugin.kind].get(plugin.key)
            # the same declaration seen again (module reloaded) is not a clash
            if existing is not None and existing.place != plugin.place:
                raise DuplicatePluginError(
                    f"{plugin.kind} plugin for {plugin.key!r} is declared twice: first by "
                    f"{existing.place}, again by {plugin.place}; remove one of them or give "
                    f"them different keys")
            self._plugins[plugin.kind][plugin.key] = plugin

    def get(self, kind: str, key: str) -> Plugin:
        with self._lock:
            plugin = self._plugins[kind].get(key)
            known = sorted(self._plugins[kind])
        if plugin is None:
            if kind == "data_access":
                raise UnknownDataAccess(
                    f"no data access plugin named {key!r}; known names: {known or 'none'}")
            raise UnknownModelType(
                f"no {kind} plugin for model type {key!r}; model types with a {kind} plugin: "
                f"{known or 'none'} (is the plugin module listed under plugins.names?)")
        return plugin

    def keys(self) -> dict[str, list[str]]:
        """Registered keys per kind (what the engine uses to validate requests)."""
        with self._lock:
            return {kind: sorted(entries) for kind, entries in self._plugins.items()}

    def clear(self) -> None:
        with self._lock:
            for entries in self._plugins.values():
                entries.clear()


default_registry = PluginRegistry()


def load_plugins(module_names: Iterable[str]) -> list[str]:
    """Import plugin modules by name; their decorators register into the default registry."""
    loaded = []
    for name in module_names:
        try:
            importlib.import_module(name)
        except DuplicatePluginError:
            raise
        except Exception as exc:
            raise PluginLoadError(
                f"plugin module {name!r} (from plugins.names) could not be imported: "
                f"{type(exc).__name__}: {exc}") from exc
        loaded.append(name)
    adopt_aimm_plugins()
    return loaded


def adopt_aimm_plugins(registry: Optional[PluginRegistry] = None) -> int:
    """Register here what plugin modules written for AIMM (`from aimm import plugins`)
    registered with the published `aimm` package, so they load unchanged. Returns how many
    registrations were taken (0 when `aimm` is not in use)."""
    import sys
    decorators = sys.modules.get("aimm.plugins.decorators")
    if decorators is None:
        return 0
    registry = registry or default_registry
    taken = 0
    for kind, entries in getattr(decorators, "_declarations", {}).items():
        if kind not in PLUGIN_KINDS:
            continue
        for key, plugin in entries.items():
            function = plugin.function
            # AIMM's @model classes: a fit returning None means fitted in place
            in_place = kind == "fit" and _is_model_method(function, key)
            registry.declare(Plugin(kind, key, function,
                                    state_cb_arg_name=getattr(plugin, "state_cb_arg_name", None),
                                    instance_arg_name=getattr(plugin, "instance_arg_name", None),
                                    place=describe_place(function),
                                    returns_self_when_none=in_place))
            taken += 1
    return taken


def _is_model_method(function: Callable, model_type: str) -> bool:
    """Whether `function` is the fit method of the @model class named `model_type`."""
    qualname = getattr(function, "__qualname__", "")
    return qualname.endswith(".fit") and \
        f"{getattr(function, '__module__', '')}.{qualname[:-4]}" == model_type


def unload_all() -> None:
    """Forget every registration (tests; AIMM's plugins.unload_all)."""
    default_registry.clear()
