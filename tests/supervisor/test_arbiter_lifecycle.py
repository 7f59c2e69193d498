"""Starting in file order, the status command, TCP with a secret, and a graceful stop that lets
a call in flight finish."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

import speedysvc
from speedysvc import naming
from speedysvc.supervisor import state_file
from supervisor_harness import wait_until

STATUS_KEYS = {"name", "status", "workers", "min_proc_num", "max_proc_num", "current", "started_at",
               "uptime_s", "restarts", "rss", "uss", "cpu_percent", "calls_per_s", "errors",
               "tcp_address", "last_error"}
WORKER_KEYS = {"worker_id", "pid", "started_at", "state", "rss", "uss", "cpu_percent", "calls"}


def read_marks(sup) -> list[tuple[str, float]]:
    with open(os.path.join(sup.marks_dir, "marks.txt")) as f:
        return [(name, float(ts)) for name, ts, _pid in (line.split() for line in f)]


def test_wait_until_completed_starts_services_in_file_order(make_supervisor):
    sup = make_supervisor({"First": {"min_proc_num": "2", "max_proc_num": "2"}, "Second": {}}).start()
    marks = read_marks(sup)
    first_ready = max(ts for name, ts in marks if name == "first-ready")
    second_begin = min(ts for name, ts in marks if name == "second-begin")
    assert [n for n, _ in marks].count("first-ready") == 2
    assert second_begin > first_ready          # both First workers served before Second started
    assert [s["name"] for s in sup.status()["services"]] == ["first", "second"]
    assert sup.stop() == 0


def test_without_wait_until_completed_the_next_service_does_not_wait(make_supervisor):
    sup = make_supervisor({"First": {"wait_until_completed": "false"}, "Second": {}}).start()
    marks = read_marks(sup)
    first_ready = max(ts for name, ts in marks if name == "first-ready")
    second_begin = min(ts for name, ts in marks if name == "second-begin")
    assert second_begin < first_ready
    assert sup.stop() == 0


def test_status_command_exit_codes_and_json(make_supervisor, tmp_path):
    sup = make_supervisor({"Work": {"tcp_bind": "127.0.0.1:0", "tcp_secret": "s3cret-handshake"}})
    not_yet = sup.cli("status")
    assert not_yet.returncode == 3, not_yet.stderr          # LSB: not running
    sup.start()

    table = sup.cli("status")
    assert table.returncode == 0, table.stderr
    assert "work" in table.stdout and "running" in table.stdout and "1/1" in table.stdout

    as_json = sup.cli("status", "--json")
    assert as_json.returncode == 0
    status = json.loads(as_json.stdout)
    assert status["supervisor"]["pid"] == sup.proc.pid
    assert status["supervisor"]["scope"] == sup.scope
    svc = status["services"][0]
    assert STATUS_KEYS <= set(svc)
    assert WORKER_KEYS <= set(svc["workers"][0])
    assert svc["status"] == "running" and svc["current"] == 1
    assert svc["tcp_address"].startswith("tcp://127.0.0.1:")

    # the state file says where the control API is; -c FILE and --scope find it as well
    state = sup.state()
    assert state["pid"] == sup.proc.pid and state["control_address"] == f"shm://{sup.scope}"
    assert oct(os.stat(sup.state_path()).st_mode & 0o777) == "0o600"
    # loopback TCP reaches the control API only with the secret from the state file
    with pytest.raises(speedysvc.AuthenticationError):
        with speedysvc.connect("speedysvc_control", state["control_tcp_address"]) as c:
            c.status()
    with speedysvc.connect("speedysvc_control", state["control_tcp_address"],
                           secret=state["control_secret"]) as c:
        assert c.status()["supervisor"]["pid"] == sup.proc.pid
    assert sup.cli("status", "-c", sup.ini, "work").returncode == 0
    assert sup.cli("status", "--scope", sup.scope).returncode == 0

    # TCP with the shared secret: the secret reaches the workers by environment, never argv
    client = speedysvc.connect("work", svc["tcp_address"], secret="s3cret-handshake")
    assert client.ping() in [w["pid"] for w in svc["workers"]]
    client.close()
    for child in sup.children():
        assert "s3cret-handshake" not in " ".join(child.cmdline())
    log_text = open(os.path.join(sup.log_dir, "work.log")).read() + sup.log_text()
    assert "s3cret-handshake" not in log_text

    # a stopped service: `status NAME` exits 3
    stopped = sup.cli("stop", "work")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped" in stopped.stdout
    assert sup.cli("status", "work").returncode == 3
    started = sup.cli("start", "work")
    assert started.returncode == 0 and "running" in started.stdout

    assert sup.stop() == 0
    assert sup.cli("status").returncode == 3
    assert not os.path.exists(sup.state_path())


def test_status_exit_code_4_when_the_supervisor_does_not_answer(tmp_path, scope):
    # a state file naming a live process (this one) that serves no control API
    runtime = tmp_path / "xdg" / "speedysvc"
    sf = state_file.StateFile(str(runtime), scope)
    sf.acquire()
    sf.write(control_address=f"shm://{scope}", control_tcp_address="tcp://127.0.0.1:9",
             ini="nowhere.ini", started_at=time.time())
    try:
        import subprocess
        import sys
        from supervisor_harness import REPO
        env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "xdg"))
        result = subprocess.run([sys.executable, "-m", "speedysvc", "status"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 4, result.stderr
        assert "does not answer" in result.stderr
    finally:
        sf.remove()


def test_graceful_stop_lets_a_call_in_flight_finish(make_supervisor):
    sup = make_supervisor({"Work": {}}).start()
    worker_pid = sup.pids("work")[0]
    client = speedysvc.connect("work", f"shm://{sup.scope}")
    result = {}

    def slow_call():
        try:
            result["value"] = client.sleep(1.5)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    caller = threading.Thread(target=slow_call)
    caller.start()
    wait_until(lambda: any(w["state"] == "busy" for w in sup.service("work")["workers"]),
               message="the call to be in flight")
    sup.signal(signal.SIGTERM)
    caller.join(30)
    client.close()
    assert result == {"value": worker_pid}
    assert sup.proc.wait(30) == 0, sup.log_text()
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE
    assert naming.list_objects(sup.scope) == []


def test_second_sigint_stops_at_once(make_supervisor):
    sup = make_supervisor({"Work": {}}, defaults={"graceful_timeout": "60s"}).start()
    worker_pid = sup.pids("work")[0]
    client = speedysvc.connect("work", f"shm://{sup.scope}")
    outcome = {}

    def slow_call():
        try:
            outcome["value"] = client.sleep(30)
        except Exception as exc:  # noqa: BLE001 - the worker is killed under this call on purpose
            outcome["error"] = exc

    caller = threading.Thread(target=slow_call)
    caller.start()
    wait_until(lambda: any(w["state"] == "busy" for w in sup.service("work")["workers"]),
               message="the call to be in flight")
    sup.signal(signal.SIGINT)
    wait_until(lambda: "stopping gracefully" in sup.log_text(), message="the first SIGINT")
    sup.signal(signal.SIGINT)
    assert sup.proc.wait(30) == 0, sup.log_text()
    caller.join(30)
    client.close()
    # at once: the call in flight was cut off, not waited for (neither the 30 s call nor the
    # 60 s graceful timeout ran out; how soon it stops: benchmarks/timing_checks.py)
    assert not caller.is_alive() and "error" in outcome, outcome
    sup.seen_pids.add(worker_pid)
    assert naming.list_objects(sup.scope) == []


def test_ctrl_c_to_the_whole_process_group_stops_without_restarting_workers(make_supervisor):
    # a terminal's Ctrl-C sends SIGINT to the supervisor *and* all its workers at once
    sup = make_supervisor({"Work": {"min_proc_num": "2", "max_proc_num": "2",
                                    "tcp_bind": "127.0.0.1:0"}, "Other": {}}).start()
    sup.seen_pids.update(c.pid for c in sup.children())
    # workers ignore SIGINT (the supervisor decides what it means): Other's call in flight
    # finishes, and nobody mistakes the stop for a crash
    client = speedysvc.connect("other", f"shm://{sup.scope}")
    result = {}
    caller = threading.Thread(target=lambda: result.setdefault("pid", client.sleep(1.5)))
    caller.start()
    wait_until(lambda: any(w["state"] == "busy" for w in sup.service("other")["workers"]),
               message="the call to be in flight")
    os.killpg(sup.proc.pid, signal.SIGINT)
    caller.join(30)
    client.close()
    assert result.get("pid"), "the call in flight was lost"
    assert sup.proc.wait(30) == 0, sup.log_text()
    out = sup.log_text()
    assert "exited unexpectedly" not in out and "restarting in" not in out, out
    assert naming.list_objects(sup.scope) == []
