"""The `Model` base class and the `@model` class decorator (one class = one model type)."""
from __future__ import annotations

import abc
from typing import Any

from .registry import Plugin, default_registry, describe_place


class Model(abc.ABC):
    """A model type as a class: `__init__` instantiates, the methods are the other plugins."""

    @abc.abstractmethod
    def fit(self, *args: Any, **kwargs: Any) -> Any:
        """Fit this instance; return the fitted instance (returning None means `self`)."""

    @abc.abstractmethod
    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Predict; changes made to `self` are kept."""

    @abc.abstractmethod
    def serialize(self) -> bytes:
        """This instance as bytes."""

    @classmethod
    @abc.abstractmethod
    def deserialize(cls, instance_bytes: bytes) -> "Model":
        """An instance from bytes made by `serialize`."""


def model_type_of(cls: type) -> str:
    """The model type name of a class: `module.ClassName`."""
    return f"{cls.__module__}.{cls.__qualname__}"


def model(cls: type) -> type:
    """Register a `Model` subclass under the type name `module.ClassName`."""
    model_type = model_type_of(cls)
    place = describe_place(cls)
    default_registry.declare(Plugin("instantiate", model_type, cls, place=place))
    default_registry.declare(Plugin("fit", model_type, cls.fit, place=place,
                                    returns_self_when_none=True))
    default_registry.declare(Plugin("predict", model_type, cls.predict, place=place))
    default_registry.declare(Plugin("serialize", model_type, cls.serialize, place=place))
    default_registry.declare(Plugin("deserialize", model_type, cls.deserialize, place=place))
    return cls
