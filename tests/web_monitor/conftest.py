"""Fixtures for the web monitor tests: a fake control object (the tests here are about the web
layer), Flask test clients, a live server in a thread, and a headless Chromium via Playwright."""
from __future__ import annotations

import os
from typing import Iterator

import pytest
from werkzeug.security import generate_password_hash

from monitor_fakes import FakeControl
from monitor_support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, csrf_from
from web_monitor import MonitorServer, create_app


@pytest.fixture
def fake_control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def app(fake_control: FakeControl):
    return create_app(fake_control, host="127.0.0.1", secret_key="test-secret")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token(client) -> str:
    """A CSRF token valid for `client`'s session."""
    return csrf_from(client.get("/").get_data(as_text=True))


@pytest.fixture(scope="session")
def password_hash() -> str:
    # A cheap hash method keeps the suite fast; production uses werkzeug's default (scrypt).
    return generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture
def auth_app(fake_control: FakeControl, password_hash: str):
    return create_app(fake_control, host="0.0.0.0", password_hash=password_hash,
                      secret_key="test-secret")


@pytest.fixture
def auth_client(auth_app):
    return auth_app.test_client()


@pytest.fixture
def live_server(fake_control: FakeControl) -> Iterator[MonitorServer]:
    """The monitor over the fake control, served by werkzeug on a free loopback port."""
    server = MonitorServer(create_app(fake_control, host="127.0.0.1"), "127.0.0.1", 0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    # the README's test command installs both; a missing browser fails the browser tests
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is not installed: apt-get install -y chromium (the README's "
                    f"test command does it)")
    from playwright import sync_api
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context per test; fails the test on any script error in the page."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # "net::" errors are requests cut off when a test's server stops before its page closes.
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and "net::ERR_" not in msg.text else None)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"errors in the page: {errors}"
