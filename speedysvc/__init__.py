"""speedysvc: Python services in pools of worker processes, called over shared memory or TCP."""
from .client import ClientMethodsBase, Event, ServiceClient, Subscription, connect
from .errors import (AmbiguousService, AuthenticationError, CallTimeout, EncodingError, InsecureSerialisationRefused,
                     MethodNotFound, PayloadTooLarge, ProtocolError, RemoteError, ServiceUnavailable,
                     SpeedysvcError, WorkerDied)
from .methods import (ServerMethodsBase, json_method, marshal_method, msgpack_method, pickle_method,
                      raw_method)
from .serve import serve
from .shm.shm_client import SHMClient
from .tcp.network_client import NetworkClient

__version__ = "2.0.0"

__all__ = [
    "ServerMethodsBase", "ClientMethodsBase", "connect", "serve", "SHMClient", "NetworkClient",
    "raw_method", "json_method", "msgpack_method", "pickle_method", "marshal_method",
    "Event", "Subscription", "ServiceClient",
    "SpeedysvcError", "ServiceUnavailable", "AmbiguousService", "CallTimeout", "WorkerDied", "ProtocolError",
    "AuthenticationError", "MethodNotFound", "InsecureSerialisationRefused", "PayloadTooLarge",
    "EncodingError", "RemoteError",
]
