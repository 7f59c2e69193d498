"""Topics of published messages; the value is the 4-byte little-endian prefix on the wire."""
from enum import IntEnum


class ApiTopic(IntEnum):
    ANY = 0
    HEARTBEAT = 1001
    EMERGENCY = 2001
    EVENT = 4001
    PROPERTY_CHANGE = 5001
    COMMAND_RESULT = 6001


def topic_frame(topic: int) -> bytes:
    """The first frame of a published ZeroMQ message for `topic`."""
    return int(topic).to_bytes(4, "little", signed=False)


def topic_from_frame(frame: bytes) -> int:
    return int.from_bytes(frame[:4], "little", signed=False)
