"""The production control client (LazyControl over speedysvc.connect) against a service that
speaks the control contract over real shared memory and TCP, and how its errors map to HTTP."""
from __future__ import annotations

import pytest
from monitor_control_service import FakeControlService
from monitor_fakes import FakeControl
from monitor_support import csrf_from

import speedysvc
from web_monitor import create_app
from web_monitor.control import ControlCallError, LazyControl, classify, connect_control


@pytest.fixture
def served_fake(scope):
    """`scope` (tests/conftest.py) checks that no shared memory of it is left afterwards."""
    fake = FakeControl()
    with speedysvc.serve(FakeControlService(fake), workers=1, in_process=True, scope=scope,
                         tcp="127.0.0.1:0") as running:
        yield fake, running


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_monitor_pages_over_a_real_control_client(served_fake, transport):
    fake, running = served_fake
    control = (connect_control(scope=running.scope) if transport == "shm"
               else connect_control(address=running.tcp_address))
    try:
        client = create_app(control, host="127.0.0.1").test_client()
        assert client.get("/").status_code == 200
        charts = client.get("/api/services/echo/charts?window=5m").get_json()
        # Worker ids arrive as msgpack map keys; the charts still find every worker.
        names = [t["name"] for t in charts["figures"]["memory"]["data"]]
        assert "worker 0 RSS" in names and "worker 1 RSS" in names
        fake.emit("echo", "over the wire")
        logs = client.get("/api/services/echo/logs?text=wire").get_json()
        assert [e["message"] for e in logs["entries"]] == ["over the wire"]
        before = fake.pids("echo")
        token = csrf_from(client.get("/").get_data(as_text=True))
        assert client.post("/services/echo/restart", data={"csrf_token": token}).status_code == 302
        assert set(fake.pids("echo")).isdisjoint(before)
        missing = client.get("/api/services/nope/logs")
        assert missing.status_code == 404 and "nope" in missing.get_json()["error"]
    finally:
        control.close()


def test_unreachable_control_is_503_and_reconnects_later(scope):
    control = LazyControl(f"shm://{scope}", connect_timeout=0.5)
    client = create_app(control, host="127.0.0.1").test_client()
    response = client.get("/health")
    assert response.status_code == 503 and "Is the supervisor running?" in response.get_json()["error"]
    fake = FakeControl({"a": {}})
    with speedysvc.serve(FakeControlService(fake), workers=1, in_process=True, scope=scope):
        assert client.get("/health").status_code == 200
        control.close()


@pytest.mark.parametrize("exc, status", [
    (KeyError("no service 'x'"), 404),
    (type("UnknownService", (Exception,), {})("x"), 404),
    (speedysvc.RemoteError("speedysvc.supervisor.control_service.UnknownService", "x"), 404),
    (speedysvc.ServiceUnavailable("gone"), 503),
    (speedysvc.CallTimeout("slow"), 503),
    (ConnectionRefusedError(), 503),
    (ValueError("n must be positive"), 400),
    (RuntimeError("boom"), 502),
])
def test_error_classification(exc, status):
    error = classify(exc, "Doing it")
    assert isinstance(error, ControlCallError) and error.http_status == status
    assert error.message.startswith("Doing it")
