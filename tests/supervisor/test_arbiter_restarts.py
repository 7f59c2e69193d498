"""Keeping workers healthy with real processes: restart after kill -9, back-off and crash loops,
memory recycling without losing a call, and hung-worker replacement."""
from __future__ import annotations

import itertools
import os
import signal
import threading

import speedysvc
from supervisor_harness import wait_until


def test_a_worker_killed_with_sigkill_is_restarted(make_supervisor):
    sup = make_supervisor({"Work": {"min_proc_num": "2", "max_proc_num": "2"}}).start()
    before = sup.pids("work")
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    after = wait_until(lambda: (p := sup.pids("work")) and len(p) == 2 and before[0] not in p and p,
                       message="a replacement worker")
    assert before[1] in after
    svc = sup.service("work")
    assert svc["restarts"] == 1 and svc["status"] == "running"
    assert "SIGKILL" in svc["last_error"]
    with speedysvc.connect("work", f"shm://{sup.scope}") as c:
        assert c.ping() in after
    assert sup.stop() == 0


def test_crash_loop_backs_off_then_marks_the_service_failed(make_supervisor):
    sup = make_supervisor(
        {"Work": {}, "CrashOnStart": {"wait_until_completed": "false"}},
        defaults={"restart_backoff_initial": "200ms", "crash_loop_restarts": "4",
                  "crash_loop_window": "30s"}).start(wait=False)
    svc = wait_until(lambda: _status(sup, "crashy") == "failed" and sup.service("crashy"),
                     timeout=40, message="the crash loop to be detected")
    assert "crash loop" in svc["last_error"] and "crashy cannot open its database" in svc["last_error"]
    assert svc["restarts"] == 4 and svc["workers"] == []
    # exponential back-off: the delays double (0.2 s, 0.4 s, 0.8 s)
    logs = sup.control().logs("crashy", lines=200, text="restarting in")["entries"]
    delays = [float(e["message"].rsplit("restarting in ", 1)[1].rstrip("s")) for e in logs]
    assert delays == [0.2, 0.4, 0.8]
    with open(os.path.join(sup.marks_dir, "marks.txt")) as f:
        starts = [float(line.split()[1]) for line in f if line.startswith("crashy-start")]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # each restart waited at least its back-off delay (a lower bound: a loaded machine only
    # makes gaps longer, so this cannot flake the way comparing the gaps with each other did)
    assert len(starts) == 4 and all(gap >= delay for gap, delay in zip(gaps, delays, strict=True))
    # the failure stays put (no spinning) and the other service is untouched
    assert sup.service("work")["status"] == "running"
    # `start` tries again from a clean slate
    with sup.control() as c:
        assert c.start("crashy")["ok"] is True
    assert sup.stop() == 0


def test_a_worker_over_its_memory_limit_is_replaced_without_losing_a_call(make_supervisor):
    sup = make_supervisor({"Work": {"max_proc_mem_bytes": "150MiB"}},
                          defaults={"metrics_interval": "100ms"}).start()
    old = sup.pids("work")[0]
    client = speedysvc.connect("work", f"shm://{sup.scope}")
    stop = threading.Event()
    results = {"ok": 0, "errors": []}

    def keep_calling():
        with speedysvc.connect("work", f"shm://{sup.scope}") as c:
            while not stop.is_set():
                try:
                    c.sleep(0.01)
                    results["ok"] += 1
                except Exception as exc:  # noqa: BLE001
                    results["errors"].append(repr(exc))

    callers = [threading.Thread(target=keep_calling) for _ in range(2)]
    for t in callers:
        t.start()
    try:  # the callers stop whatever happens: left running they would outlive the test's cleanup
        assert client.grow(200) == old
        new = wait_until(lambda: (p := sup.pids("work")) and old not in p and p, timeout=30,
                         message="the memory-hungry worker to be replaced")
        wait_until(lambda: not any(w["pid"] == old for w in sup.service("work")["workers"]),
                   message="the old worker to exit")
        calls_before = results["ok"]
        wait_until(lambda: results["ok"] > calls_before + 20, message="calls to the new worker")
    finally:
        stop.set()
        for t in callers:
            t.join(30)
        client.close()
    assert results["errors"] == []
    assert new[0] != old
    svc = sup.service("work")
    assert svc["restarts"] == 1
    replaced = sup.control().logs("work", text="max_proc_mem_bytes")["entries"]
    assert replaced and "replacing it gracefully" in replaced[0]["message"]
    sup.seen_pids.add(old)
    assert sup.stop() == 0


def test_a_hung_worker_is_killed_and_replaced(make_supervisor):
    sup = make_supervisor({"Work": {"worker_hang_timeout": "1s"}}).start()
    old = sup.pids("work")[0]
    client = speedysvc.connect("work", f"shm://{sup.scope}")
    outcome = {}

    def call_hang():
        try:
            client.hang()
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    t = threading.Thread(target=call_hang)
    t.start()
    t.join(30)
    assert isinstance(outcome.get("error"), speedysvc.WorkerDied), outcome
    new = wait_until(lambda: (p := sup.pids("work")) and old not in p and p, message="a replacement")
    assert client.ping() == new[0]
    client.close()
    svc = sup.service("work")
    assert svc["restarts"] == 1 and "hung" in svc["last_error"]
    sup.seen_pids.add(old)
    assert sup.stop() == 0


def _status(sup, name):
    try:
        return sup.service(name)["status"]
    except Exception:  # noqa: BLE001 - the control API may not be up yet
        return None


def test_rolling_restart_and_restart_worker(make_supervisor):
    sup = make_supervisor({"Work": {"min_proc_num": "2", "max_proc_num": "2"}}).start()
    before = sup.pids("work")
    restarted = sup.cli("restart", "work")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = sup.pids("work")
    assert len(after) == 2 and not set(after) & set(before)
    sup.seen_pids.update(before)
    with sup.control() as c:
        worker = sup.service("work")["workers"][0]
        assert c.restart_worker("work", worker["worker_id"])["ok"]
    wait_until(lambda: (p := sup.pids("work")) and len(p) == 2 and worker["pid"] not in p,
               message="the worker to be replaced")
    assert sup.service("work")["restarts"] == 0     # asked for: not counted as failures
    assert sup.stop() == 0
