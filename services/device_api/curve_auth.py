"""CURVE encryption and a client-key allow-list for the ZeroMQ gateway, enforced by
pyzmq's ThreadAuthenticator (ZAP) running in the gateway's context."""
from __future__ import annotations

from typing import Iterable, Tuple

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from .errors import CurveConfigurationError
from .options import CurveOptions


def generate_curve_keypair() -> Tuple[str, str]:
    """(public, secret) Z85 keys for a server or a client."""
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def validate_curve_options(curve: CurveOptions) -> None:
    if not zmq.has("curve"):
        raise CurveConfigurationError("this libzmq was built without CURVE support; disable the gateway's curve option")
    _check_key("server_public_key", curve.server_public_key)
    _check_key("server_secret_key", curve.server_secret_key)
    if not curve.allowed_client_keys:
        raise CurveConfigurationError("CURVE is enabled but allowed_client_keys is empty: no client could connect")
    for i, key in enumerate(curve.allowed_client_keys):
        _check_key(f"allowed_client_keys[{i}]", key)


class _AllowList:
    """ZAP credentials provider: accepts exactly the listed client public keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = frozenset(k.encode("ascii") for k in keys)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self._keys


def start_authenticator(context: zmq.Context, curve: CurveOptions) -> ThreadAuthenticator:
    """Must run before the server sockets bind, so no handshake escapes authentication."""
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback(domain="*", credentials_provider=_AllowList(curve.allowed_client_keys))
    return authenticator


def make_curve_server(socket: zmq.Socket, curve: CurveOptions) -> None:
    socket.curve_secretkey = curve.server_secret_key.encode("ascii")
    socket.curve_publickey = curve.server_public_key.encode("ascii")
    socket.curve_server = True


def make_curve_client(socket: zmq.Socket, server_public_key: str, client_public_key: str,
                      client_secret_key: str) -> None:
    socket.curve_serverkey = server_public_key.encode("ascii")
    socket.curve_publickey = client_public_key.encode("ascii")
    socket.curve_secretkey = client_secret_key.encode("ascii")


def _check_key(name: str, key: str) -> None:
    try:
        valid = isinstance(key, str) and len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise CurveConfigurationError(f"CURVE {name} must be a 40-character Z85 key (zmq.curve_keypair()), got {key!r}")
