"""TCP over TLS (stdlib ssl): tcps:// addresses, server verification by default, mutual TLS.
Certificates come from trustme, made for each test module."""
from __future__ import annotations

import ssl

import pytest
import trustme

from speedysvc import AuthenticationError, NetworkClient, ServiceUnavailable, connect, serve
from support_services import Echo

SECRET = "over tls"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("caller@example.test")
    d = tmp_path_factory.mktemp("pki")
    paths = {"cert": d / "server.pem", "key": d / "server.key", "ca": d / "ca.pem"}
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(paths["cert"]), append=True)
    server.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    return ca, client, paths


def trusting(ca, client_cert=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client_cert is not None:
        client_cert.configure_cert(ctx)
    return ctx


def test_tcps_calls_subscriptions_and_secret_work_over_tls(scope, pki):
    ca, _, paths = pki
    options = {"tls_cert": str(paths["cert"]), "tls_key": str(paths["key"])}
    with serve(Echo, scope=scope, tcp="127.0.0.1:0", secret=SECRET, tcp_options=options) as svc:
        assert svc.tcp_address.startswith("tcps://127.0.0.1:")
        with connect(Echo, svc.tcp_address, secret=SECRET, tls=trusting(ca)) as c:
            assert c.echo("private") == "private!"
            payload = b"x" * (3 * 1024 * 1024)  # several TLS records each way
            assert c.echo_raw(payload) == payload
            sub = c.subscribe(["t"])
            c.publish_many("t", 3)
            got = [sub.get(timeout=10).payload["i"] for _ in range(3)]
            sub.close()
            assert got == [0, 1, 2]


def test_the_server_certificate_is_verified_by_default(scope, pki):
    _, _, paths = pki
    options = {"tls_cert": str(paths["cert"]), "tls_key": str(paths["key"])}
    with serve(Echo, scope=scope, tcp="127.0.0.1:0", tcp_options=options) as svc:
        with pytest.raises(AuthenticationError, match="not trusted"):
            connect(Echo, svc.tcp_address)  # tcps:// with the system's CAs, which do not know it
        host, port = svc.tcp_address.split("://")[1].rsplit(":", 1)
        with pytest.raises(AuthenticationError, match="not trusted"):
            NetworkClient(Echo, host, int(port), tls=True)


def test_mutual_tls_refuses_a_client_without_a_certificate(scope, pki):
    ca, client_cert, paths = pki
    options = {"tls_cert": str(paths["cert"]), "tls_key": str(paths["key"]), "tls_client_ca": str(paths["ca"])}
    with serve(Echo, scope=scope, tcp="127.0.0.1:0", tcp_options=options) as svc:
        with connect(Echo, svc.tcp_address, tls=trusting(ca, client_cert)) as c:
            assert c.echo("known caller") == "known caller!"
        with pytest.raises(ServiceUnavailable, match="certificate required"):  # the TLS alert, named
            connect(Echo, svc.tcp_address, tls=trusting(ca))


def test_unreadable_certificate_is_a_clear_error_at_start(scope, tmp_path):
    with pytest.raises(OSError, match="cannot serve TLS.*missing.pem"):
        serve(Echo, scope=scope, tcp="127.0.0.1:0", tcp_options={"tls_cert": str(tmp_path / "missing.pem")})
