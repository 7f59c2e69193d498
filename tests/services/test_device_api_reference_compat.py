"""Differential test against the published auto-trainer-api 0.12 (used only as a
black-box peer; skipped when it is not installed): the same application calls on
both devices must put the same bytes on the wire."""
from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

reference = pytest.importorskip("autotrainer.api")
from autotrainer.api.api_options import RpcOptions as ReferenceRpcOptions  # noqa: E402

import services.device_api as ours  # noqa: E402
from services.device_api.remote_client import ZmqDeviceClient  # noqa: E402

from device_api_peers import FAST_HEARTBEAT, ZmqPeer  # noqa: E402

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def reference_service():
    service = reference.create_api_service(reference.ApiOptions(rpc=ReferenceRpcOptions(
        identifier="test-device", heartbeat_interval=FAST_HEARTBEAT,
        subscriber_port=_free_port(), command_port=_free_port())))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def both(reference_service, make_service, zmq_context):
    devices = {"reference": (reference, reference_service), "ours": (ours, make_service())}
    peers = {}
    for name, (api, service) in devices.items():
        peers[name] = ZmqPeer(zmq_context, service.subscriber_port, service.command_port)
    yield SimpleNamespace(devices=devices, peers=peers)
    for peer in peers.values():
        peer.close()


def _publish_the_same_things(api, service) -> None:
    service.send_event_dict({"kind": api.ApiEventKind.emergencyStop, "when": WHEN, "index": 1,
                             "context": {"stop_reason": 301, "nested_list": [{"inner_key": "Value_One"}]}})
    service.send_event(api.ApiEvent(kind=api.ApiEventKind.systemStatus, when=WHEN, index=2,
                                    context={"application_mode": 100, "operator": "Jane_Doe"}))
    service.send_event_dict({"kind": api.ApiEventKind.emergencyResume, "when": WHEN, "index": 3, "context": None})
    service.send_command_result(api.ApiCommandRequestResponse(
        result=api.ApiCommandRequestResult.SUCCESS, data={"frames_written": 3, "file_name": "Run_1"},
        error_code=0, command=api.ApiCommand.START_ACQUISITION, nonce=77))


def test_published_frames_are_identical(both):
    for peer in both.peers.values():
        peer.wait_until_subscribed()
    for api, service in both.devices.values():
        _publish_the_same_things(api, service)
    received = {name: peer.collect_non_heartbeats(6) for name, peer in both.peers.items()}
    assert received["ours"] == received["reference"]


def test_heartbeats_have_the_same_shape(both):
    bodies = {name: json.loads(peer.wait_until_subscribed()[1]) for name, peer in both.peers.items()}
    assert list(bodies["ours"]) == list(bodies["reference"])
    assert bodies["ours"]["version"] == bodies["reference"]["version"]
    assert bodies["ours"]["identifier"] == bodies["reference"]["identifier"]


def _delegate(api):
    def handle(request):
        if request.command == api.ApiCommand.GET_STATUS:
            return api.ApiCommandRequestResponse(result=api.ApiCommandRequestResult.SUCCESS,
                                                 data={"application_mode": 100, "alarm_list": [{"alarm_id": 101}]})
        if request.command == api.ApiCommand.SET_APPLICATION_MODE:
            return api.ApiCommandRequestResponse(result=api.ApiCommandRequestResult.FAILED, error_code=4,
                                                 error_message="not now")
        return api.ApiCommandRequestResponse(result=api.ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)
    return handle


@pytest.mark.parametrize("request_body", [
    {"command": 400, "customCommand": -1, "nonce": 5, "data": None},
    {"command": 120, "customCommand": -1, "nonce": 6, "data": {"mode": 100}},
    {"command": 50, "customCommand": -1, "nonce": 7, "data": {"someOption": 1}},
    {"command": 300, "nonce": 8},
])
def test_command_replies_are_identical(both, request_body):
    replies = {}
    for name, (api, service) in both.devices.items():
        service.command_request_delegate = _delegate(api)
        peer = both.peers[name]
        peer.send_raw(json.dumps(request_body).encode())
        assert peer.req.poll(5000), f"{name} did not reply"
        replies[name] = peer.req.recv()
    assert replies["ours"] == replies["reference"]


def test_no_delegate_replies_agree_on_the_result(both):
    results = {name: peer.request({"command": 400, "nonce": 9}) for name, peer in both.peers.items()}
    assert results["ours"]["result"] == results["reference"]["result"] == 9999
    assert results["ours"]["nonce"] == results["reference"]["nonce"] == 9


def test_our_remote_client_drives_a_reference_device(reference_service):
    reference_service.command_request_delegate = _delegate(reference)
    with ZmqDeviceClient(subscriber_port=reference_service.subscriber_port,
                         command_port=reference_service.command_port) as client:
        assert client.receive(timeout=5.0).topic == 1001
        reply = client.send_command(ours.ApiCommand.GET_STATUS)
        assert reply["result"] == ours.ApiCommandRequestResult.SUCCESS
        assert reply["data"] == {"applicationMode": 100, "alarmList": [{"alarmId": 101}]}


def test_enum_values_match_the_reference():
    for name in ("ApiTopic", "ApiCommand", "ApiCommandRequestResult", "ApiCommandRequestErrorKind"):
        assert {m.name: m.value for m in getattr(ours, name)} == {m.name: m.value for m in getattr(reference, name)}
    reference_kinds = {m.name: m.value for m in reference.ApiEventKind}
    for kind in ours.ApiEventKind:
        assert reference_kinds[kind.name] == kind.value
