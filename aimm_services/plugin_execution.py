"""Executing one plugin call from wire data: decode, run the plugin, encode the reply.

The plugin service runs this in its worker processes; nothing here knows about transports.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from . import plugins, wire_values
from .data_access import ITEM_ACCESS, item_of
from .errors import InvalidInstance, PluginContractError
from .plugins.registry import PluginRegistry, default_registry

CALL_KINDS = ("instantiate", "data_access", "fit", "predict", "check")


def execute(kind: str, key: str, instance: Optional[bytes], args: list, kwargs: dict,
            state_cb: Callable[[Any], None],
            registry: PluginRegistry = default_registry) -> dict:
    """Run one plugin call. Returns {"instance": bytes} for instantiate and fit,
    {"result": wire value, "instance": bytes or None (None = unchanged)} for predict,
    {"result": wire value} for data_access and {"ok": True} for check."""
    call_args = [wire_values.decode(a) for a in args]
    call_kwargs = {k: wire_values.decode(v) for k, v in (kwargs or {}).items()}
    if kind == "instantiate":
        created = plugins.exec_instantiate(key, state_cb, *call_args, registry=registry,
                                           **call_kwargs)
        return {"instance": plugins.exec_serialize(key, created, registry=registry)}
    if kind == "data_access" and key == ITEM_ACCESS:
        return {"result": wire_values.encode(item_of(*call_args))}
    if kind == "data_access":
        data = plugins.exec_data_access(key, state_cb, *call_args, registry=registry,
                                        **call_kwargs)
        return {"result": wire_values.encode(data)}
    if kind == "fit":
        current = _deserialize(key, instance, registry)
        fitted = plugins.exec_fit(key, current, state_cb, *call_args, registry=registry,
                                  **call_kwargs)
        return {"instance": plugins.exec_serialize(key, fitted, registry=registry)}
    if kind == "predict":
        current = _deserialize(key, instance, registry)
        prediction = plugins.exec_predict(key, current, state_cb, *call_args,
                                          registry=registry, **call_kwargs)
        # predict may change the instance (AIMM keeps such changes): compare the bytes
        after = plugins.exec_serialize(key, current, registry=registry)
        return {"result": wire_values.encode(prediction),
                "instance": None if after == instance else after}
    if kind == "check":
        _deserialize(key, instance, registry)
        return {"ok": True}
    raise PluginContractError(f"unknown plugin call kind {kind!r}; expected one of {CALL_KINDS}")


def _deserialize(model_type: str, instance: Optional[bytes], registry: PluginRegistry) -> Any:
    plugin = registry.get("deserialize", model_type)   # unknown type: UnknownModelType
    try:
        return plugin.function(instance)
    except Exception as exc:
        raise InvalidInstance(
            f"the stored/sent instance of {model_type!r} could not be deserialized by "
            f"{plugin.place}: {type(exc).__name__}: {exc}") from exc
