"""Exceptions raised by the device API."""


class DeviceApiError(Exception):
    """Base class of every error raised by services.device_api."""


class EventSerialisationError(DeviceApiError, ValueError):
    """An event (or command result) cannot be encoded as JSON; it was not queued.

    Raised in the caller's thread so the sender learns about it, instead of the
    publishing thread dying on it as the ZeroMQ original did.
    """


class MalformedCommandRequest(DeviceApiError, ValueError):
    """A command request from a remote peer is not a valid 0.12 request."""

    def __init__(self, message: str, nonce: int = 0) -> None:
        super().__init__(message)
        # Best-effort nonce so the peer can still correlate the error reply.
        self.nonce = nonce


class TransportBindError(DeviceApiError, OSError):
    """A transport could not bind its address; start() raises this."""


class ServiceStateError(DeviceApiError, RuntimeError):
    """start() on a service that is running or stopped (a stopped service cannot restart)."""


class CurveConfigurationError(DeviceApiError, ValueError):
    """CURVE options are incomplete or the keys are not valid Z85 keys."""


class InvalidApiOptions(DeviceApiError, ValueError):
    """An option value is out of range; the message names the option and the value."""
