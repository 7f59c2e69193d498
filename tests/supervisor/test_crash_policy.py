"""What the supervisor does with services that keep failing: a crash loop is retried after a
long back-off, a failure restarting cannot heal is not retried, a hung worker's stacks are
written to its log before it is killed."""
from __future__ import annotations

import os
import socket

import speedysvc
from supervisor_harness import wait_until


def _marks(sup, name: str) -> int:
    try:
        with open(os.path.join(sup.marks_dir, "marks.txt")) as f:
            return sum(1 for line in f if line.split()[0] == name)
    except FileNotFoundError:
        return 0


def test_a_crash_loop_is_retried_after_crash_loop_backoff(make_supervisor):
    sup = make_supervisor({"Work": {}, "CrashOnStart": {"wait_until_completed": "false"}},
                          defaults={"crash_loop_restarts": "2", "crash_loop_backoff": "2s"})
    sup.start()
    failed = wait_until(lambda: (s := sup.service("crashy"))["status"] == "failed" and s, 30,
                        message="the first crash loop")
    assert "starting it again in 2s" in failed["last_error"]
    assert failed["retry_in_s"] is not None and failed["retry_in_s"] <= 2
    assert "crashy cannot open its database" in failed["last_traceback"]  # visible meanwhile
    first_loop = _marks(sup, "crashy-start")
    assert first_loop == 2
    wait_until(lambda: _marks(sup, "crashy-start") > first_loop, 30,
               message="crashy to be started again after the back-off")
    assert "failed in a crash loop 2s ago; starting it again" in sup.log_text()


def test_crash_loop_backoff_0_never_retries(make_supervisor):
    sup = make_supervisor({"Work": {}, "CrashOnStart": {"wait_until_completed": "false"}},
                          defaults={"crash_loop_restarts": "2", "crash_loop_backoff": "0"})
    sup.start()
    failed = wait_until(lambda: (s := sup.service("crashy"))["status"] == "failed" and s, 30,
                        message="the crash loop")
    assert "not starting it again" in failed["last_error"]
    assert failed["retry_in_s"] is None


def test_a_port_in_use_at_start_fails_the_service_at_once_without_retries(make_supervisor):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        sup = make_supervisor({"Work": {}, "PortBinder": {"wait_until_completed": "false"}},
                              defaults={"crash_loop_restarts": "4"})
        sup.env["SPEEDYSVC_TEST_BIND_PORT"] = str(port)
        sup.start()
        failed = wait_until(lambda: (s := sup.service("portbinder"))["status"] == "failed" and s,
                            30, message="portbinder to fail")
        assert "restarting cannot help" in failed["last_error"]
        assert "already in use" in failed["last_error"]
        assert failed["retry_in_s"] is None
        assert _marks(sup, "portbinder-start") == 1   # one attempt, not a crash loop of four
        assert sup.service("work")["status"] == "running"  # the others are untouched
    finally:
        holder.close()


def test_a_hung_workers_stacks_are_in_its_log_before_it_is_killed(make_supervisor):
    sup = make_supervisor({"Work": {}}, defaults={"worker_hang_timeout": "1s"})
    sup.start()
    pid = sup.pids("work")[0]
    with speedysvc.connect("work", f"shm://{sup.scope}", timeout=30) as c:
        try:
            c.hang()
        except speedysvc.WorkerDied:
            pass
    wait_until(lambda: pid not in sup.pids("work", states=("idle", "busy", "starting")), 30,
               message="the hung worker to be killed")
    logs = sup.cli("logs", "work", "-n", "500").stdout
    assert "Most recent call first" in logs or "most recent call first" in logs
    assert "in hang" in logs and "supervisor_services.py" in logs
    assert "its Python stacks go to its log" in sup.log_text()
