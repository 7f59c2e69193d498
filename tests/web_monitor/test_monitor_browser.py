"""The monitor in a real headless Chromium, served by werkzeug over the fake control.
test_monitor_e2e_supervisor.py does the same against a real supervisor."""
from __future__ import annotations

import time

import pytest
from monitor_support import PASSWORD, wait_until

from web_monitor import MonitorServer, create_app

CHART_POINTS = """(id) => {
  const gd = document.getElementById(id);
  return !!(gd && gd.data && gd.data.length && gd.data[0].x && gd.data[0].x.length > 0);
}"""


def pids_on_page(page) -> list[str]:
    return page.locator("#workers td.pid").all_inner_texts()


def test_overview_lists_services_and_draws_sparklines(page, live_server):
    page.goto(live_server.url + "/")
    rows = page.locator("#services tbody tr[data-service]")
    assert [rows.nth(i).get_attribute("data-service") for i in range(rows.count())] == \
        ["echo", "aimm_engine", "device_api"]
    page.wait_for_function("""() => {
      const gd = document.querySelector('[data-sparkline="echo"]');
      return !!(gd && gd.data && gd.data[0].y.length > 0);
    }""")
    assert page.locator('[data-sparkline="echo"] svg.main-svg').count() >= 1


def test_overview_updates_live_without_reloading(page, live_server, fake_control):
    page.goto(live_server.url + "/")
    page.evaluate("window.__not_reloaded = true")
    fake_control.services["echo"]["restarts"] = 7
    fake_control.stop("aimm_engine")
    echo, aimm = page.locator('tr[data-service="echo"]'), page.locator('tr[data-service="aimm_engine"]')
    page.wait_for_function("""() => document.querySelector('tr[data-service="echo"] [data-cell="restarts"]')
                                      .textContent === '7'""")
    page.wait_for_function("""() => document.querySelector('tr[data-service="aimm_engine"] [data-cell="status"]')
                                      .textContent === 'stopped'""")
    assert "badge-stopped" in aimm.locator('[data-cell="status"]').get_attribute("class")
    assert echo.locator('[data-cell="workers"]').inner_text() == "2 / 2–4"
    assert page.evaluate("window.__not_reloaded") is True
    assert "updated" in page.locator("#live").inner_text()


def test_start_and_stop_are_offered_only_when_they_apply(page, live_server, fake_control):
    page.goto(live_server.url + "/")
    echo = page.locator('tr[data-service="echo"]')
    assert echo.locator('[data-action="start"]').is_disabled()   # running: nothing to start
    assert echo.locator('[data-action="stop"]').is_enabled()
    assert echo.locator('[data-action="restart"]').is_enabled()
    fake_control.stop("echo")                                       # the status changes live...
    page.wait_for_function("""() => !document.querySelector('tr[data-service="echo"] [data-action="start"]')
                                      .disabled""")
    assert echo.locator('[data-action="stop"]').is_disabled()       # ...and so do the buttons
    assert echo.locator('[data-action="restart"]').is_disabled()    # nothing running to restart
    page.reload()                                                   # and so does the page itself
    assert page.locator('tr[data-service="echo"] [data-action="restart"]').is_disabled()


def test_service_page_charts_have_data_points(page, live_server):
    page.goto(live_server.url + "/services/echo")
    for chart in ("chart-memory", "chart-cpu", "chart-calls", "chart-latency"):
        page.wait_for_function(CHART_POINTS, arg=chart)
    assert "samples" in page.locator("#points").inner_text()
    assert page.locator("#methods tbody tr").first.locator("td").first.inner_text() == "echo"


def test_window_selector_asks_for_the_longer_window(page, live_server, fake_control):
    page.goto(live_server.url + "/services/echo")
    page.wait_for_function(CHART_POINTS, arg="chart-memory")
    page.click('#windows a[data-window="1h"]')
    page.wait_for_function("() => document.getElementById('points').textContent.includes('last hour')")
    assert page.url.endswith("?window=1h")
    since = [c[1][1] for c in fake_control.calls if c[0] == "metrics"][-1]
    assert since == pytest.approx(time.time() - 3600, abs=30)
    page.click('#windows a[data-window="all"]')
    page.wait_for_function("() => document.getElementById('points').textContent.includes('all retained')")
    assert [c[1][1] for c in fake_control.calls if c[0] == "metrics"][-1] is None


def test_log_tail_follows_new_lines_and_tells_streams_apart(page, live_server, fake_control):
    page.goto(live_server.url + "/services/echo")
    page.wait_for_selector("#log .entry")
    fake_control.emit("echo", "printed after the page loaded", stream="stdout")
    fake_control.emit("echo", "complaint on stderr", stream="stderr", level="error")
    page.wait_for_selector("#log .entry.stdout:has-text('printed after the page loaded')")
    stderr = page.locator("#log .entry.stderr:has-text('complaint on stderr')")
    stderr.wait_for()
    assert stderr.locator(".stream").inner_text() == "stderr"


def test_the_supervisors_own_lines_say_supervisor_not_a_worker(page, live_server, fake_control):
    page.goto(live_server.url + "/services/echo")
    page.wait_for_selector("#log .entry")
    fake_control.emit("echo", "starting echo with 1 worker(s)", stream="log", worker_id=None)
    line = page.locator("#log .entry:has-text('starting echo with 1 worker')")
    line.wait_for()
    assert line.locator(".w").inner_text().startswith("supervisor")
    assert "w?" not in page.locator("#log").inner_text()


def test_log_search_and_level_filter(page, live_server, fake_control):
    for i in range(5):
        fake_control.emit("echo", f"routine line {i}")
    fake_control.emit("echo", "the needle line", level="warning")
    fake_control.emit("echo", "a serious problem", level="error")
    page.goto(live_server.url + "/services/echo")
    page.wait_for_selector("#log .entry:has-text('routine line 4')")
    page.fill("#log-text", "needle")
    page.wait_for_function("""() => [...document.querySelectorAll('#log .entry .msg')]
                                      .map(e => e.textContent).join('|') === 'the needle line'""")
    page.fill("#log-text", "")
    page.select_option("#log-level", "error")
    page.wait_for_function("""() => [...document.querySelectorAll('#log .entry .msg')]
                                      .map(e => e.textContent).join('|') === 'a serious problem'""")


def test_paused_log_does_not_take_new_lines(page, live_server, fake_control):
    page.goto(live_server.url + "/services/echo")
    page.wait_for_selector("#log .entry")
    page.uncheck("#log-follow")
    fake_control.emit("echo", "while paused")
    # Positive check that polling continues elsewhere, then that the log stayed put.
    before = page.locator("#live").inner_text()
    page.wait_for_function("(before) => document.getElementById('live').textContent !== before", arg=before)
    assert page.locator("#log .entry:has-text('while paused')").count() == 0
    page.check("#log-follow")
    page.wait_for_selector("#log .entry:has-text('while paused')")


def test_restart_button_changes_worker_pids(page, live_server, fake_control):
    page.goto(live_server.url + "/services/echo")
    before = pids_on_page(page)
    assert before == [str(p) for p in fake_control.pids("echo")]
    page.click('.page-head [data-action="restart"]')
    page.wait_for_selector(".flash-ok:has-text('echo restarted')")
    after = pids_on_page(page)
    assert len(after) == 2 and set(after).isdisjoint(before)


def test_stop_asks_for_confirmation_then_stops(page, live_server, fake_control):
    page.goto(live_server.url + "/")
    page.click('tr[data-service="echo"] [data-action="stop"]')
    page.wait_for_selector("h1:has-text('Stop echo?')")
    assert fake_control.services["echo"]["status"] == "running"
    page.click('[data-action="confirm-stop"]')
    page.wait_for_selector(".flash-ok:has-text('echo stopped')")
    assert page.url.endswith("/")
    assert page.locator('tr[data-service="echo"] [data-cell="status"]').inner_text() == "stopped"


def test_scale_up_and_restart_one_worker(page, live_server, fake_control):
    page.goto(live_server.url + "/services/echo")
    page.click('[data-action="scale-up"]')
    page.wait_for_selector(".flash-ok:has-text('echo scaled to 3')")
    assert len(pids_on_page(page)) == 3
    before = pids_on_page(page)
    page.locator('tr[data-worker="1"] [data-action="restart-worker"]').click()
    page.wait_for_selector(".flash-ok:has-text('worker 1 of echo restarted')")
    after = pids_on_page(page)
    assert after[0] == before[0] and after[1] != before[1] and after[2] == before[2]


def test_error_from_the_supervisor_is_shown(page, live_server):
    page.goto(live_server.url + "/services/echo")
    page.fill('input[name="n"]', "1")  # below min_proc_num: the form allows it, the supervisor refuses
    page.click('[data-action="scale-set"]')
    page.wait_for_selector(".flash-error:has-text('1 is outside min_proc_num..max_proc_num')")


def test_login_in_the_browser(browser, fake_control, password_hash):
    app = create_app(fake_control, host="127.0.0.1", password_hash=password_hash)
    with MonitorServer(app, "127.0.0.1", 0) as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(15000)
            page.goto(server.url + "/services/echo")
            assert "/login" in page.url
            page.fill("#password", "wrong password")
            page.click("button[type=submit]")
            page.wait_for_selector(".flash-error:has-text('Wrong password')")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("h1:has-text('echo')")
            assert page.url.endswith("/services/echo")
            page.click("text=Log out")
            page.wait_for_selector("#password")
        finally:
            context.close()


def test_live_server_fixture_stops_cleanly(fake_control):
    server = MonitorServer(create_app(fake_control, host="127.0.0.1"), "127.0.0.1", 0).start()
    port = server.port
    server.stop()
    import socket
    with socket.socket() as s:
        wait_until(lambda: s.connect_ex(("127.0.0.1", port)) != 0, message="port closed")


def test_log_entries_of_the_log_stream_are_not_stretched(page, live_server, fake_control):
    """Regression: an entry of stream "log" got the log box's own CSS class and was 360 px high."""
    for stream in ("stdout", "stderr", "log"):
        fake_control.emit("echo", f"one line on {stream}", stream=stream)
    page.goto(live_server.url + "/services/echo")
    page.wait_for_selector("#log .entry.log:has-text('one line on log')")
    heights = page.evaluate("""() => [...document.querySelectorAll('#log .entry')]
                                     .map(e => e.getBoundingClientRect().height)""")
    line = page.evaluate("() => parseFloat(getComputedStyle(document.getElementById('log')).lineHeight)")
    assert max(heights) < 2 * line, heights


def test_scale_buttons_follow_the_pool_bounds(page, live_server, fake_control):
    page.goto(live_server.url + "/services/echo")  # 2 workers, min 2, max 4
    assert page.locator('[data-action="scale-down"]').is_disabled()
    assert page.locator('[data-action="scale-up"]').is_enabled()
    fake_control.scale("echo", 4)  # e.g. the autoscaler: the page follows without a reload
    page.wait_for_function("""() => document.querySelector('[data-action="scale-up"]').disabled &&
                                    !document.querySelector('[data-action="scale-down"]').disabled""")
