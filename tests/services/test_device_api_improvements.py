"""Where the device API does better than auto-trainer-api 0.12. Each test fails on the
original's behaviour (named in its docstring)."""
from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timezone

import pytest
import zmq

from services.device_api import (
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    ApiEventKind,
    ApiOptions,
    EventSerialisationError,
    RpcService,
    ServiceStateError,
    TransportBindError,
    create_api_service,
)

from device_api_peers import rpc_options, wait_until

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
EVENT = (4001).to_bytes(4, "little")
HEARTBEAT = (1001).to_bytes(4, "little")


def _event(index: int, **context) -> dict:
    return {"kind": 1301, "when": WHEN, "index": index, "context": context or None}


def test_slow_command_handler_delays_neither_heartbeats_nor_events_nor_other_commands(make_service, make_peer):
    """0.12 runs the handler on its only I/O thread: heartbeats stop while it blocks."""
    service = make_service()
    entered, release, left = threading.Event(), threading.Event(), threading.Event()

    def handler(request):
        if request.command == 50:
            entered.set()
            release.wait(120)  # blocks until the test is done, however slow the machine
            left.set()
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)

    service.command_request_delegate = handler
    slow_peer, other_peer = make_peer(service), make_peer(service)
    slow_peer.wait_until_subscribed()
    slow_peer.send_raw(json.dumps({"command": 50, "nonce": 1}).encode())
    assert entered.wait(30)
    # Everything below happens while the handler blocks: a 0.12 service publishes nothing and
    # answers nothing until it returns, so each wait runs out (the heartbeat cadence itself
    # is measured in benchmarks/timing_checks.py).
    try:
        heartbeats = 0
        while heartbeats < 8:
            frames = slow_peer.recv_frames(timeout=10)
            assert frames is not None, "publishing stalled while a handler blocks"
            heartbeats += frames[0] == HEARTBEAT
        # An event and another command are not held up either.
        assert service.send_event_dict(_event(1))
        assert slow_peer.next_non_heartbeat(timeout=10)[0] == EVENT
        assert other_peer.request({"command": 400, "nonce": 2}, timeout=10)["result"] == 100
        assert not left.is_set(), "the slow handler was still running throughout"
    finally:
        release.set()
    assert slow_peer.receive_reply()["nonce"] == 1


def test_commands_run_concurrently(make_service, make_peer):
    """0.12 handles one command at a time."""
    service = make_service(command_workers=2)
    both_inside = threading.Barrier(2, timeout=5)

    def handler(request):
        both_inside.wait()  # breaks (and fails the command) unless two handlers overlap
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)

    service.command_request_delegate = handler
    first, second = make_peer(service), make_peer(service)
    first.send_raw(b'{"command": 300, "nonce": 1}')
    second.send_raw(b'{"command": 400, "nonce": 2}')
    assert first.receive_reply()["result"] == 100
    assert second.receive_reply()["result"] == 100


def test_unserialisable_event_is_rejected_to_its_sender_and_the_service_keeps_running(make_service, make_peer):
    """0.12 accepts it (returns True), then its publishing thread dies on it and the
    service publishes nothing more."""
    service = make_service()
    service.command_request_delegate = lambda request: ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)
    peer = make_peer(service)
    peer.wait_until_subscribed()

    with pytest.raises(EventSerialisationError, match=r"context\.camera"):
        service.send_event_dict(_event(1, camera=object()))
    with pytest.raises(EventSerialisationError):
        service.send_event_dict({"kind": 1301, "when": WHEN, "index": 2, "context": {("tuple", "key"): 1}})

    assert service.send_event_dict(_event(3, ok=True))
    assert peer.next_non_heartbeat() == [
        EVENT, b'{"kind": 1301, "when": 1704164645.0, "index": 3, "context": {"ok": true}}']
    peer.wait_until_subscribed(timeout=10)  # heartbeats go on
    assert peer.request({"command": 400, "nonce": 4})["result"] == 100
    # Sequence numbers have no hole where the rejected events were.
    assert service.snapshot()["sequences"]["4001"] == 1


def test_bind_failure_makes_start_raise(no_leaked_threads):
    """0.12's start() returns while its thread fails to bind, leaving a service that silently does nothing."""
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        service = create_api_service(ApiOptions(rpc=rpc_options(subscriber_port=port)))
        with pytest.raises(TransportBindError, match=str(port)):
            service.start()
        assert not service.is_running
        assert service.send_event_dict(_event(1)) is False
        with pytest.raises(ServiceStateError):
            service.start()
        service.stop()


def test_a_failed_start_releases_what_it_had_bound(no_leaked_threads, make_service, zmq_context):
    first = make_service()
    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    # PUB binds, then the command port is taken: start() must raise and give the PUB port back.
    second = create_api_service(ApiOptions(rpc=rpc_options(subscriber_port=free_port, command_port=first.command_port)))
    with pytest.raises(TransportBindError, match=str(first.command_port)):
        second.start()
    rebind = zmq_context.socket(zmq.PUB)
    try:
        rebind.bind(f"tcp://127.0.0.1:{free_port}")
    finally:
        rebind.close(linger=0)


def test_stop_flushes_events_already_queued(no_leaked_threads, make_service, make_peer):
    """0.12 drops everything still queued when stop() is called."""
    service = make_service()
    peer = make_peer(service)
    peer.wait_until_subscribed()
    for index in range(500):
        assert service.send_event_dict(_event(index, payload="x" * 200))
    service.stop()
    indexes = [json.loads(frames[1])["index"] for frames in peer.collect_non_heartbeats(500)]
    assert indexes == list(range(500))
    assert service.send_event_dict(_event(501)) is False


class _StuckTransport:
    """A transport whose network never drains, to show stop() is bounded."""

    name = "stuck"

    def __init__(self) -> None:
        self.unblock = threading.Event()
        self.published = 0

    def start(self, sink) -> None:
        pass

    def publish(self, message) -> None:
        self.unblock.wait(120)
        self.published += 1

    def stop(self, flush_timeout: float) -> None:
        pass


def test_stop_flush_is_bounded_by_its_timeout(no_leaked_threads):
    transport = _StuckTransport()
    service = RpcService(rpc_options(), [transport])
    service.start()
    for index in range(3):
        service.send_event_dict(_event(index))
    # the transport drains nothing until unblocked, so a stop() that returns before that did
    # not wait for it (how close to its timeout stop() returns: benchmarks/timing_checks.py)
    stopper = threading.Thread(target=service.stop, kwargs={"timeout": 0.3})
    stopper.start()
    stopper.join(60)
    try:
        assert not stopper.is_alive(), "stop() waits for a transport that never drains"
        assert transport.published == 0
    finally:
        transport.unblock.set()
        stopper.join(60)


def test_every_message_carries_a_per_topic_sequence_number(make_service, make_peer):
    """0.12 has no sequence numbers."""
    service = make_service(zmq={"sequence_frame": True})
    peer = make_peer(service)
    peer.wait_until_subscribed()
    service.send_event_dict(_event(1))
    service.send_event_dict({"kind": ApiEventKind.emergencyStop, "when": WHEN, "index": 2, "context": None})
    service.send_event_dict(_event(3))
    service.send_command_result(ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS, command=50, nonce=9))

    received = peer.collect_non_heartbeats(5)
    topics_and_seqs = [(int.from_bytes(f[0], "little"), int.from_bytes(f[2], "little")) for f in received]
    event_seqs = [seq for topic, seq in topics_and_seqs if topic == 4001]
    assert event_seqs == list(range(event_seqs[0], event_seqs[0] + 3))
    assert [t for t, _ in topics_and_seqs] == [4001, 2001, 4001, 4001, 6001]
    assert dict((t, s) for t, s in topics_and_seqs if t in (2001, 6001)) == {2001: 1, 6001: 1}
    heartbeat_seqs = []
    while len(heartbeat_seqs) < 2:
        frames = peer.wait_until_subscribed()
        heartbeat_seqs.append(int.from_bytes(frames[2], "little"))
    assert heartbeat_seqs[1] == heartbeat_seqs[0] + 1
    sequences = service.snapshot()["sequences"]
    assert sequences["4001"] == event_seqs[-1] and sequences["2001"] == 1


def test_a_late_subscriber_fetches_a_snapshot_of_status_emergency_and_heartbeat(make_service, make_peer):
    """0.12 answers the snapshot request UNRECOGNIZED: a late subscriber learns the state only by asking commands."""
    service = make_service()
    wait_until(lambda: service.snapshot()["heartbeat"], message="a first heartbeat")
    service.send_event_dict({"kind": ApiEventKind.systemStatus, "when": WHEN, "index": 1,
                             "context": {"application_mode": 100, "operator": "Jane_Doe"}})
    service.send_event_dict({"kind": ApiEventKind.emergencyStop, "when": WHEN, "index": 2, "context": None})
    service.send_event_dict(_event(3))

    peer = make_peer(service)  # joins after all of that was published
    snapshot = peer.request({"request": "snapshot"})
    assert snapshot["identifier"] == "test-device" and snapshot["version"] == "0.12.0"
    assert snapshot["status"] == {"topic": 4001, "seq": 1, "message": {
        "kind": 601, "when": 1704164645.0, "index": 1, "context": {"applicationMode": 100, "operator": "Jane_Doe"}}}
    assert snapshot["emergency"]["message"]["kind"] == 101 and snapshot["emergency"]["seq"] == 1
    assert snapshot["heartbeat"]["message"]["identifier"] == "test-device"
    assert snapshot["sequences"]["4001"] == 3


def test_string_values_are_never_case_converted(make_service, make_peer):
    """0.12 converts whole request payloads, turning "Hello_World" into "_hello__world"."""
    service = make_service()
    seen = []

    def handler(request):
        seen.append(request.data)
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS, data={"echo_value": request.data})

    service.command_request_delegate = handler
    peer = make_peer(service)
    peer.wait_until_subscribed()
    data = {"userName": "Hello_World", "camelValue": "someCamelCase", "items": [{"innerKey": "SNAKE_case_Value"}]}
    reply = peer.request({"command": 400, "nonce": 1, "data": data})
    assert seen == [{"user_name": "Hello_World", "camel_value": "someCamelCase",
                     "items": [{"inner_key": "SNAKE_case_Value"}]}]
    assert reply["data"] == {"echoValue": {"userName": "Hello_World", "camelValue": "someCamelCase",
                                           "items": [{"innerKey": "SNAKE_case_Value"}]}}
    service.send_event_dict(_event(2, file_name="Trial_Video_01.mp4", mode="someMode"))
    frames = peer.next_non_heartbeat()
    assert json.loads(frames[1])["context"] == {"fileName": "Trial_Video_01.mp4", "mode": "someMode"}


def test_asynchronous_results_stay_retrievable_by_nonce(make_service, make_peer):
    """0.12 publishes the result once; a peer that was not subscribed has no way to get it."""
    service = make_service()
    service.command_request_delegate = lambda request: ApiCommandRequestResponse(
        result=ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)
    peer = make_peer(service)
    assert peer.request({"command": 50, "nonce": 31})["result"] == 201
    assert peer.request({"request": "commandResult", "nonce": 31}) == {
        "nonce": 31, "state": "pending", "command": 50, "response": None}

    service.send_command_result(ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS,
                                                          data={"file_name": "Run_1"}, command=50, nonce=31))
    late_peer = make_peer(service)
    assert late_peer.request({"request": "commandResult", "nonce": 31}) == {
        "nonce": 31, "state": "complete", "command": 50,
        "response": {"result": 100, "data": {"fileName": "Run_1"}, "errorCode": 0, "errorMessage": None,
                     "command": 50, "nonce": 31}}
    assert late_peer.request({"request": "commandResult", "nonce": 32})["state"] == "unknown"


def test_results_expire_after_the_retention_period(make_service, make_peer):
    service = make_service(command_result_retention=0.2)
    service.send_command_result(ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS, command=50, nonce=5))
    assert service.command_result(5)["state"] == "complete"
    wait_until(lambda: service.command_result(5)["state"] == "unknown", timeout=5, message="the result to expire")


def test_a_stopped_service_cannot_be_restarted(make_service):
    service = make_service()
    service.stop()
    service.stop()  # idempotent
    with pytest.raises(ServiceStateError, match="create a new one"):
        service.start()
