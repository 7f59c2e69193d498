"""Calling registered plugins the way AIMM does: state callback and instance injection."""
from __future__ import annotations

from typing import Any, Callable, Optional

from ..errors import PluginContractError
from .registry import PluginRegistry, default_registry

StateCallback = Callable[[Any], None]


def _ignore_state(_state: Any) -> None:
    return None


def _with_state_cb(name: Optional[str], state_cb: StateCallback, kwargs: dict) -> dict:
    if not name:
        return kwargs
    if name in kwargs:
        raise TypeError(f"keyword argument {name!r} is reserved for the plugin's state "
                        f"callback; do not pass it yourself")
    return {**kwargs, name: state_cb}


def _with_instance(name: Optional[str], instance: Any, args: tuple, kwargs: dict):
    if not name:
        return (instance, *args), kwargs
    if name in kwargs:
        raise TypeError(f"keyword argument {name!r} is reserved for the model instance; "
                        f"do not pass it yourself")
    return args, {**kwargs, name: instance}


def exec_data_access(name: str, state_cb: Optional[StateCallback] = None, *args: Any,
                     registry: PluginRegistry = default_registry, **kwargs: Any) -> Any:
    plugin = registry.get("data_access", name)
    kwargs = _with_state_cb(plugin.state_cb_arg_name, state_cb or _ignore_state, kwargs)
    return plugin.function(*args, **kwargs)


def exec_instantiate(model_type: str, state_cb: Optional[StateCallback] = None, *args: Any,
                     registry: PluginRegistry = default_registry, **kwargs: Any) -> Any:
    plugin = registry.get("instantiate", model_type)
    kwargs = _with_state_cb(plugin.state_cb_arg_name, state_cb or _ignore_state, kwargs)
    return plugin.function(*args, **kwargs)


def exec_fit(model_type: str, instance: Any, state_cb: Optional[StateCallback] = None,
             *args: Any, registry: PluginRegistry = default_registry, **kwargs: Any) -> Any:
    plugin = registry.get("fit", model_type)
    kwargs = _with_state_cb(plugin.state_cb_arg_name, state_cb or _ignore_state, kwargs)
    call_args, call_kwargs = _with_instance(plugin.instance_arg_name, instance, args, kwargs)
    fitted = plugin.function(*call_args, **call_kwargs)
    if fitted is None:
        if plugin.returns_self_when_none:
            return instance
        raise PluginContractError(
            f"fit plugin for {model_type!r} ({plugin.place}) returned None; a fit plugin must "
            f"return the fitted instance")
    return fitted


def exec_predict(model_type: str, instance: Any, state_cb: Optional[StateCallback] = None,
                 *args: Any, registry: PluginRegistry = default_registry, **kwargs: Any) -> Any:
    plugin = registry.get("predict", model_type)
    kwargs = _with_state_cb(plugin.state_cb_arg_name, state_cb or _ignore_state, kwargs)
    call_args, call_kwargs = _with_instance(plugin.instance_arg_name, instance, args, kwargs)
    return plugin.function(*call_args, **call_kwargs)


def exec_serialize(model_type: str, instance: Any,
                   registry: PluginRegistry = default_registry) -> bytes:
    plugin = registry.get("serialize", model_type)
    data = plugin.function(instance)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PluginContractError(
            f"serialize plugin for {model_type!r} ({plugin.place}) returned "
            f"{type(data).__name__}; it must return bytes")
    return bytes(data)


def exec_deserialize(model_type: str, instance_bytes: bytes,
                     registry: PluginRegistry = default_registry) -> Any:
    plugin = registry.get("deserialize", model_type)
    return plugin.function(instance_bytes)
