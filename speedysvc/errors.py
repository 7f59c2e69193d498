"""Exception classes. Transport problems each have their own class so callers can tell
"the service is not there" from "the call took too long" from "the worker died under me"."""


class SpeedysvcError(Exception):
    """Base class of every error speedysvc raises itself."""


class ServiceUnavailable(SpeedysvcError):
    """No worker of the service is running (or it could not be reached in time)."""


class AmbiguousService(ServiceUnavailable):
    """Several running supervisors serve the service and the address names no scope."""


class CallTimeout(SpeedysvcError):
    """The call did not complete within its timeout. It may still run to completion remotely."""


class WorkerDied(SpeedysvcError):
    """The worker handling this call exited before replying. The call is not re-run."""


class ProtocolError(SpeedysvcError):
    """A frame or message was malformed, of an unknown version, or larger than allowed."""


class AuthenticationError(SpeedysvcError):
    """The shared-secret handshake failed."""


class MethodNotFound(SpeedysvcError, AttributeError):
    """The service has no method of that name."""


class InsecureSerialisationRefused(SpeedysvcError):
    """pickle/marshal methods are refused over the network unless the service allows them."""


class PayloadTooLarge(ProtocolError):
    """A request, reply or event is larger than the configured maximum."""


class EncodingError(SpeedysvcError, TypeError):
    """Arguments or a result could not be encoded with the method's encoder."""


class RemoteError(SpeedysvcError):
    """A remote exception whose type could not be re-created locally."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = ""):
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
