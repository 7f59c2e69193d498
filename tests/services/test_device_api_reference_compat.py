"""Differential test on the wire against the published auto-trainer-api 0.12 (a test
dependency: `pip install -e '.[test]'`; this module fails, it does not skip, when the
package is missing). The same application calls on a 0.12 device and on ours, observed
by the same raw ZeroMQ peers (SUB + REQ), must put the same bytes on the wire -- for
every event kind and every command -- except for the deviations this project accepts,
each asserted below as the improvement it is (README: "Coming from auto-trainer-api").
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import socket
from types import SimpleNamespace

import pytest
import zmq

import autotrainer.api as reference  # a hard import: the differential tests must run
from autotrainer.api.api_options import RpcOptions as ReferenceRpcOptions

import services.device_api as ours
from device_api_peers import FAST_HEARTBEAT, ZmqPeer, wait_until
from reference_samples import WHEN, context_types_by_kind, event_dict
from services.device_api.remote_client import ZmqDeviceClient

EMERGENCY_FRAME = (2001).to_bytes(4, "little")
COMMAND_RESULT_FRAME = (6001).to_bytes(4, "little")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def make_reference_service(monkeypatch):
    # 0.12 also binds the machine's outbound address; tests bind loopback only.
    zeromq_module = importlib.import_module("autotrainer.api.zeromq.zeromq_api_service")
    monkeypatch.setattr(zeromq_module, "get_ip4_addr_str", lambda: "127.0.0.1")
    services = []

    def make(start: bool = True, **overrides):
        options = dict(identifier="test-device", heartbeat_interval=FAST_HEARTBEAT,
                       subscriber_port=_free_port(), command_port=_free_port())
        options.update(overrides)
        service = reference.create_api_service(reference.ApiOptions(rpc=ReferenceRpcOptions(**options)))
        services.append(service)
        if start:
            service.start()
        return service

    yield make
    for service in services:
        service.stop()
        service._stop()  # a 0.12 service whose thread died never closes its sockets itself


@pytest.fixture
def both(make_reference_service, make_service, zmq_context):
    devices = {"reference": (reference, make_reference_service()), "ours": (ours, make_service())}
    peers = {name: ZmqPeer(zmq_context, service.subscriber_port, service.command_port)
             for name, (_, service) in devices.items()}
    yield SimpleNamespace(devices=devices, peers=peers)
    for peer in peers.values():
        peer.close()


def _subscribed(both) -> None:
    for peer in both.peers.values():
        peer.wait_until_subscribed()


# -- events ---------------------------------------------------------------------------------------

CONTEXT_TYPES = context_types_by_kind()


def _publish_every_kind(api, service) -> int:
    """An event of every kind, through send_event_dict and send_event alternately;
    returns how many frames a subscriber should see (emergencies go out twice)."""
    frames = 0
    for index, kind in enumerate(sorted(CONTEXT_TYPES)):
        event = event_dict(api, kind, CONTEXT_TYPES[kind], index)
        if index % 2:
            assert service.send_event(api.ApiEvent(**event, repeat=index)) is True
        else:
            assert service.send_event_dict(event) is True
        frames += 2 if kind in (101, 102) else 1
    return frames


def test_an_event_of_every_kind_gives_identical_frames(both):
    _subscribed(both)
    counts = {name: _publish_every_kind(api, service) for name, (api, service) in both.devices.items()}
    assert counts["ours"] == counts["reference"] == len(CONTEXT_TYPES) + 2
    received = {name: peer.collect_non_heartbeats(counts[name]) for name, peer in both.peers.items()}
    assert received["ours"] == received["reference"]
    assert [f[0] for f in received["ours"]].count(EMERGENCY_FRAME) == 2  # stop and resume, before their EVENT copy


def test_hand_built_events_and_command_results_give_identical_frames(both):
    _subscribed(both)
    for api, service in both.devices.values():
        service.send_event_dict({"kind": api.ApiEventKind.emergencyStop, "when": WHEN, "index": 1,
                                 "context": {"stop_reason": 301, "nested_list": [{"inner_key": "Value_One"}]}})
        service.send_event(api.ApiEvent(kind=api.ApiEventKind.systemStatus, when=WHEN, index=2,
                                        context={"application_mode": 100, "operator": "Jane_Doe"}))
        service.send_event_dict({"kind": 12345, "when": WHEN, "index": 3, "context": None})  # an application's kind
        for result in api.ApiCommandRequestResult:
            service.send_command_result(api.ApiCommandRequestResponse(
                result=result, data={"frames_written": 3, "file_name": "Run_1"}, error_code=int(result) % 7,
                error_message=f"message_{result.name}", command=api.ApiCommand.USER_DEFINED, nonce=int(result) + 1))
        assert service.send_event(None) is False and service.send_command_result(None) is False
    count = 4 + len(reference.ApiCommandRequestResult)
    received = {name: peer.collect_non_heartbeats(count) for name, peer in both.peers.items()}
    assert received["ours"] == received["reference"]


def test_heartbeats_have_the_same_shape(both):
    bodies = {name: json.loads(peer.wait_until_subscribed()[1]) for name, peer in both.peers.items()}
    assert list(bodies["ours"]) == list(bodies["reference"]) == ["identifier", "version", "timestamp"]
    assert bodies["ours"]["version"] == bodies["reference"]["version"] == "0.12.0"
    assert bodies["ours"]["identifier"] == bodies["reference"]["identifier"]


# -- commands -------------------------------------------------------------------------------------

def _request_data(command) -> object:
    """The request payload 0.12 documents for each command."""
    if command in (120, 130):
        return {"mode": 100}
    if 1000 <= command < 1100:
        return {"enabled": True}
    if command == 99999:
        return {"someOption": 1, "innerList": [{"deepKey": 2}]}
    return None


def _echoing_delegate(api, seen):
    def handle(request):
        seen.append(request)
        return api.ApiCommandRequestResponse(
            result=api.ApiCommandRequestResult.SUCCESS,
            data={"command_name": request.command.name, "echo_data": request.data,
                  "custom_command": request.custom_command,
                  "status_value": "Mixed_Case_Value"})
    return handle


def _replies(both, request_body, delegate_for=None):
    replies = {}
    for name, (api, service) in both.devices.items():
        if delegate_for is not None:
            service.command_request_delegate = delegate_for(api)
        peer = both.peers[name]
        peer.send_raw(request_body if isinstance(request_body, bytes) else json.dumps(request_body).encode())
        assert peer.req.poll(5000), f"{name} did not reply"
        replies[name] = peer.req.recv()
    return replies


COMMANDS = [c for c in reference.ApiCommand if c != reference.ApiCommand.NONE]


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_command_gets_an_identical_reply(both, command):
    seen = {"reference": [], "ours": []}
    body = {"command": int(command), "customCommand": 7, "nonce": 1000 + int(command), "data": _request_data(command)}
    replies = {}
    for name, (api, service) in both.devices.items():
        service.command_request_delegate = _echoing_delegate(api, seen[name])
        replies[name] = both.peers[name].request(body)
    assert replies["ours"] == replies["reference"]
    assert replies["ours"]["result"] == 100 and replies["ours"]["data"]["commandName"] == command.name
    theirs, mine = seen["reference"][0], seen["ours"][0]
    assert (mine.command, mine.custom_command, mine.nonce, mine.data) == \
        (theirs.command, theirs.custom_command, theirs.nonce, theirs.data)


@pytest.mark.parametrize("result", list(reference.ApiCommandRequestResult), ids=lambda r: r.name)
def test_every_result_with_and_without_an_error_code_gets_an_identical_reply(both, result):
    for error_code in (0, 42):
        def delegate_for(api, error_code=error_code):
            def handle(request):
                return api.ApiCommandRequestResponse(result=api.ApiCommandRequestResult(int(result)),
                                                     error_code=error_code, error_message="the Reason_Why")
            return handle
        replies = _replies(both, {"command": 400, "nonce": 5, "data": None}, delegate_for)
        assert replies["ours"] == replies["reference"]
        assert json.loads(replies["ours"])["errorKind"] == (2 if error_code else 0)


def test_dataclass_reply_data_is_identical(both):
    def delegate_for(api):
        def handle(request):
            return api.ApiCommandRequestResponse(
                result=api.ApiCommandRequestResult.SUCCESS,
                data=api.ApiSystemConfiguration("1.2.3", "Rig_1", "/etc/Rig", "/data", "/animals", "/log", "Model_A"))
        return handle
    replies = _replies(both, {"command": 300, "nonce": 8}, delegate_for)
    assert replies["ours"] == replies["reference"]
    assert json.loads(replies["ours"])["data"]["applicationVersion"] == "1.2.3"


def test_an_asynchronous_command_gives_identical_reply_and_result_event(both):
    _subscribed(both)
    def delegate_for(api):
        def handle(request):
            # The application stores command and nonce and publishes the result later.
            pending.append((api, request))
            return api.ApiCommandRequestResponse(result=api.ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)
        return handle
    pending = []
    replies = _replies(both, {"command": 50, "nonce": 77, "data": None}, delegate_for)
    assert replies["ours"] == replies["reference"]
    assert json.loads(replies["ours"])["result"] == 201
    for (api, request), (_, service) in zip(pending, both.devices.values(), strict=True):
        service.send_command_result(api.ApiCommandRequestResponse(
            result=api.ApiCommandRequestResult.SUCCESS, data={"frames_written": 3},
            command=request.command, nonce=request.nonce))
    frames = {name: peer.next_non_heartbeat() for name, peer in both.peers.items()}
    assert frames["ours"] == frames["reference"]
    assert frames["ours"][0] == COMMAND_RESULT_FRAME and json.loads(frames["ours"][1])["nonce"] == 77


# -- the accepted deviations, each asserted as the improvement it is ------------------------------

def _decoded(replies):
    return {name: json.loads(raw) for name, raw in replies.items()}


def test_deviation_command_none_reaches_the_handler(both):
    """0.12 answers NONE itself (UNRECOGNIZED, nonce 0) although its docs say a receiver
    answers SUCCESS; ours passes it to the handler, with its nonce."""
    replies = _decoded(_replies(both, {"command": 0, "nonce": 31}, lambda api: _echoing_delegate(api, [])))
    assert (replies["reference"]["result"], replies["reference"]["nonce"]) == (0, 0)
    assert (replies["ours"]["result"], replies["ours"]["nonce"]) == (100, 31)
    assert replies["ours"]["data"]["commandName"] == "NONE"


def test_deviation_an_unknown_command_number_is_kept(both):
    """0.12 turns any number it does not name into USER_DEFINED (99999)."""
    def delegate_for(api):
        def handle(request):
            return api.ApiCommandRequestResponse(result=api.ApiCommandRequestResult.SUCCESS,
                                                 data={"seen": int(request.command)})
        return handle
    replies = _decoded(_replies(both, {"command": 4321, "nonce": 3}, delegate_for))
    assert (replies["reference"]["command"], replies["reference"]["data"]) == (99999, {"seen": 99999})
    assert (replies["ours"]["command"], replies["ours"]["data"]) == (4321, {"seen": 4321})


@pytest.mark.parametrize("raw", [b"not json", b'{"nonce": 12}', b'{"command": "fifty", "nonce": 12}'])
def test_deviation_a_malformed_request_is_explained(both, raw):
    """0.12 answers UNRECOGNIZED with nonce 0 and no message (and takes "fifty" as USER_DEFINED)."""
    replies = _decoded(_replies(both, raw))
    mine = replies["ours"]
    assert mine["result"] == 0 and mine["errorKind"] == 2 and mine["errorMessage"]
    if raw != b'{"command": "fifty", "nonce": 12}':
        assert replies["reference"] == {"nonce": 0, "command": 0, "result": 0, "data": None, "errorKind": 0,
                                        "errorCode": 0, "errorMessage": None}
    if raw != b"not json":
        assert mine["nonce"] == 12  # the peer can still match the reply to its request


def test_deviation_handler_failures_are_system_errors(both):
    """0.12 reports a raising handler, a wrong return value and a missing handler with
    errorKind NONE; ours says SYSTEM_ERROR (the result is the same) and why."""
    def raising(api):
        def handle(request):
            raise RuntimeError("motor Jammed")
        return handle
    replies = _decoded(_replies(both, {"command": 400, "nonce": 1}, raising))
    assert replies["reference"]["result"] == replies["ours"]["result"] == 500
    assert replies["reference"]["errorMessage"] == replies["ours"]["errorMessage"] == "motor Jammed"
    assert (replies["reference"]["errorKind"], replies["ours"]["errorKind"]) == (0, 1)

    replies = _decoded(_replies(both, {"command": 400, "nonce": 2}, lambda api: (lambda request: None)))
    assert replies["reference"]["result"] == replies["ours"]["result"] == 500
    assert (replies["reference"]["errorKind"], replies["ours"]["errorKind"]) == (0, 1)
    assert "expected ApiCommandRequestResponse" in replies["ours"]["errorMessage"]

    for _, service in both.devices.values():
        service.command_request_delegate = None
    replies = _decoded(_replies(both, {"command": 400, "nonce": 9}))
    assert replies["reference"]["result"] == replies["ours"]["result"] == 9999
    assert replies["reference"]["nonce"] == replies["ours"]["nonce"] == 9
    assert (replies["reference"]["errorKind"], replies["ours"]["errorKind"]) == (0, 1)
    assert replies["ours"]["errorMessage"] == "no command handler is registered"


def test_deviation_unserialisable_reply_data_is_an_exception(both):
    """0.12 keeps the handler's SUCCESS but drops the data; ours says EXCEPTION and names the value."""
    def delegate_for(api):
        def handle(request):
            return api.ApiCommandRequestResponse(result=api.ApiCommandRequestResult.SUCCESS, data={"handle": object()})
        return handle
    replies = _decoded(_replies(both, {"command": 400, "nonce": 4}, delegate_for))
    assert (replies["reference"]["result"], replies["reference"]["data"], replies["reference"]["errorKind"]) == \
        (100, None, 1)
    assert (replies["ours"]["result"], replies["ours"]["data"], replies["ours"]["errorKind"]) == (500, None, 1)
    assert "handle" in replies["ours"]["errorMessage"]


def test_deviation_request_values_are_not_case_mangled(both):
    """0.12 decamelizes the whole request text, values included ("Hello_World" arrives
    as "hello__world"); ours converts the keys the same way and leaves values alone."""
    seen = {"reference": [], "ours": []}
    body = {"command": 99999, "nonce": 6,
            "data": {"userName": "Hello_World", "camelValue": "someCamelCase", "mode": "IN_TRAINING"}}
    for name, (api, service) in both.devices.items():
        service.command_request_delegate = _echoing_delegate(api, seen[name])
        both.peers[name].request(body)
    theirs, mine = seen["reference"][0].data, seen["ours"][0].data
    assert list(mine) == list(theirs) == ["user_name", "camel_value", "mode"]
    assert mine == {"user_name": "Hello_World", "camel_value": "someCamelCase", "mode": "IN_TRAINING"}
    # resolve_enum(ApiApplicationMode, ...) cannot recognise 0.12's version of the mode name.
    assert theirs["mode"] == "_i_n__trainin_g" and theirs != mine


def test_deviation_the_first_heartbeat_goes_out_at_start(make_service, make_peer):
    """0.12 sends its first heartbeat one interval after start (5 s by default), so a peer
    that asks for status on the first heartbeat waits that long; ours sends one at start.
    (The 0.12 side is read from its source: its Timer is armed, not fired, at start.)"""
    mine = make_service(heartbeat_interval=60)
    snapshot = make_peer(mine).request({"request": "snapshot"})
    assert snapshot["heartbeat"]["topic"] == 1001 and snapshot["heartbeat"]["seq"] == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # 0.12's thread dying
def test_deviation_an_unserialisable_event_is_refused_not_fatal(both):
    """0.12 accepts the event and its only thread dies on it: no more events, no command
    answered. Ours raises in the sender and carries on."""
    for name, (api, service) in both.devices.items():
        event = {"kind": api.ApiEventKind.systemStatus, "when": WHEN, "index": 1, "context": {"handle": object()}}
        if name == "ours":
            with pytest.raises(ours.EventSerialisationError, match="handle"):
                service.send_event_dict(event)
        else:
            assert service.send_event_dict(event) is True
    assert both.peers["ours"].request({"command": 0, "nonce": 1})["nonce"] == 1
    with pytest.raises(AssertionError, match="no reply"):
        both.peers["reference"].request({"command": 0, "nonce": 1}, timeout=2.0)


def test_deviation_a_taken_port_fails_start(make_reference_service, make_service, zmq_context):
    """0.12's start() returns normally and the service silently never runs."""
    blocker = zmq_context.socket(zmq.PUB)
    blocker.linger = 0
    port = blocker.bind_to_random_port("tcp://127.0.0.1")
    try:
        theirs = make_reference_service(start=False, subscriber_port=port)
        theirs.start()  # no error
        wait_until(lambda: not theirs._thread.is_alive(), message="0.12's service thread to give up")
        with pytest.raises(ours.TransportBindError, match=str(port)):
            make_service(start=False, subscriber_port=port).start()
    finally:
        blocker.close()


def test_our_remote_client_drives_a_reference_device(make_reference_service):
    service = make_reference_service()
    service.command_request_delegate = _echoing_delegate(reference, [])
    with ZmqDeviceClient(subscriber_port=service.subscriber_port, command_port=service.command_port) as client:
        assert client.receive(timeout=5.0).topic == 1001
        reply = client.send_command(ours.ApiCommand.GET_STATUS)
        assert reply["result"] == ours.ApiCommandRequestResult.SUCCESS
        assert reply["data"]["commandName"] == "GET_STATUS"


def test_our_options_default_to_0_12_behaviour():
    """The option fields ours adds keep the 0.12 wire format unless asked."""
    options = ours.RpcOptions()
    assert options.zmq.sequence_frame is False and options.zmq.curve is None
    assert options.speedysvc.enable is False
    assert dataclasses.asdict(ours.TelemetryOptions()) == dataclasses.asdict(reference.api_options.TelemetryOptions())
