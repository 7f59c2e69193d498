"""Login: refused off-loopback without a password, required whenever one is configured."""
from __future__ import annotations

import base64

import pytest
from monitor_support import PASSWORD, csrf_from

from web_monitor import MonitorConfigError, MonitorSettings, create_app, is_loopback
from web_monitor.auth import LoginThrottle


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode()}


def login(client, password: str = PASSWORD, next_url: str = "/"):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"csrf_token": token, "password": password, "next": next_url})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "monitor.example.com"])
def test_refuses_to_start_off_loopback_without_password(fake_control, host):
    with pytest.raises(MonitorConfigError, match="without a password.*python -m web_monitor.passwords"):
        create_app(fake_control, host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "localhost", "::1", "[::1]"])
def test_loopback_may_run_open(fake_control, host):
    assert create_app(fake_control, host=host).test_client().get("/").status_code == 200


def test_a_plain_password_in_place_of_a_hash_is_refused(fake_control):
    with pytest.raises(MonitorConfigError, match="not a salted hash"):
        create_app(fake_control, host="0.0.0.0", password_hash="hunter2")


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.org")


def test_settings_from_section_and_environment(password_hash):
    assert MonitorSettings.from_section({}, environ={}) == MonitorSettings("127.0.0.1", 5155)
    settings = MonitorSettings.from_section({"host": "0.0.0.0", "port": "8080"},
                                            environ={"SPEEDYSVC_MONITOR_PASSWORD_HASH": password_hash})
    assert settings.password_hash == password_hash and settings.port == 8080
    with pytest.raises(MonitorConfigError, match="Refusing to serve"):
        MonitorSettings.from_section({"host": "0.0.0.0"}, environ={})
    with pytest.raises(MonitorConfigError, match="port: expected a port number 0-65535, found 'http'"):
        MonitorSettings.from_section({"port": "http"}, environ={})


@pytest.mark.parametrize("url", ["/", "/services/echo", "/services/echo/stop"])
def test_pages_redirect_to_login(auth_client, url):
    response = auth_client.get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("url", ["/api/status", "/api/services/echo/logs", "/health", "/metrics"])
def test_machine_endpoints_answer_401(auth_client, url):
    response = auth_client.get(url)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "Login required" in response.get_json()["error"]


def test_actions_need_login(auth_client, fake_control):
    response = auth_client.post("/services/echo/restart", data={})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert ("restart", ("echo",)) not in fake_control.calls


def test_login_then_use_then_logout(auth_client, fake_control):
    response = login(auth_client, next_url="/services/echo")
    assert response.status_code == 302 and response.headers["Location"] == "/services/echo"
    html = auth_client.get("/services/echo").get_data(as_text=True)
    assert "Log out" in html
    token = csrf_from(html)
    assert auth_client.post("/services/echo/restart", data={"csrf_token": token}).status_code == 302
    assert ("restart", ("echo",)) in fake_control.calls
    auth_client.post("/logout", data={"csrf_token": token})
    assert auth_client.get("/").status_code == 302


def test_wrong_password_is_401_and_stays_logged_out(auth_client):
    response = login(auth_client, password="wrong")
    assert response.status_code == 401 and "Wrong password" in response.get_data(as_text=True)
    assert auth_client.get("/").status_code == 302


def test_login_form_needs_csrf_token(auth_client):
    response = auth_client.post("/login", data={"password": PASSWORD})
    assert response.status_code == 400
    assert auth_client.get("/").status_code == 302


def test_csrf_token_changes_at_login(auth_client):
    before = csrf_from(auth_client.get("/login").get_data(as_text=True))
    login(auth_client)
    after = csrf_from(auth_client.get("/").get_data(as_text=True))
    assert before != after


def test_login_does_not_redirect_off_site(auth_client):
    response = login(auth_client, next_url="https://evil.example/")
    assert response.headers["Location"] == "/"


def test_repeated_failures_are_throttled(auth_client):
    for _ in range(5):
        assert login(auth_client, password="wrong").status_code == 401
    response = login(auth_client)  # even the right password waits out the lock
    assert response.status_code == 429
    assert "Too many failed attempts" in response.get_data(as_text=True)


def test_throttle_forgets_old_failures():
    now = [1000.0]
    throttle = LoginThrottle(limit=2, window=60, clock=lambda: now[0])
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(60)
    assert throttle.retry_after("b") == 0
    now[0] += 61
    assert throttle.retry_after("a") == 0


def test_basic_auth_for_scrapers(auth_client):
    assert auth_client.get("/metrics", headers=basic(PASSWORD)).status_code == 200
    assert auth_client.get("/health", headers=basic(PASSWORD)).status_code == 503  # device_api failed
    assert auth_client.get("/metrics", headers=basic("wrong")).status_code == 401


def test_basic_auth_does_not_bypass_csrf(auth_client, fake_control):
    response = auth_client.post("/services/echo/restart", headers=basic(PASSWORD))
    assert response.status_code in (302, 400)
    assert ("restart", ("echo",)) not in fake_control.calls


def test_loopback_with_a_password_still_requires_login(fake_control, password_hash):
    client = create_app(fake_control, host="127.0.0.1", password_hash=password_hash).test_client()
    assert client.get("/").status_code == 302
    assert login(client).status_code == 302
    assert client.get("/").status_code == 200


def test_static_files_and_login_page_are_public(auth_client):
    assert auth_client.get("/login").status_code == 200
    assert auth_client.get("/static/monitor.css").status_code == 200
    assert auth_client.get("/static-lib/plotly.min.js").status_code == 200


@pytest.mark.parametrize("host", ["localhost", "localhost:5155", "127.0.0.1:5155", "[::1]:5155",
                                  "app.localhost:5155"])
def test_open_monitor_answers_loopback_host_names(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5155", "192.168.1.9:5155",
                                  "127.0.0.1.evil.example"])
def test_open_monitor_refuses_other_host_names_against_dns_rebinding(client, fake_control, token, host):
    response = client.post("/services/echo/restart", data={"csrf_token": token}, headers={"Host": host})
    assert response.status_code == 400
    assert "only answers requests addressed to localhost" in response.get_data(as_text=True)
    assert ("restart", ("echo",)) not in fake_control.calls
    assert client.get("/api/status", headers={"Host": host}).status_code == 400


def test_monitor_with_password_answers_any_host_name(auth_client):
    response = auth_client.get("/login", headers={"Host": "monitor.example.com:5155"})
    assert response.status_code == 200


def test_throttle_keeps_no_entry_for_addresses_without_failures():
    throttle = LoginThrottle(limit=2, window=60)
    for i in range(100):
        throttle.retry_after(f"10.0.0.{i}")
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle._failures == {}
