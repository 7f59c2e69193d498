"""What a new subscriber needs before the next event: the last heartbeat, the last
status and emergency events, and the last sequence number of each topic."""
from __future__ import annotations

import threading
from typing import Dict, Optional

from .events import ApiEventKind
from .topics import ApiTopic
from .transport import OutboundMessage
from .wire_format import PROTOCOL_VERSION


def _entry(message: OutboundMessage) -> dict:
    return {"topic": message.topic, "seq": message.seq, "message": message.payload}


class SnapshotRecorder:
    def __init__(self, identifier: str) -> None:
        self._identifier = identifier
        self._lock = threading.Lock()
        self._sequences: Dict[int, int] = {}
        self._heartbeat: Optional[dict] = None
        self._status: Optional[dict] = None
        self._emergency: Optional[dict] = None

    def record(self, message: OutboundMessage, kind: Optional[int]) -> None:
        with self._lock:
            self._sequences[message.topic] = message.seq
            if message.topic == ApiTopic.HEARTBEAT:
                self._heartbeat = _entry(message)
            elif message.topic == ApiTopic.EMERGENCY:
                self._emergency = _entry(message)
            elif message.topic == ApiTopic.EVENT and kind == ApiEventKind.systemStatus:
                self._status = _entry(message)

    def snapshot(self) -> dict:
        """JSON- and msgpack-compatible (string keys only)."""
        with self._lock:
            return {
                "identifier": self._identifier,
                "version": PROTOCOL_VERSION,
                "sequences": {str(topic): seq for topic, seq in sorted(self._sequences.items())},
                "heartbeat": self._heartbeat,
                "status": self._status,
                "emergency": self._emergency,
            }
