"""The JSON bodies of the 0.12 protocol, without sockets."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import IntEnum

import pytest

from services.device_api import (
    ApiCommand,
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    EventSerialisationError,
    InvalidApiOptions,
    MalformedCommandRequest,
    RpcOptions,
)
from services.device_api.case_conversion import camel_key, camelize_keys, snake_key, snakify_keys
from services.device_api.command_reply import reply_from_response
from services.device_api.commands import ApiCommandRequest
from services.device_api.wire_format import encode_body, parse_command_request


@pytest.mark.parametrize("snake, camel", [
    ("some_key", "someKey"), ("dcs_send_x", "dcsSendX"), ("a_b", "aB"), ("x", "x"),
    ("_private", "_private"), ("ALL_CAPS", "ALL_CAPS"), ("trailing_", "trailing_"),
])
def test_keys_convert_both_ways(snake, camel):
    assert camel_key(snake) == camel
    assert snake_key(camel) == snake


def test_camel_keys_that_are_already_camel_case_stay():
    assert camel_key("alreadyCamel") == "alreadyCamel"
    assert snake_key("HTTPServer") == "http_server"
    assert snake_key("already_snake") == "already_snake"


def test_only_keys_are_converted_never_values():
    value = {"outer_key": ["Mixed_Value", {"inner_key": "snake_value", "list_key": ["camelValue"]}], 3: "Key_3"}
    assert camelize_keys(value) == {"outerKey": ["Mixed_Value", {"innerKey": "snake_value", "listKey": ["camelValue"]}],
                                    3: "Key_3"}
    assert snakify_keys({"userName": "Hello_World"}) == {"user_name": "Hello_World"}
    assert snakify_keys("someCamelValue") == "someCamelValue"


class Colour(IntEnum):
    red = 7


@dataclass
class Reading:
    sensor_name: str
    colour: Colour


def test_encoding_converts_enums_datetimes_and_dataclasses():
    payload, body = encode_body({"when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                                 "reading": Reading("Left_Arm", Colour.red), "values": (1, 2.5, None, True)})
    assert body == (b'{"when": 1704164645.0, "reading": {"sensorName": "Left_Arm", "colour": 7}, '
                    b'"values": [1, 2.5, null, true]}')
    assert payload["reading"] == {"sensorName": "Left_Arm", "colour": 7}


@pytest.mark.parametrize("bad, path", [
    ({"context": {"image": object()}}, "message.context.image"),
    ({"items": [1, {1, 2}]}, r"message.items\[1\]"),
    ({"context": {(1, 2): "tuple key"}}, "message.context"),
])
def test_unserialisable_values_name_their_path(bad, path):
    with pytest.raises(EventSerialisationError, match=path):
        encode_body(bad)


def test_circular_structures_are_rejected():
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(EventSerialisationError, match="contains itself"):
        encode_body(loop)


def test_nan_and_infinity_are_encoded_as_null_as_0_12_does():
    # JSON has no NaN; 0.12.0 sends null for NaN and the infinities (checked against the
    # package in test_device_api_reference_compat).
    _, body = encode_body({"value": math.nan, "big": math.inf, "small": -math.inf})
    assert body == b'{"value": null, "big": null, "small": null}'


def test_request_parsing():
    request = parse_command_request(b'{"command": 400, "customCommand": 5, "nonce": 12, "data": {"someKey": "A_b"}}')
    assert request == ApiCommandRequest(command=ApiCommand.GET_STATUS, custom_command=5, nonce=12,
                                        data={"some_key": "A_b"})
    defaults = parse_command_request(b'{"command": 300}')
    assert (defaults.nonce, defaults.custom_command, defaults.data) == (0, -1, None)
    assert parse_command_request(b'{"command": 300.0, "nonce": 2.0}').nonce == 2


@pytest.mark.parametrize("raw", [b"", b"null", b'"text"', b'{"command": null}', b'{"command": 1.5}',
                                 b'{"command": 1, "nonce": [1]}', b'{"command": 1, "customCommand": true}'])
def test_malformed_requests(raw):
    with pytest.raises(MalformedCommandRequest):
        parse_command_request(raw)


def test_reply_uses_the_request_nonce_and_command_and_derives_the_error_kind():
    request = ApiCommandRequest(command=ApiCommand.STOP_ACQUISITION, nonce=8)
    reply = reply_from_response(request, ApiCommandRequestResponse(
        result=ApiCommandRequestResult.SUCCESS, error_code=5, command=ApiCommand.NONE, nonce=99))
    assert reply.to_wire() == {"nonce": 8, "command": 55, "result": 100, "data": None, "errorKind": 2,
                               "errorCode": 5, "errorMessage": None}


def test_unserialisable_handler_data_becomes_an_exception_reply():
    request = ApiCommandRequest(command=ApiCommand.GET_STATUS, nonce=1)
    reply = reply_from_response(request, ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS,
                                                                   data={"handle": object()}))
    assert reply.result == ApiCommandRequestResult.EXCEPTION and "handle" in reply.error_message


@pytest.mark.parametrize("field, value", [("heartbeat_interval", 0), ("command_workers", 0),
                                          ("subscriber_port", 70000), ("stop_flush_timeout", -1)])
def test_invalid_options_name_the_option(field, value):
    with pytest.raises(InvalidApiOptions, match=field):
        RpcOptions(**{field: value})
