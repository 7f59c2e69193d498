"""HTML pages: overview, service page, stop confirmation, errors and response headers."""
from __future__ import annotations

import re


def test_overview_lists_every_service_with_its_numbers(client, fake_control):
    html = client.get("/").get_data(as_text=True)
    for name in ("echo", "aimm_engine", "device_api"):
        assert f'data-service="{name}"' in html
        assert f'href="/services/{name}"' in html
    assert "2 / 2–4" in html                      # echo: current / min–max workers
    assert "ImportError: no module named" in html  # device_api's last error is shown
    assert 'badge-failed' in html
    assert "MiB" in html and "%" in html and "/s" in html


def test_overview_has_actions_for_each_service(client):
    html = client.get("/").get_data(as_text=True)
    assert html.count('data-action="restart"') == 3
    # Stop goes through a confirmation page, never a direct POST from the overview.
    assert 'action="/services/echo/stop" method' not in html
    assert re.search(r'<form method="get" action="/services/echo/stop"', html)


def test_overview_with_no_services(fake_control, app):
    fake_control.services.clear()
    html = app.test_client().get("/").get_data(as_text=True)
    assert "runs no services" in html


def test_service_page_shows_workers_and_chart_slots(client, fake_control):
    response = client.get("/services/echo")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for pid in fake_control.pids("echo"):
        assert f">{pid}<" in html
    for chart in ("memory", "cpu", "calls", "latency"):
        assert f'data-chart="{chart}"' in html
    assert 'data-window="24h"' in html
    assert 'id="log"' in html and 'id="log-level"' in html


def test_service_page_accepts_each_window(client):
    for window in ("5m", "1h", "24h", "all"):
        html = client.get(f"/services/echo?window={window}").get_data(as_text=True)
        assert f'data-window="{window}" class="active"' in html


def test_unknown_service_page_is_404_naming_known_services(client):
    response = client.get("/services/nope")
    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "Unknown service &#39;nope&#39;" in html
    assert "aimm_engine, device_api, echo" in html


def test_bad_window_is_400_listing_valid_windows(client):
    response = client.get("/services/echo?window=2h")
    assert response.status_code == 400
    assert "window must be one of 5m, 1h, 24h, all" in response.get_data(as_text=True)


def test_stop_confirmation_page_posts_with_confirm(client, fake_control):
    response = client.get("/services/echo/stop")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Stop echo?" in html
    assert 'name="confirm" value="yes"' in html and 'method="post"' in html
    assert ("stop", ("echo",)) not in fake_control.calls


def test_unknown_page_is_404_with_a_way_back(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "There is no page at /no/such/page" in response.get_data(as_text=True)


def test_unreachable_supervisor_is_503_with_explanation(client, fake_control):
    fake_control.unreachable = True
    response = client.get("/")
    assert response.status_code == 503
    assert "cannot reach the supervisor" in response.get_data(as_text=True)


def test_security_headers(client):
    response = client.get("/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_pages_load_nothing_from_other_sites(client):
    for url in ("/", "/services/echo", "/services/echo/stop"):
        html = client.get(url).get_data(as_text=True)
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert ref.startswith(("/", "?")), f"{url} refers to {ref}"
        assert "<script>" not in html and " on" + "click=" not in html  # CSP forbids inline script


# Each endpoint and the test module that exercises it; a new route must be added here (and tested).
TESTED_ENDPOINTS = {
    "pages.overview": "test_monitor_pages", "pages.service": "test_monitor_pages",
    "pages.confirm_stop": "test_monitor_pages", "actions.start": "test_monitor_actions",
    "actions.stop": "test_monitor_actions", "actions.restart": "test_monitor_actions",
    "actions.scale": "test_monitor_actions", "actions.restart_worker": "test_monitor_actions",
    "auth.login": "test_monitor_auth", "auth.logout": "test_monitor_auth",
    "api.status": "test_monitor_api", "api.service": "test_monitor_api",
    "api.sparklines": "test_monitor_api", "api.charts": "test_monitor_api",
    "api.logs": "test_monitor_api", "probes.health": "test_monitor_probes",
    "probes.metrics": "test_monitor_probes", "static_lib.plotly_js": "test_monitor_static",
    "static": "test_monitor_static",
}


def test_every_route_has_tests(app):
    assert {rule.endpoint for rule in app.url_map.iter_rules()} == set(TESTED_ENDPOINTS)


def test_stop_confirmation_counts_workers_in_plain_english(client, fake_control):
    fake_control._svc("echo")["min"] = 1  # the fake's echo keeps 2 workers at least
    fake_control.scale("echo", 1)
    one = client.get("/services/echo/stop").get_data(as_text=True)
    assert "The worker process of <b>echo</b>" in one and "All 1 worker" not in one
    fake_control.scale("echo", 3)
    three = client.get("/services/echo/stop").get_data(as_text=True)
    assert "All 3 worker processes of <b>echo</b>" in three


def test_a_service_note_is_shown_on_the_overview_and_its_page(fake_control, app):
    """A service's own note (an AIMM service's Hat connection) next to its name."""
    fake_control.services["aimm_engine"]["note"] = "hat: standby: aimm-1 is the active one"
    client = app.test_client()
    for page in ("/", "/services/aimm_engine"):
        html = client.get(page).get_data(as_text=True)
        assert re.search(r'data-cell="note"\s*>hat: standby: aimm-1 is the active one<', html)
    assert client.get("/").get_data(as_text=True).count('data-cell="note" hidden') == 2
