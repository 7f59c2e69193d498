"""The device API through speedysvc clients, over shared memory and over TCP.

`scope` is the suite-wide fixture (tests/conftest.py): a fresh scope whose shared-memory
objects must all be gone after the test."""
from __future__ import annotations

import socket
import threading
from datetime import datetime, timezone

import pytest

from services.device_api import (
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    ApiEventKind,
    ApiOptions,
    SpeedysvcOptions,
    TransportBindError,
    create_api_service,
)
from services.device_api.speedysvc_client import SpeedysvcDeviceClient

from device_api_peers import FAST_HEARTBEAT, rpc_options, wait_until

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def make_speedysvc_service(scope, make_service):
    def make(zmq_enabled: bool = False, **overrides):
        return make_service(speedysvc=SpeedysvcOptions(enable=True, scope=scope, tcp="127.0.0.1:0", workers=2),
                            zmq={"enable": zmq_enabled}, **overrides)
    return make


@pytest.fixture(params=["shm", "tcp"])
def make_client(request):
    clients = []

    def make(service, topics=()):
        transport = service.transport("speedysvc")
        address = transport.shm_address if request.param == "shm" else transport.tcp_address
        client = SpeedysvcDeviceClient(address, topics=topics, timeout=5.0)
        clients.append(client)
        # Like a ZeroMQ peer, start once the first heartbeat proves the subscription is live.
        wait_until(lambda: (m := client.receive(FAST_HEARTBEAT)) is not None and m.topic == 1001,
                   message="a first heartbeat")
        return client

    yield make
    for client in clients:
        client.close()


def _next_event(client, timeout=5.0):
    def non_heartbeat():
        message = client.receive(0.1)
        return message if message is not None and message.topic != 1001 else None
    return wait_until(non_heartbeat, timeout=timeout, interval=0, message="an event")


def test_subscribers_receive_events_with_per_topic_sequence_numbers(make_speedysvc_service, make_client):
    service = make_speedysvc_service()
    client = make_client(service)
    service.send_event_dict({"kind": 1301, "when": WHEN, "index": 1, "context": {"trial_id": 1, "name": "Trial_One"}})
    service.send_event_dict({"kind": ApiEventKind.emergencyStop, "when": WHEN, "index": 2, "context": None})

    first = _next_event(client)
    assert (first.topic, first.seq) == (4001, 1)
    assert first.body == {"kind": 1301, "when": 1704164645.0, "index": 1,
                          "context": {"trialId": 1, "name": "Trial_One"}}
    emergency, event = _next_event(client), _next_event(client)
    assert (emergency.topic, emergency.seq, event.topic, event.seq) == (2001, 1, 4001, 2)
    assert emergency.body == event.body


def test_subscribing_to_one_topic(make_speedysvc_service, make_client):
    service = make_speedysvc_service()
    make_client(service)  # waits until the service is heartbeating
    with SpeedysvcDeviceClient(service.transport("speedysvc").shm_address, topics=[2001]) as emergency_only:
        wait_until(lambda: service.snapshot()["heartbeat"], message="heartbeat")
        service.send_event_dict({"kind": 1301, "when": WHEN, "index": 1, "context": None})
        service.send_event_dict({"kind": ApiEventKind.emergencyResume, "when": WHEN, "index": 2, "context": None})
        message = emergency_only.receive(5.0)
        assert (message.topic, message.body["kind"]) == (2001, 102)


def test_synchronous_commands_and_their_errors(make_speedysvc_service, make_client):
    service = make_speedysvc_service()
    client = make_client(service)
    assert client.send_command(400, nonce=1)["result"] == ApiCommandRequestResult.UNAVAILABLE

    seen = []

    def handler(request):
        seen.append(request)
        if request.command == 300:
            raise ValueError("no configuration loaded")
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS, data={"mode_name": "Auto_Run"})

    service.command_request_delegate = handler
    reply = client.send_command(400, data={"detailLevel": "Full_Detail"}, nonce=2)
    assert reply == {"nonce": 2, "command": 400, "result": 100, "data": {"modeName": "Auto_Run"},
                     "errorKind": 0, "errorCode": 0, "errorMessage": None}
    assert seen[0].data == {"detail_level": "Full_Detail"}
    reply = client.send_command(300, nonce=3)
    assert (reply["result"], reply["errorMessage"]) == (500, "no configuration loaded")
    malformed = client.client.send_command({"nonce": 4})
    assert (malformed["result"], malformed["nonce"]) == (0, 4) and len(seen) == 2


def test_asynchronous_result_arrives_by_subscription_and_by_nonce(make_speedysvc_service, make_client):
    service = make_speedysvc_service()
    client = make_client(service)
    requests = []

    def handler(request):
        requests.append(request)
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)

    service.command_request_delegate = handler
    assert client.send_command(50, nonce=70)["result"] == 201
    assert client.command_result(70)["state"] == "pending"

    request = requests[0]
    threading.Thread(target=service.send_command_result, args=(ApiCommandRequestResponse(
        result=ApiCommandRequestResult.SUCCESS, data={"started": True}, command=request.command,
        nonce=request.nonce),)).start()
    message = _next_event(client)
    assert message.topic == 6001 and message.body["nonce"] == 70 and message.body["command"] == 50
    wait_until(lambda: client.command_result(70)["state"] == "complete", message="the stored result")
    assert client.command_result(70)["response"]["data"] == {"started": True}


def test_snapshot_over_speedysvc(make_speedysvc_service, make_client):
    service = make_speedysvc_service()
    service.send_event_dict({"kind": ApiEventKind.systemStatus, "when": WHEN, "index": 1, "context": {"mode": 1}})
    client = make_client(service)
    snapshot = client.snapshot()
    assert snapshot["status"]["message"]["context"] == {"mode": 1}
    assert snapshot["heartbeat"]["message"]["identifier"] == "test-device"


def test_a_slow_handler_does_not_block_speedysvc_subscribers(make_speedysvc_service, make_client):
    service = make_speedysvc_service()
    client = make_client(service)
    release = threading.Event()

    def handler(request):
        release.wait(120)  # blocks until the test is done, however slow the machine
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)

    service.command_request_delegate = handler
    caller = threading.Thread(target=lambda: client.client.send_command({"command": 50, "nonce": 1}, 10))
    caller.start()
    try:
        heartbeats = 0
        while heartbeats < 3:  # a deadline far beyond the cadence: a stall, not a slow beat, fails
            message = client.receive(10)
            assert message is not None, "no heartbeat while a handler blocks"
            heartbeats += message.topic == 1001
    finally:
        release.set()
        caller.join(10)


def test_the_same_event_reaches_zeromq_and_speedysvc_with_one_sequence_number(make_speedysvc_service, make_client,
                                                                              make_peer):
    service = make_speedysvc_service(zmq_enabled=True)
    client = make_client(service)
    peer = make_peer(service)
    peer.wait_until_subscribed()
    service.send_event_dict({"kind": 1301, "when": WHEN, "index": 9, "context": None})
    frames = peer.next_non_heartbeat()
    message = _next_event(client)
    assert frames[1] == b'{"kind": 1301, "when": 1704164645.0, "index": 9, "context": null}'
    assert message.body == {"kind": 1301, "when": 1704164645.0, "index": 9, "context": None}
    assert message.seq == service.snapshot()["sequences"]["4001"] == 1


def test_speedysvc_bind_failure_makes_start_raise_and_releases_the_gateway(no_leaked_threads, scope):
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        service = create_api_service(ApiOptions(rpc=rpc_options(
            speedysvc=SpeedysvcOptions(enable=True, scope=scope, tcp=f"127.0.0.1:{port}"))))
        with pytest.raises(TransportBindError):
            service.start()
        assert service.transport("speedysvc").shm_address is None
        assert not service.is_running


def test_stopping_releases_calls_still_waiting_for_a_handler(make_speedysvc_service, make_client):
    service = make_speedysvc_service()
    client = make_client(service)
    entered, release = threading.Event(), threading.Event()

    def handler(request):
        entered.set()
        release.wait(10)
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)

    service.command_request_delegate = handler
    outcome = {}

    def call():
        try:
            outcome["reply"] = client.client.send_command({"command": 50, "nonce": 1}, 30)
        except Exception as exc:  # over TCP the connection may close before the reply crosses it
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert entered.wait(5)
        service.stop()
        caller.join(5)
        assert not caller.is_alive(), "the call waited for the handler after stop()"
        if "reply" in outcome:
            assert outcome["reply"]["result"] == ApiCommandRequestResult.UNAVAILABLE
    finally:
        release.set()
        caller.join(10)
