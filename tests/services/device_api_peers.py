"""Helpers of the device API tests: a remote peer built from raw ZeroMQ sockets exactly
as a 0.12 management service is (SUB to the PUB port, REQ to the REP port), options
for services on free loopback ports, and waiting with deadlines."""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, List, Optional

import zmq

from services.device_api import RpcOptions, ZmqGatewayOptions
import waiting

HEARTBEAT_TOPIC_FRAME = (1001).to_bytes(4, "little")
FAST_HEARTBEAT = 0.2



def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02, message=None):
    """waiting.wait_until with this suite's default deadline."""
    return waiting.wait_until(predicate, timeout, interval, message)

class ZmqPeer:
    """A remote peer. Frames are returned raw so tests can compare bytes."""

    def __init__(self, context: zmq.Context, subscriber_port: int, command_port: int,
                 curve: Optional[tuple] = None) -> None:
        self._context = context
        self._command_address = f"tcp://127.0.0.1:{command_port}"
        self._curve = curve
        self.sub = self._socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(f"tcp://127.0.0.1:{subscriber_port}")
        self.req = self._new_req()

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.linger = 0
        if self._curve is not None:
            server_public, client_public, client_secret = self._curve
            sock.curve_serverkey = server_public.encode()
            sock.curve_publickey = client_public.encode()
            sock.curve_secretkey = client_secret.encode()
        return sock

    def _new_req(self) -> zmq.Socket:
        req = self._socket(zmq.REQ)
        req.connect(self._command_address)
        return req

    def recv_frames(self, timeout: float = 5.0) -> Optional[List[bytes]]:
        if not self.sub.poll(int(timeout * 1000)):
            return None
        return self.sub.recv_multipart()

    def wait_until_subscribed(self, timeout: float = 5.0) -> List[bytes]:
        """ZeroMQ slow joiner: nothing published before the SUB joined arrives; the
        first heartbeat proves it has joined."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self.recv_frames(max(0.0, deadline - time.monotonic()))
            if frames is not None and frames[0] == HEARTBEAT_TOPIC_FRAME:
                return frames
        raise AssertionError(f"no heartbeat within {timeout}s")

    def next_non_heartbeat(self, timeout: float = 5.0) -> List[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self.recv_frames(max(0.0, deadline - time.monotonic()))
            if frames is not None and frames[0] != HEARTBEAT_TOPIC_FRAME:
                return frames
        raise AssertionError(f"no event within {timeout}s")

    def collect_non_heartbeats(self, count: int, timeout: float = 5.0) -> List[List[bytes]]:
        return [self.next_non_heartbeat(timeout) for _ in range(count)]

    def send_raw(self, *frames: bytes) -> None:
        self.req.send_multipart(list(frames))

    def receive_reply(self, timeout: float = 5.0) -> dict:
        if not self.req.poll(int(timeout * 1000)):
            # A REQ socket that lost its reply cannot be reused.
            self.req.close(linger=0)
            self.req = self._new_req()
            raise AssertionError(f"no reply within {timeout}s")
        return json.loads(self.req.recv())

    def request(self, message: Any, timeout: float = 5.0) -> dict:
        self.send_raw(message if isinstance(message, bytes) else json.dumps(message).encode())
        return self.receive_reply(timeout)

    def close(self) -> None:
        self.sub.close(linger=0)
        self.req.close(linger=0)


def rpc_options(**overrides: Any) -> RpcOptions:
    """Options for a test service: free ports on loopback, fast heartbeat."""
    zmq_overrides = overrides.pop("zmq", {})
    base = RpcOptions(identifier="test-device", heartbeat_interval=FAST_HEARTBEAT, subscriber_port=0,
                      command_port=0, stop_flush_timeout=5.0)
    return dataclasses.replace(base, zmq=ZmqGatewayOptions(**zmq_overrides), **overrides)
