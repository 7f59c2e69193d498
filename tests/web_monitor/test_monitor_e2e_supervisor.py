"""END-TO-END: a real supervisor (`python -m speedysvc FILE.ini`) running a test .ini, its web
monitor driven in headless Chromium. Skipped until `speedysvc.supervisor.arbiter` exists.

What it shows: the overview lists the .ini's services, a chart gets data points from the stored
metrics after a few sampling intervals, the log tail shows a line a worker printed, and clicking
restart gives the service new worker pids."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from monitor_support import wait_until

import speedysvc  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SERVICE = "monitor_e2e_echo"
CHART_POINTS = """([id, n]) => {
  const gd = document.getElementById(id);
  return !!(gd && gd.data && gd.data.length && gd.data[0].x && gd.data[0].x.length >= n);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


class Supervisor:
    """One `python -m speedysvc` process in its own session, stopped (and swept) at the end."""

    def __init__(self, tmp: Path, web_extra: str = "") -> None:
        self.scope = "wme2e" + uuid.uuid4().hex[:6]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ini = tmp / "monitor_e2e.ini"
        self.ini.write_text(f"""\
[supervisor]
scope = {self.scope}
runtime_dir = {tmp / "run"}
log_dir = {tmp / "logs"}

[web monitor]
host = 127.0.0.1
port = {self.port}
{web_extra}
[defaults]
log_dir = {tmp / "logs"}
metrics_interval = 0.5s

[MonitorE2EEcho]
import_from = monitor_e2e_service
min_proc_num = 2
max_proc_num = 3

[MonitorE2ESecond]
import_from = monitor_e2e_service
min_proc_num = 1
max_proc_num = 1
""")
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
        env.pop("SPEEDYSVC_MONITOR_PASSWORD_HASH", None)
        self.out = open(tmp / "supervisor.out", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "speedysvc", str(self.ini)], cwd=tmp,
                                     env=env, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        if not self.out.closed:
            self.out.flush()
        return Path(self.out.name).read_text()

    def wait_healthy(self, timeout: float = 90.0) -> None:
        def healthy() -> bool:
            assert self.proc.poll() is None, f"supervisor exited:\n{self.output()}"
            return get_json(self.url + "/health")[0] == 200
        wait_until(healthy, timeout=timeout, interval=0.25, message="the monitor's /health to be 200")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            pass
        else:  # workers outlived the supervisor: a bug, but don't leak them into other tests
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError("processes of the supervisor's session outlived it")
        finally:
            self.out.close()
            from speedysvc import naming
            naming.sweep(self.scope)


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory):
    sup = Supervisor(tmp_path_factory.mktemp("monitor_e2e"))
    try:
        sup.wait_healthy()
        yield sup
    finally:
        sup.stop()


def connect_service(sup: Supervisor):
    """A client of the test service; waits generously, since a loaded CI machine is slow."""
    sup.wait_healthy(timeout=60)
    try:
        return speedysvc.connect(SERVICE, f"shm://{sup.scope}", connect_timeout=30)
    except speedysvc.ServiceUnavailable as exc:
        raise AssertionError(f"{exc}\nsupervisor output:\n{sup.output()[-4000:]}") from exc


def service_pids(sup: Supervisor) -> list[int]:
    status, data = get_json(f"{sup.url}/api/services/{SERVICE}")
    return [w["raw"]["pid"] for w in data.get("workers", [])] if status == 200 else []


def test_overview_lists_the_services(page, supervisor):
    page.goto(supervisor.url + "/")
    page.wait_for_selector(f'tr[data-service="{SERVICE}"] [data-cell="status"]:has-text("running")')
    assert page.locator('tr[data-service="monitor_e2e_second"]').count() == 1
    page.wait_for_function(f"""() => document.querySelector('tr[data-service="{SERVICE}"] [data-cell="workers"]')
                                      .textContent.startsWith('2 /')""")


def test_chart_has_data_points_after_a_few_samples(page, supervisor):
    client = connect_service(supervisor)
    try:
        for i in range(50):
            client.echo(f"call {i}")
    finally:
        client.close()
    page.goto(f"{supervisor.url}/services/{SERVICE}")
    # metrics_interval is 0.5 s: a handful of samples arrive within seconds.
    page.wait_for_function(CHART_POINTS, arg=["chart-memory", 3], timeout=60000)
    page.wait_for_function(CHART_POINTS, arg=["chart-cpu", 3], timeout=60000)
    rss = page.evaluate("() => document.getElementById('chart-memory').data[0].y.filter(v => v > 0).length")
    assert rss >= 1, "memory samples are all empty"


def test_log_tail_shows_what_the_service_printed(page, supervisor):
    marker = "e2e-" + uuid.uuid4().hex[:10]
    page.goto(f"{supervisor.url}/services/{SERVICE}")
    page.wait_for_selector("#log .entry, #log .empty")
    client = connect_service(supervisor)
    try:
        client.echo(marker)
        client.complain(marker + "-err")
    finally:
        client.close()
    line = page.locator(f"#log .entry.stdout:has-text('echo says {marker}')")
    line.wait_for(timeout=30000)
    page.locator(f"#log .entry.stderr:has-text('complaint {marker}-err')").wait_for(timeout=30000)
    page.fill("#log-text", marker + "-err")
    page.wait_for_function(f"""() => {{
      const msgs = [...document.querySelectorAll('#log .entry .msg')].map(e => e.textContent);
      return msgs.length === 1 && msgs[0].includes('{marker}-err');
    }}""", timeout=30000)


def test_restart_button_changes_worker_pids(page, supervisor):
    before = service_pids(supervisor)
    assert len(before) == 2
    page.goto(f"{supervisor.url}/services/{SERVICE}")
    page.click('.page-head [data-action="restart"]')
    page.wait_for_selector(".flash[role=status]")  # the flashed outcome, not the polling banner
    assert page.locator(".flash-ok[role=status]").count() == 1, page.locator(".flash").all_inner_texts()

    def new_pids() -> bool:
        pids = service_pids(supervisor)
        return len(pids) == 2 and set(pids).isdisjoint(before)
    wait_until(new_pids, timeout=60, interval=0.25, message="two workers with new pids")
    # The page's worker table follows without a reload.
    page.wait_for_function("""(before) => {
      const pids = [...document.querySelectorAll('#workers td.pid')].map(td => td.textContent);
      return pids.length === 2 && pids.every(p => !before.includes(p));
    }""", arg=[str(p) for p in before], timeout=30000)


def test_prometheus_and_health_from_the_real_supervisor(supervisor):
    with urllib.request.urlopen(supervisor.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "speedysvc_supervisor_up 1" in text
    assert f'speedysvc_service_up{{service="{SERVICE}"}} 1' in text
    status, body = get_json(supervisor.url + "/health")
    assert status == 200 and body["services"][SERVICE] == "running"


def test_unknown_service_is_404_from_the_real_supervisor(supervisor):
    # The supervisor's UnknownService crosses the wire as a remote exception.
    for path in ("/api/services/nope/logs", "/api/services/nope/charts", "/api/services/nope"):
        status, body = get_json(supervisor.url + path)
        assert status == 404, (path, body)
        assert "nope" in body["error"]


def test_standalone_monitor_against_the_real_supervisor(supervisor):
    """python -m web_monitor --scope S, next to the supervisor's own monitor."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "web_monitor", "--port", str(port),
                             "--scope", supervisor.scope], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: get_json(url + "/health")[0] == 200, timeout=30, interval=0.25,
                   message="standalone monitor healthy")
        _, data = get_json(url + "/api/status")
        assert SERVICE in [s["name"] for s in data["services"]]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_password_hash_in_the_ini_makes_the_monitor_require_login(tmp_path, browser):
    from werkzeug.security import generate_password_hash
    password = "e2e password 123"
    sup = Supervisor(tmp_path, web_extra=f"password_hash = {generate_password_hash(password)}\n")
    try:
        def answering() -> bool:
            assert sup.proc.poll() is None, f"supervisor exited:\n{sup.output()}"
            return get_json(sup.url + "/health")[0] == 401
        wait_until(answering, timeout=90, interval=0.25, message="the monitor to ask for a login")
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(30000)
            page.goto(sup.url + "/")
            assert "/login" in page.url
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_selector(f'tr[data-service="{SERVICE}"]')
        finally:
            context.close()
    finally:
        sup.stop()
