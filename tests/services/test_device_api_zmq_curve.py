"""CURVE encryption with a client allow-list on the ZeroMQ gateway."""
from __future__ import annotations

import io

import pytest
import zmq.auth

from services.device_api import (
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    ApiOptions,
    CurveConfigurationError,
    CurveOptions,
    create_api_service,
)
from services.device_api import console
from services.device_api.curve_auth import generate_curve_keypair
from services.device_api.remote_client import ClientCurveKeys, CommandTimeout, ZmqDeviceClient

from device_api_peers import FAST_HEARTBEAT, rpc_options

# How long a refused client is watched for leaks; the allowed client in the same
# test hears several heartbeats in that time, so silence means refusal.
REFUSED_WATCH = FAST_HEARTBEAT * 5


@pytest.fixture
def keys():
    server_public, server_secret = generate_curve_keypair()
    allowed_public, allowed_secret = generate_curve_keypair()
    stranger_public, stranger_secret = generate_curve_keypair()
    return {
        "server": (server_public, server_secret),
        "allowed": (server_public, allowed_public, allowed_secret),
        "stranger": (server_public, stranger_public, stranger_secret),
    }


@pytest.fixture
def curve_service(make_service, keys):
    server_public, server_secret = keys["server"]
    service = make_service(zmq={"curve": CurveOptions(server_public, server_secret,
                                                      allowed_client_keys=(keys["allowed"][1],))})
    service.command_request_delegate = lambda request: ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)
    return service


def test_an_allowed_client_hears_events_and_sends_commands(curve_service, make_peer, keys):
    peer = make_peer(curve_service, curve=keys["allowed"])
    peer.wait_until_subscribed()
    assert peer.request({"command": 400, "nonce": 1})["result"] == 100


def test_unknown_and_plaintext_clients_are_refused(curve_service, make_peer, keys):
    allowed = make_peer(curve_service, curve=keys["allowed"])
    stranger = make_peer(curve_service, curve=keys["stranger"])
    plaintext = make_peer(curve_service)
    allowed.wait_until_subscribed()
    for refused in (stranger, plaintext):
        assert refused.recv_frames(timeout=REFUSED_WATCH) is None
    allowed.wait_until_subscribed(timeout=REFUSED_WATCH)  # the service was heartbeating meanwhile

    server_public, client_public, client_secret = keys["stranger"]
    with ZmqDeviceClient(subscriber_port=curve_service.subscriber_port, command_port=curve_service.command_port,
                         curve=ClientCurveKeys(server_public, client_public, client_secret),
                         timeout=REFUSED_WATCH) as client:
        with pytest.raises(CommandTimeout):
            client.send_command(400)


def test_invalid_curve_keys_make_start_raise(no_leaked_threads, keys):
    server_public, _ = keys["server"]
    service = create_api_service(ApiOptions(rpc=rpc_options(zmq={"curve": CurveOptions(
        server_public, "not-a-key", allowed_client_keys=(keys["allowed"][1],))})))
    with pytest.raises(CurveConfigurationError, match="server_secret_key"):
        service.start()


def test_curve_without_allowed_clients_is_refused(keys):
    server_public, server_secret = keys["server"]
    service = create_api_service(ApiOptions(rpc=rpc_options(zmq={"curve": CurveOptions(server_public, server_secret)})))
    with pytest.raises(CurveConfigurationError, match="allowed_client_keys"):
        service.start()


def test_the_console_authenticates_with_a_client_certificate(make_service, keys, tmp_path):
    _, secret_file = zmq.auth.create_certificates(str(tmp_path), "console")
    client_public, _ = zmq.auth.load_certificate(secret_file)
    server_public, server_secret = keys["server"]
    service = make_service(zmq={"curve": CurveOptions(server_public, server_secret,
                                                      allowed_client_keys=(client_public.decode(),))})
    service.command_request_delegate = lambda request: ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)
    out = io.StringIO()
    code = console.main(["--pub-port", str(service.subscriber_port), "--cmd-port", str(service.command_port),
                         f"--curve-server-key={server_public}", "--curve-client-certificate", secret_file,
                         "--send", "GET_STATUS"], stdout=out)
    assert code == 0 and "reply SUCCESS" in out.getvalue()
