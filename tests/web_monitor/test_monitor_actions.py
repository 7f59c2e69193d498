"""POST actions: CSRF, confirmation for stop, results and errors shown to the user."""
from __future__ import annotations

from html import unescape

import pytest


def post(client, url, token, follow=False, **form):
    return client.post(url, data={"csrf_token": token, **form}, follow_redirects=follow)


def test_restart_changes_pids_and_flashes_the_result(client, fake_control, token):
    before = fake_control.pids("echo")
    response = post(client, "/services/echo/restart", token)
    assert response.status_code == 302 and response.headers["Location"] == "/services/echo"
    assert set(fake_control.pids("echo")).isdisjoint(before)
    html = client.get("/services/echo").get_data(as_text=True)
    assert "echo restarted (2 workers)" in html and "flash-ok" in html


def test_start_of_a_stopped_service(client, fake_control, token):
    html = post(client, "/services/device_api/start", token, follow=True).get_data(as_text=True)
    assert "device_api started with 1 workers" in html
    assert fake_control.services["device_api"]["status"] == "running"


def test_refused_action_is_shown_as_an_error(client, token):
    html = post(client, "/services/echo/start", token, follow=True).get_data(as_text=True)
    assert "echo is already running" in html and "flash-error" in html


def test_stop_needs_confirmation(client, fake_control, token):
    response = post(client, "/services/echo/stop", token)
    assert response.status_code == 200 and "Stop echo?" in response.get_data(as_text=True)
    assert fake_control.services["echo"]["status"] == "running"
    response = post(client, "/services/echo/stop", token, confirm="yes", next="/")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert fake_control.services["echo"]["status"] == "stopped"


def test_stop_without_confirmation_via_json_is_400(client, token):
    response = client.post("/services/echo/stop", data={"csrf_token": token},
                           headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "needs confirmation: send confirm=yes" in response.get_json()["error"]


@pytest.mark.parametrize("form, expected", [({"delta": "1"}, 3), ({"delta": "-1"}, 1), ({"n": "4"}, 4)])
def test_scale(client, fake_control, token, form, expected):
    post(client, "/services/echo/scale", token, **form)
    assert ("scale", ("echo", expected)) in fake_control.calls


def test_scale_outside_the_pool_bounds_shows_the_supervisors_refusal(client, fake_control, token):
    html = post(client, "/services/echo/scale", token, follow=True, n="9").get_data(as_text=True)
    assert "9 is outside min_proc_num..max_proc_num (2..4)" in html
    assert len(fake_control.pids("echo")) == 2


@pytest.mark.parametrize("form, message", [
    ({}, "exactly one of n"),
    ({"n": "2", "delta": "1"}, "exactly one of n"),
    ({"n": "two"}, "n must be a whole number (got 'two')"),
    ({"delta": "1.5"}, "delta must be a whole number"),
    ({"n": "-3"}, "the count must be between 0 and 1024"),
    ({"n": "100000"}, "the count must be between 0 and 1024"),
])
def test_scale_bad_parameters_are_400(client, fake_control, token, form, message):
    response = post(client, "/services/echo/scale", token, **form)
    assert response.status_code == 400
    assert message in unescape(response.get_data(as_text=True))
    assert not any(call[0] == "scale" for call in fake_control.calls)


def test_restart_one_worker(client, fake_control, token):
    before = fake_control.pids("echo")
    post(client, "/services/echo/workers/1/restart", token)
    after = fake_control.pids("echo")
    assert after[0] == before[0] and after[1] != before[1]
    assert ("restart_worker", ("echo", 1)) in fake_control.calls  # the supervisor's int id


def test_restart_unknown_worker_is_404(client, token):
    response = post(client, "/services/echo/workers/7/restart", token)
    assert response.status_code == 404
    assert "has no worker &#39;7&#39;. Current workers: 0, 1" in response.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/services/nope/start", "/services/nope/restart",
                                 "/services/nope/scale", "/services/nope/workers/0/restart"])
def test_actions_on_unknown_service_are_404(client, token, url):
    response = client.post(url, data={"csrf_token": token, "confirm": "yes", "n": "1"},
                           headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert "nope" in response.get_json()["error"]


def test_json_clients_get_ok_and_message(client, token):
    response = client.post("/services/echo/restart", headers={"Accept": "application/json",
                                                               "X-CSRF-Token": token})
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "message": "echo restarted (2 workers)"}
    refused = client.post("/services/echo/start", headers={"Accept": "application/json",
                                                           "X-CSRF-Token": token})
    assert refused.status_code == 409 and refused.get_json()["ok"] is False


@pytest.mark.parametrize("url", ["/services/echo/start", "/services/echo/restart",
                                 "/services/echo/stop", "/services/echo/scale",
                                 "/services/echo/workers/0/restart", "/logout"])
def test_post_without_csrf_token_is_rejected(client, fake_control, token, url):
    response = client.post(url, data={"confirm": "yes", "n": "3"})
    assert response.status_code == 400
    assert "CSRF check failed" in response.get_data(as_text=True)
    assert [c for c in fake_control.calls if c[0] != "status"] == []


def test_post_with_wrong_csrf_token_is_rejected(client, fake_control, token):
    response = client.post("/services/echo/restart", data={"csrf_token": token[:-2] + "xx"})
    assert response.status_code == 400
    assert ("restart", ("echo",)) not in fake_control.calls


def test_token_from_another_session_is_rejected(app, fake_control, token):
    other = app.test_client()  # its own cookie jar: a different browser
    response = other.post("/services/echo/restart", data={"csrf_token": token})
    assert response.status_code == 400
    assert ("restart", ("echo",)) not in fake_control.calls


@pytest.mark.parametrize("url", ["/services/echo/start", "/services/echo/restart",
                                 "/services/echo/scale", "/services/echo/workers/0/restart"])
def test_actions_are_not_reachable_by_get(client, url):
    response = client.get(url)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "javascript:alert(1)",
                                    "/\\evil.example"])
def test_redirect_after_action_stays_on_this_site(client, token, target):
    response = post(client, "/services/echo/restart", token, next=target)
    assert response.headers["Location"] == "/services/echo"


def test_unreachable_supervisor_during_action_is_503(client, fake_control, token):
    fake_control.unreachable = True
    response = post(client, "/services/echo/restart", token)
    assert response.status_code == 503
    assert "cannot reach the supervisor" in response.get_data(as_text=True)
