"""A remote peer of the device API over ZeroMQ, as 0.12 management services are:
SUB to the event port, REQ to the command port. Used by the console; works against
this gateway and against an original auto-trainer-api device alike."""
from __future__ import annotations

import itertools
import json
import random
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import zmq

from .curve_auth import make_curve_client
from .errors import DeviceApiError
from .topics import topic_frame, topic_from_frame


class CommandTimeout(DeviceApiError, TimeoutError):
    """The device did not answer a command within the timeout (is it running? right port?)."""


@dataclass(frozen=True)
class ReceivedMessage:
    topic: int
    body: Any  # the decoded JSON
    seq: Optional[int] = None  # present when the gateway sends sequence frames


@dataclass(frozen=True)
class ClientCurveKeys:
    server_public_key: str
    client_public_key: str
    client_secret_key: str


class ZmqDeviceClient:
    def __init__(
        self,
        host: str = "127.0.0.1",
        subscriber_port: int = 5556,
        command_port: int = 5557,
        topics: Sequence[int] = (),
        curve: Optional[ClientCurveKeys] = None,
        timeout: float = 5.0,
    ) -> None:
        self._command_address = f"tcp://{host}:{command_port}"
        self._curve = curve
        self._timeout = timeout
        self._context = zmq.Context()
        self._subscriber = self._socket(zmq.SUB)
        for topic in topics or (None,):
            self._subscriber.setsockopt(zmq.SUBSCRIBE, b"" if topic is None else topic_frame(topic))
        self._subscriber.connect(f"tcp://{host}:{subscriber_port}")
        self._requester: Optional[zmq.Socket] = None
        self._request_lock = threading.Lock()
        # Nonces only need to be unique per device among outstanding commands.
        self._nonces = itertools.count(random.randrange(1, 1 << 30))

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._context.socket(kind)
        sock.linger = 0
        if self._curve is not None:
            make_curve_client(sock, self._curve.server_public_key, self._curve.client_public_key,
                              self._curve.client_secret_key)
        return sock

    def next_nonce(self) -> int:
        return next(self._nonces)

    def receive(self, timeout: Optional[float] = None) -> Optional[ReceivedMessage]:
        """The next published message, or None if none arrived within `timeout`."""
        wait = self._timeout if timeout is None else timeout
        if not self._subscriber.poll(int(wait * 1000)):
            return None
        frames = self._subscriber.recv_multipart()
        seq = int.from_bytes(frames[2], "little") if len(frames) > 2 else None
        return ReceivedMessage(topic_from_frame(frames[0]), json.loads(frames[1]), seq)

    def request(self, message: dict, timeout: Optional[float] = None) -> dict:
        """Send one JSON request and wait for its reply (the REQ socket is reset on timeout)."""
        wait = self._timeout if timeout is None else timeout
        with self._request_lock:
            if self._requester is None:
                self._requester = self._socket(zmq.REQ)
                self._requester.connect(self._command_address)
            self._requester.send(json.dumps(message).encode("utf8"))
            if not self._requester.poll(int(wait * 1000)):
                # A REQ socket that missed its reply cannot send again: start over.
                self._requester.close(linger=0)
                self._requester = None
                raise CommandTimeout(f"no reply from {self._command_address} within {wait:.1f}s")
            return json.loads(self._requester.recv())

    def send_command(self, command: int, data: Any = None, custom_command: int = -1,
                     nonce: Optional[int] = None, timeout: Optional[float] = None) -> dict:
        request = {
            "command": int(command),
            "customCommand": int(custom_command),
            "nonce": self.next_nonce() if nonce is None else nonce,
            "data": data,
        }
        return self.request(request, timeout)

    def snapshot(self, timeout: Optional[float] = None) -> dict:
        return self.request({"request": "snapshot"}, timeout)

    def command_result(self, nonce: int, timeout: Optional[float] = None) -> dict:
        return self.request({"request": "commandResult", "nonce": int(nonce)}, timeout)

    def close(self) -> None:
        with self._request_lock:
            if self._requester is not None:
                self._requester.close(linger=0)
                self._requester = None
        self._subscriber.close(linger=0)
        self._context.term()

    def __enter__(self) -> "ZmqDeviceClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
