"""JSON endpoints: status, one service, charts over windows, sparklines, log queries."""
from __future__ import annotations

import time

import pytest


def test_status_json_has_raw_and_formatted_values(client):
    data = client.get("/api/status").get_json()
    names = [s["name"] for s in data["services"]]
    assert names == ["echo", "aimm_engine", "device_api"]
    echo = data["services"][0]
    assert echo["raw"]["current"] == 2 and echo["cells"]["workers"] == "2 / 2–4"
    assert echo["status_class"] == "running"
    assert data["supervisor"]["scope"] == "fake"


def test_one_service_json(client, fake_control):
    data = client.get("/api/services/echo").get_json()
    assert [w["pid"] for w in data["workers"]] == [str(p) for p in fake_control.pids("echo")]


def test_unknown_service_json_is_404(client):
    response = client.get("/api/services/nope")
    assert response.status_code == 404
    assert "Unknown service 'nope'" in response.get_json()["error"]


@pytest.mark.parametrize("window, seconds", [("5m", 300), ("1h", 3600), ("24h", 86400), ("all", None)])
def test_charts_ask_for_the_window(client, fake_control, window, seconds):
    before = time.time()
    data = client.get(f"/api/services/echo/charts?window={window}").get_json()
    name, (svc, since, until) = fake_control.calls[-1]
    assert (name, svc, until) == ("metrics", "echo", None)
    if seconds is None:
        assert since is None
    else:
        assert before - seconds - 1 <= since <= time.time() - seconds
    assert set(data["figures"]) == {"memory", "cpu", "calls", "latency"}
    memory = data["figures"]["memory"]
    assert memory["data"][0]["name"] == "total RSS" and len(memory["data"][0]["y"]) > 0
    assert [m["name"] for m in data["methods"]] == ["echo", "slow_sum"]
    assert data["points"] > 0


def test_charts_for_a_service_without_samples_say_so(client, fake_control):
    fake_control.history_s = 0
    fake_control.started_at = time.time() + 10  # first sample is in the future
    data = client.get("/api/services/echo/charts?window=5m").get_json()
    assert data["points"] == 0
    assert "No samples" in data["figures"]["memory"]["layout"]["annotations"][0]["text"]


def test_charts_bad_window_is_400(client):
    response = client.get("/api/services/echo/charts?window=forever")
    assert response.status_code == 400
    assert "window must be one of 5m, 1h, 24h, all (got 'forever')" in response.get_json()["error"]


def test_charts_unknown_service_is_404(client):
    response = client.get("/api/services/nope/charts")
    assert response.status_code == 404
    assert "nope" in response.get_json()["error"]


def test_sparklines_for_every_service(client):
    figures = client.get("/api/sparklines").get_json()["figures"]
    assert set(figures) == {"echo", "aimm_engine", "device_api"}
    assert len(figures["echo"]["data"][0]["y"]) > 0
    assert figures["echo"]["layout"]["height"] == 36


def test_logs_tail_then_follow_with_cursor(client, fake_control):
    fake_control.emit("echo", "hello from stdout", stream="stdout")
    fake_control.emit("echo", "oops on stderr", stream="stderr", level="error")
    first = client.get("/api/services/echo/logs?lines=2").get_json()
    assert [e["message"] for e in first["entries"]] == ["hello from stdout", "oops on stderr"]
    assert [e["stream"] for e in first["entries"]] == ["stdout", "stderr"]
    assert all(e["time"] for e in first["entries"])
    fake_control.emit("echo", "later line")
    more = client.get(f"/api/services/echo/logs?after={first['cursor']}").get_json()
    assert [e["message"] for e in more["entries"]] == ["later line"]
    assert more["cursor"] > first["cursor"]


def test_logs_search_and_level_are_passed_on(client, fake_control):
    fake_control.emit("echo", "needle here", level="warning")
    fake_control.emit("echo", "needle but debug", level="debug")
    data = client.get("/api/services/echo/logs?text=NEEDLE&level=Warning").get_json()
    assert [e["message"] for e in data["entries"]] == ["needle here"]
    assert fake_control.calls[-1] == ("logs", ("echo", 200, "NEEDLE", "warning", None))


@pytest.mark.parametrize("query, message", [
    ("lines=abc", "lines must be a whole number"),
    ("lines=0", "lines must be between 1 and 5000"),
    ("lines=999999", "lines must be between 1 and 5000"),
    ("after=-1", "after must be at least 0"),
    ("level=loud", "level must be one of debug, info, warning, error, critical"),
    ("text=" + "x" * 201, "text must be at most 200 characters"),
])
def test_logs_bad_parameters_are_400(client, fake_control, query, message):
    response = client.get(f"/api/services/echo/logs?{query}")
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert not any(call[0] == "logs" for call in fake_control.calls)


def test_logs_unknown_service_is_404(client):
    response = client.get("/api/services/nope/logs")
    assert response.status_code == 404
    assert "no service named 'nope'" in response.get_json()["error"]


def test_api_when_supervisor_unreachable_is_503(client, fake_control):
    fake_control.unreachable = True
    response = client.get("/api/status")
    assert response.status_code == 503
    assert "Is the supervisor running?" in response.get_json()["error"]
