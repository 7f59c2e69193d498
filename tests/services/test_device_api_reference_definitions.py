"""Differential test of the definitions: services.device_api against the published
auto-trainer-api 0.12 (a test dependency: `pip install -e '.[test]'`; this module fails,
it does not skip, when the package is missing). Every public name, every enum member,
every dataclass field and default, every payload TypedDict, build_event, resolve_enum
and the JSON body of an event of every kind must be the same. The accepted deviations
are listed in DEVIATIONS (and in the README, "Coming from auto-trainer-api").
"""
from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import math
import types
import typing
import uuid
from datetime import date, datetime

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import autotrainer.api as reference  # a hard import: the differential tests must run
import autotrainer.api.event as reference_event

import services.device_api as ours
from reference_samples import WHEN, context_types_by_kind, event_dict, sample
from services.device_api.wire_format import encode_body

# Option fields 0.12 does not have. Each has a default that keeps 0.12 behaviour
# (README: "Coming from auto-trainer-api").
EXTRA_RPC_OPTIONS = {"zmq", "speedysvc", "command_workers", "command_result_retention",
                     "pending_command_timeout", "stop_flush_timeout", "max_queued_messages"}


def _reference_module(name: str):
    return importlib.import_module(f"autotrainer.api.{name}")


def _public_names():
    names = {n for n, v in vars(reference).items()
             if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "Optional"}
    return sorted(names | set(reference_event.__all__))


def _reference_definitions():
    """(name, reference object) of every class the package defines, wherever it is exported."""
    found = {}
    for module_name in ("api_options", "api_system_status", "api_system_configuration", "api_alarm_kind",
                        "api_detector_kind", "api_emergency_stop", "api_application_mode", "api_training_mode",
                        "event.api_event", "event.api_event_kind", "event.api_event_payloads",
                        "command.api_command", "command.api_command_request", "command.api_command_request_result",
                        "command.api_command_request_response", "rpc_service"):
        module = _reference_module(module_name)
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__ and not name.startswith("_"):
                found[name] = value
    return found


DEFINITIONS = _reference_definitions()
# 0.12 internals that are not part of what an application writes against.
INTERNAL = {"HeartbeatMessage", "ApiMessageQueueService", "ApiCommandRequestService"}
ENUMS = sorted(n for n, v in DEFINITIONS.items() if issubclass(v, enum.Enum))
DATACLASSES = sorted(n for n, v in DEFINITIONS.items() if dataclasses.is_dataclass(v) and n not in INTERNAL)
TYPEDDICTS = sorted(n for n, v in DEFINITIONS.items() if typing.is_typeddict(v))


def test_the_package_under_comparison_is_0_12():
    assert importlib.metadata.version("auto-trainer-api").startswith("0.12.")


@pytest.mark.parametrize("name", _public_names())
def test_every_public_name_exists(name):
    assert hasattr(ours, name), f"services.device_api lacks {name}, which autotrainer.api 0.12 exports"


def test_the_seeds_spelling_of_the_result_enum_is_an_alias():
    assert ours.ApiCommandReqeustResult is ours.ApiCommandRequestResult


def test_nothing_was_missed_by_the_parametrisation():
    assert len(ENUMS) >= 15 and len(DATACLASSES) >= 16 and len(TYPEDDICTS) >= 41
    assert len(reference.ApiEventKind) == len(ours.ApiEventKind) > 100


@pytest.mark.parametrize("name", ENUMS)
def test_enum_members_and_values_are_identical(name):
    theirs, mine = DEFINITIONS[name], getattr(ours, name)
    # Same members, same values, same order, same kind of enum (IntEnum / str Enum).
    assert [(m.name, m.value) for m in mine] == [(m.name, m.value) for m in theirs]
    assert [b for b in mine.__mro__ if b in (int, str, enum.IntEnum)] == \
        [b for b in theirs.__mro__ if b in (int, str, enum.IntEnum)]


def _field_shape(cls):
    shape = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else "<required>"
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        shape[f.name] = default
    return shape


@pytest.mark.parametrize("name", DATACLASSES)
def test_dataclass_fields_and_defaults_are_identical(name):
    theirs, mine = DEFINITIONS[name], getattr(ours, name)
    expected, actual = _field_shape(theirs), _field_shape(mine)
    if name == "RpcOptions":
        # A superset: every 0.12 field with its default, then our additions.
        assert set(actual) - set(expected) == EXTRA_RPC_OPTIONS
        actual = {k: v for k, v in actual.items() if k in expected}
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key] == value and type(actual[key]) is type(value) or \
            (isinstance(value, int) and isinstance(actual[key], (int, float)) and actual[key] == value), \
            f"{name}.{key}: default {actual[key]!r}, 0.12 has {value!r}"
    assert mine.__dataclass_params__.frozen == theirs.__dataclass_params__.frozen


@pytest.mark.parametrize("name", TYPEDDICTS)
def test_payload_typeddicts_have_the_same_keys(name):
    theirs, mine = DEFINITIONS[name], getattr(ours, name)
    assert list(mine.__annotations__) == list(theirs.__annotations__)
    assert mine.__required_keys__ == theirs.__required_keys__
    assert mine.__optional_keys__ == theirs.__optional_keys__


def test_protocols_have_the_same_members():
    def members(cls):
        return sorted(n for n, v in vars(cls).items() if isinstance(v, property))
    for name in ("ReachEventLike", "IntertrialResponseDataLike"):
        assert members(getattr(ours, name)) == members(DEFINITIONS[name])


def test_command_helpers():
    for value in [*(m.value for m in reference.ApiCommand), 1, 51, 99998, -1, "50", None]:
        assert ours.ApiCommand.is_member(value) == reference.ApiCommand.is_member(value)


def test_default_options_and_service_properties():
    theirs, mine = reference.create_default_api_options(), ours.create_default_api_options()
    assert _field_shape(type(mine.telemetry)) == _field_shape(type(theirs.telemetry))
    assert (mine.rpc.identifier, mine.rpc.heartbeat_interval, mine.rpc.subscriber_port, mine.rpc.command_port) == \
        (theirs.rpc.identifier, theirs.rpc.heartbeat_interval, theirs.rpc.subscriber_port, theirs.rpc.command_port)
    assert reference.create_api_service(reference.ApiOptions()) is None
    assert ours.create_api_service(ours.ApiOptions()) is None
    for name, _member in inspect.getmembers(reference.RpcService):
        if not name.startswith("_"):
            assert hasattr(ours.RpcService, name), f"RpcService.{name} is missing"


# -- build_event and the JSON body of every event kind -----------------------------------------

CONTEXT_TYPES = context_types_by_kind()


def test_build_event_covers_every_kind():
    assert set(CONTEXT_TYPES) == {m.value for m in reference.ApiEventKind} == {m.value for m in ours.ApiEventKind}


@pytest.mark.parametrize("kind", sorted(CONTEXT_TYPES))
def test_build_event_and_its_json_body_are_identical(kind):
    context_type = CONTEXT_TYPES[kind]
    theirs = reference.build_event(reference.ApiEventKind(kind), sample(context_type, reference, "context"))
    mine = ours.build_event(ours.ApiEventKind(kind), sample(context_type, ours, "context"))
    assert list(mine) == list(theirs) == ["kind", "when", "index", "context"]
    assert type(mine["when"]) is type(theirs["when"]) is datetime
    assert type(mine["index"]) is type(theirs["index"]) is int
    assert type(mine["context"]) is type(theirs["context"])  # a dataclass context is stored as its dict
    assert mine["kind"] == theirs["kind"]
    # The wire body, with the same time stamps.
    body = ours.RpcService.dictionary_to_json_bytes(event_dict(ours, kind, context_type, 42))
    assert body == reference.RpcService.dictionary_to_json_bytes(event_dict(reference, kind, context_type, 42))
    # ApiEvent (send_event) adds `repeat` after `context`, in both.
    event = ours.ApiEvent(**event_dict(ours, kind, context_type, 42), repeat=2)
    their_event = reference.ApiEvent(**event_dict(reference, kind, context_type, 42), repeat=2)
    assert encode_body(event)[1] == reference.RpcService.dictionary_to_json_bytes(dataclasses.asdict(their_event))


def test_api_event_is_same_agrees():
    pairs = [({"a": 1}, {"a": 1}), ({"a": 1}, {"a": 2}), (None, None)]
    for first, second in pairs:
        for kinds in ((601, 601), (601, 602)):
            mine = ours.ApiEvent(kinds[0], WHEN, 1, first).is_same(ours.ApiEvent(kinds[1], WHEN, 2, second))
            theirs = reference.ApiEvent(kinds[0], WHEN, 1, first).is_same(
                reference.ApiEvent(kinds[1], WHEN, 2, second))
            assert mine == theirs
    assert ours.ApiEvent(601, WHEN, 1).is_same(None) is reference.ApiEvent(601, WHEN, 1).is_same(None) is False


SERIALISATION_INPUTS = [
    {"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "tiny": 1e-300},
    {"uuid_value": uuid.UUID(int=7), "a_date": date(2024, 5, 6), "a_time": WHEN},
    {"tuple_value": (1, "Two_Three", (4,)), "nested_dict": {"inner_key": [{"deep_key": None}]}},
    {"PascalKey": 1, "HTTP_server": 2, "ALL_CAPS": 3, "_private": 4, "trailing_": 5, "a__b": 6, "with-dash": 7,
     "spaced key": 8, "x": 9, "123": 10, "is_3d": 11, "dcs_send_x": 12},
    # True == 1, so a bool key needs a dict of its own (in one dict it replaced the int key)
    {1: "int_Key", 2.5: "float_Key"},
    {True: "bool_Key"},
    {"enum_value": ours.ApiAlarmKind.thrashing, "str_enum": ours.CaptureAnalysisResultLike.ANALYSIS_FAILED,
     "enum_list": [ours.ApiDetectorKind.frontDoor]},
    {"status": "Hello_World", "camel_value": "someCamelValue", "upper": "SHOUT_ING"},
]


@pytest.mark.parametrize("message", SERIALISATION_INPUTS, ids=range(len(SERIALISATION_INPUTS)))
def test_json_bodies_are_identical(message):
    # Our enums are IntEnums with the same values, so json gives 0.12 the same numbers.
    assert encode_body(message)[1] == reference.RpcService.dictionary_to_json_bytes(message)


def test_dataclass_status_bodies_are_identical():
    for name in ("ApiSystemStatus", "ApiSystemConfiguration", "ApiAnimalStatus", "ApiAlarmStatus"):
        ref_cls = DEFINITIONS[name]
        assert encode_body(sample(ref_cls, ours, "status"))[1] == \
            reference.RpcService.dictionary_to_json_bytes(sample(ref_cls, reference, "status"))


# -- resolve_enum ---------------------------------------------------------------------------------

def _outcome(function, enum_type, text):
    try:
        return ("member", function(enum_type, text).name)
    except (ValueError, KeyError, TypeError) as exc:
        return (type(exc).__name__, str(exc))


def _inputs(enum_type):
    texts = {"", "zzz", "-1", "1.5", "none", "NONE", "e", "E", "set_", "Set_P", "s", "t", "a", "GET"}
    for member in enum_type:
        texts |= {str(member.value), member.name, member.name.lower(), member.name.upper()}
        texts |= {member.name[:n] for n in range(1, len(member.name))}
    return sorted(texts)


@pytest.mark.parametrize("name", [n for n in ENUMS if issubclass(DEFINITIONS[n], enum.IntEnum)])
def test_resolve_enum_agrees_on_every_member_and_prefix(name):
    theirs, mine = DEFINITIONS[name], getattr(ours, name)
    for text in _inputs(theirs):
        assert _outcome(ours.resolve_enum, mine, text) == _outcome(reference.resolve_enum, theirs, text), text


@pytest.mark.parametrize("obj", [
    {"command": 400, "nonce": 5, "custom_command": 2, "data": {"some_key": 1}},
    {"command": 120, "data": {"mode": 300}},  # no nonce: 0
    {"command": 1070},
    {"nonce": 3},  # no command: None
    {},
])
def test_command_request_parse_object_agrees(obj):
    theirs, mine = reference.ApiCommandRequest.parse_object(obj), ours.ApiCommandRequest.parse_object(obj)
    assert (mine is None) == (theirs is None)
    if mine is not None:
        assert dataclasses.asdict(mine) == dataclasses.asdict(theirs)


def test_command_request_parse_bytes_agrees_on_keys():
    raw = (b'{"command": 1000, "customCommand": 4, "nonce": 9, '
           b'"data": {"isEnabled": true, "innerList": [{"deepKey": 1}]}}')
    theirs, mine = reference.ApiCommandRequest.parse_bytes(raw), ours.ApiCommandRequest.parse_bytes(raw)
    assert dataclasses.asdict(mine) == dataclasses.asdict(theirs)


# -- any JSON-like message: the same body (keys camelCased by 0.12's rules, values untouched) --------

_keys = st.text(alphabet="abXY_-12 ", max_size=8)
_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | \
    st.text(alphabet="aB_c-D 9", max_size=8)
_messages = st.recursive(_scalars,
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
                         max_leaves=12)


@settings(max_examples=400, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _messages, max_size=5))
def test_any_message_body_is_identical(message):
    assert encode_body(message)[1] == reference.RpcService.dictionary_to_json_bytes(message)
