"""Fixtures for the device API tests. Everything opened here is closed at teardown."""
from __future__ import annotations

import threading
from typing import Any, List, Optional

import pytest
import zmq

from services.device_api import ApiOptions, RpcService, create_api_service

from device_api_peers import ZmqPeer, rpc_options, wait_until


@pytest.fixture
def zmq_context():
    context = zmq.Context()
    yield context
    # Tests close their sockets; destroy() also closes any a failing test left open.
    context.destroy(linger=0)


@pytest.fixture
def make_service():
    """Factory: make_service(**RpcOptions overrides, start=True) -> RpcService, stopped at teardown."""
    services: List[RpcService] = []

    def make(start: bool = True, **overrides: Any) -> RpcService:
        service = create_api_service(ApiOptions(rpc=rpc_options(**overrides)))
        services.append(service)
        if start:
            service.start()
        return service

    yield make
    for service in services:
        service.stop(timeout=2.0)


@pytest.fixture
def make_peer(zmq_context):
    """Factory: make_peer(service, curve=None) -> ZmqPeer connected to the service's gateway."""
    peers: List[ZmqPeer] = []

    def make(service: RpcService, curve: Optional[tuple] = None) -> ZmqPeer:
        peer = ZmqPeer(zmq_context, service.subscriber_port, service.command_port, curve)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


@pytest.fixture
def no_leaked_threads():
    """Asserts the test left no device API thread running."""
    before = set(threading.enumerate())
    yield
    def leaked():
        return [t for t in threading.enumerate()
                if t not in before and t.name.startswith("device-api") and t.is_alive()]
    wait_until(lambda: not leaked(), timeout=5.0, message="device API threads to end")
