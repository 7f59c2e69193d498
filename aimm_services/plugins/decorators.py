"""The AIMM plugin decorators: they register the decorated function and return it unchanged."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

from .registry import Plugin, default_registry, describe_place


def _model_types(model_types: Union[str, Iterable[str]]) -> list[str]:
    # a bare string would otherwise be iterated character by character
    if isinstance(model_types, str):
        return [model_types]
    return list(model_types)


def instantiate(model_type: str, state_cb_arg_name: Optional[str] = None) -> Callable:
    """Mark a function that creates a new instance of `model_type`."""
    def decorator(function: Callable) -> Callable:
        default_registry.declare(Plugin("instantiate", model_type, function,
                                        state_cb_arg_name=state_cb_arg_name,
                                        place=describe_place(function)))
        return function
    return decorator


def data_access(name: str, state_cb_arg_name: Optional[str] = None) -> Callable:
    """Mark a function that fetches data; DataAccess(name, ...) arguments call it."""
    def decorator(function: Callable) -> Callable:
        default_registry.declare(Plugin("data_access", name, function,
                                        state_cb_arg_name=state_cb_arg_name,
                                        place=describe_place(function)))
        return function
    return decorator


def fit(model_types: Union[str, Iterable[str]], state_cb_arg_name: Optional[str] = None,
        instance_arg_name: Optional[str] = None) -> Callable:
    """Mark a function that fits an instance and returns the fitted instance."""
    def decorator(function: Callable) -> Callable:
        for model_type in _model_types(model_types):
            default_registry.declare(Plugin("fit", model_type, function,
                                            state_cb_arg_name=state_cb_arg_name,
                                            instance_arg_name=instance_arg_name,
                                            place=describe_place(function)))
        return function
    return decorator


def predict(model_types: Union[str, Iterable[str]], state_cb_arg_name: Optional[str] = None,
            instance_arg_name: Optional[str] = None) -> Callable:
    """Mark a function that predicts with an instance (it may change the instance)."""
    def decorator(function: Callable) -> Callable:
        for model_type in _model_types(model_types):
            default_registry.declare(Plugin("predict", model_type, function,
                                            state_cb_arg_name=state_cb_arg_name,
                                            instance_arg_name=instance_arg_name,
                                            place=describe_place(function)))
        return function
    return decorator


def serialize(model_types: Union[str, Iterable[str]]) -> Callable:
    """Mark a function `(instance) -> bytes`."""
    def decorator(function: Callable) -> Callable:
        for model_type in _model_types(model_types):
            default_registry.declare(Plugin("serialize", model_type, function,
                                            place=describe_place(function)))
        return function
    return decorator


def deserialize(model_types: Union[str, Iterable[str]]) -> Callable:
    """Mark a function `(bytes) -> instance`."""
    def decorator(function: Callable) -> Callable:
        for model_type in _model_types(model_types):
            default_registry.declare(Plugin("deserialize", model_type, function,
                                            place=describe_place(function)))
        return function
    return decorator
