"""The 0.12 wire protocol as a remote peer sees it, over real ZeroMQ sockets."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from enum import IntEnum

import zmq

from services.device_api import (
    ApiCommand,
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    ApiEvent,
    ApiEventKind,
    ApiOptions,
    ApiTopic,
    RpcOptions,
    create_api_service,
)

from device_api_peers import FAST_HEARTBEAT, wait_until

EVENT = (4001).to_bytes(4, "little")
EMERGENCY = (2001).to_bytes(4, "little")
COMMAND_RESULT = (6001).to_bytes(4, "little")
PROPERTY_CHANGE = (5001).to_bytes(4, "little")
WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)  # 1704164645.0


class TrialKind(IntEnum):
    """An application's own event kind."""

    trialStarted = 1301


def test_topic_frames_are_4_byte_little_endian():
    assert EVENT == b"\xa1\x0f\x00\x00"
    assert (1001).to_bytes(4, "little") == b"\xe9\x03\x00\x00"


def test_heartbeats_arrive_at_their_cadence_with_identifier_version_and_timestamp(make_service, make_peer):
    service = make_service()
    peer = make_peer(service)
    peer.wait_until_subscribed()
    bodies = []
    for _ in range(6):
        frames = peer.wait_until_subscribed(timeout=10)
        assert len(frames) == 2
        bodies.append(json.loads(frames[1]))
    for body in bodies:
        assert list(body) == ["identifier", "version", "timestamp"]
        assert body["identifier"] == "test-device"
        assert body["version"] == "0.12.0"
        assert abs(body["timestamp"] - time.time()) < 30
    # six distinct beats, in order (their cadence: benchmarks/timing_checks.py)
    stamps = [body["timestamp"] for body in bodies]
    assert stamps == sorted(set(stamps)), stamps
    stamps = [b["timestamp"] for b in bodies]
    assert stamps == sorted(stamps)


def test_event_frames_byte_for_byte(make_service, make_peer):
    service = make_service()
    peer = make_peer(service)
    peer.wait_until_subscribed()

    assert service.send_event_dict({"kind": TrialKind.trialStarted, "when": WHEN, "index": 12,
                                    "context": {"trial_id": 3, "animal_name": "Mouse_One",
                                                "nested_dict": {"inner_key": [1, {"deep_key": "A_b"}]}}})
    assert service.send_event(ApiEvent(kind=ApiEventKind.systemStatus, when=WHEN, index=13,
                                       context={"application_mode": ApiCommand.GET_STATUS}))
    assert service.send_dict(ApiTopic.PROPERTY_CHANGE, {"property_name": "gate_open", "new_value": True})

    assert peer.next_non_heartbeat() == [
        EVENT,
        b'{"kind": 1301, "when": 1704164645.0, "index": 12, "context": {"trialId": 3, "animalName": "Mouse_One", '
        b'"nestedDict": {"innerKey": [1, {"deepKey": "A_b"}]}}}',
    ]
    assert peer.next_non_heartbeat() == [
        EVENT,
        b'{"kind": 601, "when": 1704164645.0, "index": 13, "context": {"applicationMode": 400}, "repeat": 0}',
    ]
    assert peer.next_non_heartbeat() == [PROPERTY_CHANGE, b'{"propertyName": "gate_open", "newValue": true}']


def test_emergency_events_go_out_on_emergency_and_event_topics(make_service, make_peer):
    service = make_service()
    peer = make_peer(service)
    peer.wait_until_subscribed()
    service.send_event_dict({"kind": ApiEventKind.emergencyStop, "when": WHEN, "index": 1, "context": None})
    service.send_event(ApiEvent(kind=ApiEventKind.emergencyResume, when=WHEN, index=2))

    stop_body = b'{"kind": 101, "when": 1704164645.0, "index": 1, "context": null}'
    resume_body = b'{"kind": 102, "when": 1704164645.0, "index": 2, "context": null, "repeat": 0}'
    assert peer.collect_non_heartbeats(4) == [
        [EMERGENCY, stop_body], [EVENT, stop_body], [EMERGENCY, resume_body], [EVENT, resume_body],
    ]


def test_synchronous_command_reply_is_correlated_by_nonce(make_service, make_peer):
    service = make_service()
    seen = []

    def handler(request):
        seen.append(request)
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS,
                                         data={"application_mode": 100, "device_name": "Rig_A"},
                                         nonce=999, command=ApiCommand.NONE)  # both ignored

    service.command_request_delegate = handler
    peer = make_peer(service)
    reply = peer.request({"command": 400, "customCommand": -1, "nonce": 4242, "data": {"verboseLevel": 2}})

    assert reply == {"nonce": 4242, "command": 400, "result": 100,
                     "data": {"applicationMode": 100, "deviceName": "Rig_A"},
                     "errorKind": 0, "errorCode": 0, "errorMessage": None}
    assert list(reply) == ["nonce", "command", "result", "data", "errorKind", "errorCode", "errorMessage"]
    assert seen[0].command is ApiCommand.GET_STATUS
    assert seen[0].nonce == 4242 and seen[0].custom_command == -1
    assert seen[0].data == {"verbose_level": 2}


def test_failed_command_reports_command_error_kind(make_service, make_peer):
    service = make_service()
    service.command_request_delegate = lambda request: ApiCommandRequestResponse(
        result=ApiCommandRequestResult.FAILED, error_code=7, error_message="gate jammed")
    reply = make_peer(service).request({"command": 50, "nonce": 5})
    assert (reply["result"], reply["errorKind"], reply["errorCode"], reply["errorMessage"]) == \
        (400, 2, 7, "gate jammed")


def test_asynchronous_command_replies_pending_then_publishes_result_with_nonce(make_service, make_peer):
    service = make_service()
    pending = []

    def handler(request):
        pending.append(request)
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)

    service.command_request_delegate = handler
    peer = make_peer(service)
    peer.wait_until_subscribed()
    reply = peer.request({"command": 50, "customCommand": -1, "nonce": 77, "data": None})
    assert (reply["nonce"], reply["command"], reply["result"]) == (77, 50, 201)

    request = pending[0]

    def finish_later():
        service.send_command_result(ApiCommandRequestResponse(
            result=ApiCommandRequestResult.SUCCESS, data={"frames_written": 10},
            command=request.command, nonce=request.nonce))

    threading.Thread(target=finish_later).start()
    frames = peer.next_non_heartbeat()
    assert frames == [COMMAND_RESULT, b'{"result": 100, "data": {"framesWritten": 10}, "errorCode": 0, '
                                      b'"errorMessage": null, "command": 50, "nonce": 77}']


def test_malformed_requests_are_answered_without_calling_the_handler(make_service, make_peer):
    service = make_service()
    calls = []
    service.command_request_delegate = lambda request: calls.append(request)
    peer = make_peer(service)
    malformed = [
        (b"not json", 0),
        (b"\xff\xfe\x00", 0),
        (b"[1, 2]", 0),
        (b'{"nonce": 3}', 3),                       # no command
        (b'{"command": "400", "nonce": 4}', 4),     # command not a number
        (b'{"command": true, "nonce": 5}', 5),
        (b'{"command": 400, "nonce": "x"}', 0),
        (b'{"command": 400, "nonce": 6, "customCommand": "a"}', 6),
    ]
    for body, nonce in malformed:
        reply = peer.request(body)
        assert reply["result"] == ApiCommandRequestResult.UNRECOGNIZED, body
        assert reply["nonce"] == nonce, body
        assert reply["errorKind"] == 2 and reply["errorMessage"], body
    peer.send_raw(b'{"command": 400}', b'{"second": "frame"}')
    assert peer.receive_reply()["result"] == ApiCommandRequestResult.UNRECOGNIZED
    assert calls == []


def test_handler_exception_is_reported_as_exception_with_its_message(make_service, make_peer):
    service = make_service()

    def handler(request):
        raise RuntimeError("camera not connected")

    service.command_request_delegate = handler
    peer = make_peer(service)
    reply = peer.request({"command": 300, "nonce": 9})
    assert (reply["nonce"], reply["command"], reply["result"]) == (9, 300, 500)
    assert reply["errorMessage"] == "camera not connected"
    # The service survives its handler's exception.
    service.command_request_delegate = lambda request: ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)
    assert peer.request({"command": 300, "nonce": 10})["result"] == 100


def test_handler_returning_the_wrong_type_is_reported_as_exception(make_service, make_peer):
    service = make_service()
    service.command_request_delegate = lambda request: {"result": 100}
    reply = make_peer(service).request({"command": 300, "nonce": 11})
    assert reply["result"] == 500 and "dict" in reply["errorMessage"]


def test_no_delegate_gives_unavailable(make_service, make_peer):
    service = make_service()
    reply = make_peer(service).request({"command": 400, "customCommand": -1, "nonce": 12, "data": None})
    assert (reply["nonce"], reply["command"], reply["result"]) == (12, 400, 9999)


def test_unknown_command_numbers_reach_the_handler_unchanged(make_service, make_peer):
    service = make_service()
    seen = []

    def handler(request):
        seen.append(request)
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)

    service.command_request_delegate = handler
    peer = make_peer(service)
    reply = peer.request({"command": 99999, "customCommand": 42, "nonce": 13, "data": {"someArg": "X_y"}})
    assert reply["command"] == 99999 and reply["result"] == 100
    reply = peer.request({"command": 4242, "nonce": 14})
    assert reply["command"] == 4242
    assert seen[0].command is ApiCommand.USER_DEFINED and seen[0].custom_command == 42
    assert seen[0].data == {"some_arg": "X_y"}
    assert seen[1].command == 4242


def test_start_accepts_events_queued_before_it_and_properties_match_options(make_service, make_peer):
    service = make_service(start=False, identifier="rig-7", heartbeat_interval=FAST_HEARTBEAT)
    assert (service.identifier, service.heartbeat_interval) == ("rig-7", FAST_HEARTBEAT)
    assert service.send_event_dict({"kind": 201, "when": WHEN, "index": 1, "context": None})
    service.start()
    wait_until(lambda: service.snapshot()["sequences"].get("4001") == 1, message="queued event published")
    assert service.subscriber_port and service.command_port


def test_the_seed_send_dict_routes_command_results(make_service, make_peer):
    service = make_service()
    peer = make_peer(service)
    peer.wait_until_subscribed()
    assert service.send_dict(ApiTopic.COMMAND_RESULT, ApiCommandRequestResponse(
        result=ApiCommandRequestResult.FAILED, error_code=3, command=ApiCommand.START_ACQUISITION, nonce=5))
    assert peer.next_non_heartbeat() == [COMMAND_RESULT, b'{"result": 400, "data": null, "errorCode": 3, '
                                                         b'"errorMessage": null, "command": 50, "nonce": 5}']
    assert service.command_result(5)["state"] == "complete"


def test_gateway_endpoints_are_configurable(make_service, zmq_context, tmp_path):
    publisher, commands = f"ipc://{tmp_path}/events", f"ipc://{tmp_path}/commands"
    service = make_service(zmq={"publisher_endpoint": publisher, "command_endpoint": commands})
    assert service.subscriber_port is None  # not a TCP endpoint
    sub, req = zmq_context.socket(zmq.SUB), zmq_context.socket(zmq.REQ)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, (1001).to_bytes(4, "little"))
        sub.connect(publisher)
        req.connect(commands)
        assert sub.poll(5000), "no heartbeat on the ipc endpoint"
        req.send(b'{"command": 400, "nonce": 1}')
        assert req.poll(5000) and json.loads(req.recv())["result"] == 9999
    finally:
        sub.close(linger=0)
        req.close(linger=0)


def test_a_disabled_rpc_gives_no_service():
    assert create_api_service(ApiOptions(rpc=RpcOptions(enable=False))) is None
    assert create_api_service(ApiOptions()) is None
