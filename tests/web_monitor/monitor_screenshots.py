"""Take docs/monitor-overview.png and docs/monitor-service.png with Playwright.

    python tests/web_monitor/monitor_screenshots.py                 # the monitor over the fake control
    python tests/web_monitor/monitor_screenshots.py --url http://127.0.0.1:5155 --service calculator

The PNGs in docs/ were taken the second way, from `python -m speedysvc example.ini` with a
client calling echo and calculator in a loop for a minute.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]

from monitor_support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SERVICE_READY = """() => {
  const gd = document.getElementById('chart-memory');
  return !!(gd && gd.data && gd.data[0].x.length > 0) && !!document.querySelector('#log .entry');
}"""


def take(url: str, service: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30000)
            page.goto(url + "/")
            page.wait_for_function("() => document.querySelectorAll('.sparkline .main-svg').length > 0")
            page.wait_for_function("() => document.getElementById('live').textContent.includes('updated')")
            page.screenshot(path=str(out / "monitor-overview.png"), full_page=True)
            page.goto(f"{url}/services/{service}")
            page.wait_for_function(SERVICE_READY)
            page.screenshot(path=str(out / "monitor-service.png"), full_page=True)
        finally:
            browser.close()


def fake_monitor():
    from monitor_fakes import FakeControl
    from web_monitor import MonitorServer, create_app
    control = FakeControl()
    lines = [("stdout", "info", "listening on shm://example"), ("stdout", "info", "echo('hello') -> 'hello!'"),
             ("stderr", "warning", "DeprecationWarning: numpy.float is deprecated"),
             ("log", "info", "scaling echo 2 -> 2: load 0.31 within 0.25..0.75"),
             ("stdout", "info", "echo('world') -> 'world!'"),
             ("stderr", "error", "Traceback (most recent call last): ValueError: bad payload")]
    for i in range(24):
        stream, level, message = lines[i % len(lines)]
        control.emit("echo", message, stream=stream, level=level, worker_id=i % 2)
    return MonitorServer(create_app(control, host="127.0.0.1"), "127.0.0.1", 0).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running monitor; default: one over the fake control")
    parser.add_argument("--service", default="echo", help="the service page to capture")
    parser.add_argument("--out", default=str(REPO / "docs"), help="directory for the PNGs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.url:
        take(args.url.rstrip("/"), args.service, out)
        return 0
    server = fake_monitor()
    try:
        take(server.url, args.service, out)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
