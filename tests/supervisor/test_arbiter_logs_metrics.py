"""Captured output and log records, queried and followed; metrics sampled, stored in SQLite and
still there after the supervisor restarts."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import speedysvc
from speedysvc.monitoring.metrics_store import MetricsStore
from supervisor_harness import REPO, wait_until


def test_stdout_stderr_and_log_records_are_captured_and_queryable(make_supervisor):
    sup = make_supervisor({"Work": {}}).start()
    pid = sup.pids("work")[0]
    worker_id = sup.service("work")["workers"][0]["worker_id"]
    with speedysvc.connect("work", f"shm://{sup.scope}") as c:
        c.say("marker-one")
    control = sup.control()
    entries = wait_until(lambda: (e := control.logs("work", text="marker-one")["entries"]) and len(e) == 3 and e,
                         message="three captured lines")
    by_stream = {e["stream"]: e for e in entries}
    assert by_stream["stdout"]["message"] == "stdout says marker-one"
    assert by_stream["stdout"]["level"] == "INFO"
    assert by_stream["stderr"]["message"] == "stderr says marker-one"
    assert by_stream["log"]["level"] == "WARNING"
    assert "log record says marker-one" in by_stream["log"]["message"]
    for e in entries:
        assert e["pid"] == pid and e["worker_id"] == worker_id and e["ts"] > time.time() - 60

    # level filter and text filter through the CLI
    warn = sup.cli("logs", "work", "--grep", "MARKER-ONE", "--level", "warning")
    assert warn.returncode == 0, warn.stderr
    lines = warn.stdout.strip().splitlines()
    assert len(lines) == 2 and all("marker-one" in line for line in lines)
    assert all(f"w{worker_id} pid {pid}" in line for line in lines)
    assert not any("stdout says" in line for line in lines)

    # follow: a new line after the cursor arrives, also through `logs -f`
    cursor = control.logs("work", lines=1)["cursor"]
    follower = subprocess.Popen([sys.executable, "-m", "speedysvc", "logs", "work", "-f", "-n", "5",
                                 "--grep", "marker-two", "--interval", "0.1"], cwd=REPO, env=sup.env,
                                stdout=subprocess.PIPE, text=True)
    try:
        with speedysvc.connect("work", f"shm://{sup.scope}") as c:
            c.say("marker-two")   # before or after the follower starts: it shows up either way
        assert "marker-two" in read_line(follower.stdout, timeout=30)
        with speedysvc.connect("work", f"shm://{sup.scope}") as c:
            c.say("marker-two-again")   # certainly after: only following can show it
        seen = ""
        while "marker-two-again" not in seen:
            seen = read_line(follower.stdout, timeout=30)
    finally:
        follower.terminate()
        follower.wait(10)
    newer = control.logs("work", after=cursor)["entries"]
    assert {e["stream"] for e in newer if "marker-two" in e["message"]} == {"stdout", "stderr", "log"}

    # the supervisor's own decisions about the service are in the same log
    assert control.logs("work", text="work is running")["entries"]
    control.close()
    # on disk, rotated per service under log_dir
    assert os.path.exists(os.path.join(sup.log_dir, "work.log"))
    assert sup.stop() == 0


def read_line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout}s"
    return stream.readline()


def test_metrics_are_sampled_stored_and_survive_a_restart(make_supervisor):
    sup = make_supervisor({"Work": {}}, defaults={"metrics_interval": "200ms"}).start()
    with speedysvc.connect("work", f"shm://{sup.scope}") as c:
        for _ in range(50):
            c.sleep(0.001)
        for _ in range(3):
            try:
                c.fail("expected")
            except ValueError:
                pass
    control = sup.control()

    def methods_seen():
        m = control.metrics("work")
        names = {x["name"]: x for x in m["methods"]}
        return m if names.get("sleep", {}).get("count") == 50 and names.get("fail", {}).get("errors") == 3 else None

    series = wait_until(methods_seen, message="method statistics in the metrics")
    assert len(series["ts"]) >= 2
    assert max(series["rss"]) > 10 * 2**20 and max(series["uss"]) > 0
    assert max(series["calls_per_s"]) > 0 and sum(series["errors"]) == 3
    sleep = next(x for x in series["methods"] if x["name"] == "sleep")
    assert 0.5 < sleep["p50_ms"] < 100 and sleep["p99_ms"] >= sleep["p50_ms"]  # since start
    assert any(p is not None and p >= 0.5 for p in series["p50_ms"])
    worker_series = next(iter(series["workers"].values()))
    assert set(worker_series) == {"ts", "rss", "uss", "cpu_percent"}
    status = sup.service("work")
    assert status["errors"] == 3 and status["rss"] > 0
    last_ts = series["ts"][-1]
    control.close()
    assert sup.stop() == 0

    # on disk, readable without the supervisor
    db = os.path.join(sup.log_dir, "metrics.sqlite")
    with MetricsStore(db, retention_seconds=3600) as store:
        assert store.series("work")["ts"][-1] == last_ts

    sup.start()
    with sup.control() as control:
        again = control.metrics("work", until=last_ts)
    assert again["ts"][-1] == last_ts and {"sleep", "fail"} <= {m["name"] for m in again["methods"]}
    assert sup.stop() == 0


def test_channels_of_a_client_killed_with_sigkill_are_swept_while_running(make_supervisor):
    import signal
    import subprocess
    import sys
    from speedysvc import naming
    sup = make_supervisor({"Work": {}}).start()
    code = (f"import speedysvc, os, signal; c = speedysvc.connect('work', 'shm://{sup.scope}'); c.ping(); "
            "print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    client = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert client.returncode == -signal.SIGKILL
    mark = f"_c{int(client.stdout)}x"

    def leftovers():
        return [o for o in naming.list_objects(sup.scope) if mark in o]
    # (it may already be gone if a sweep ran in between; the point is that it goes)
    wait_until(lambda: not leftovers(), timeout=15,
               message="the dead client's channel to be swept (client_sweep_interval = 1s)")
    assert "of clients that died" in open(os.path.join(sup.log_dir, "speedysvc-supervisor.log")).read()
