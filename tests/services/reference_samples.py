"""Sample event contexts for the differential tests, derived from the published
auto-trainer-api 0.12 itself: its build_event() declares, for every ApiEventKind, the
type of the context that kind carries; a sample value of that type is made once with
the package's classes and once with ours (looked up by the same names), so the two
can be serialised and compared byte for byte.

Strings are mixed-case with underscores so that any case-mangling of values shows.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import enum
import importlib
import typing
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Literal, Union

import autotrainer.api as reference

import services.device_api as ours

WHEN = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)

_reference_build_event_module = importlib.import_module("autotrainer.api.event.build_event")


def context_types_by_kind() -> Dict[int, Any]:
    """{kind value: the context type 0.12's build_event overload declares} for every kind."""
    types = {}
    for overload in typing.get_overloads(_reference_build_event_module.build_event):
        hints = typing.get_type_hints(overload, include_extras=True)
        (kind,) = typing.get_args(hints["kind"])
        types[int(kind)] = hints.get("context", type(None))
    return types


def _is_protocol(tp: Any) -> bool:
    return isinstance(tp, type) and getattr(tp, "_is_protocol", False)


def sample(tp: Any, api: Any, name: str = "value") -> Any:
    """A deterministic value of type `tp` (a 0.12 type), built from `api`'s classes."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return None
    if origin in (typing.NotRequired, typing.Required):
        return sample(args[0], api, name)
    if origin is Literal:
        return args[0]
    if origin is Union:
        # The richest alternative: not None, not a structural Protocol.
        choices = [a for a in args if a is not type(None) and not _is_protocol(a)]
        return sample(choices[-1], api, name)
    if origin in (list, collections.abc.Sequence, tuple):
        return [sample(args[0], api, f"{name}_{i}") for i in range(2)]
    if tp is Any:
        return {"free_form_key": f"Any_{name}", "nested_list": [1, "Two_Values"]}
    if origin in (dict, collections.abc.Mapping) or tp is typing.Mapping:
        return {"mapping_key": f"Mapped_{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        member = list(tp)[-1]  # the last member: not a zero default
        return member if api is reference else getattr(ours, tp.__name__)[member.name]
    if tp is bool:
        return True
    if tp is int:
        return len(name) * 7
    if tp is float:
        return len(name) + 0.25
    if tp is str:
        return f"{name}_Value_Of_{name.title()}"
    if tp is uuid.UUID:
        return uuid.UUID(int=len(name) * 1234567)
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return {key: sample(hint, api, key) for key, hint in hints.items()}
    if dataclasses.is_dataclass(tp):
        cls = tp if api is reference else getattr(ours, tp.__name__)
        hints = typing.get_type_hints(tp)
        return cls(**{f.name: sample(hints[f.name], api, f.name) for f in dataclasses.fields(tp)})
    raise TypeError(f"no sample for {tp!r}")


def event_dict(api: Any, kind_value: int, context_type: Any, index: int) -> dict:
    """build_event(kind, sample context) of `api`, with a fixed `when` and `index`."""
    kind = api.ApiEventKind(kind_value)
    context = sample(context_type, api, "context")
    event = dict(api.build_event(kind, context))
    event["when"], event["index"] = WHEN, index
    return event
