"""Scaling with real processes: up under load and back down when idle, each decision logged
with its reason; TTIN/TTOU and `speedysvc scale` as manual steps."""
from __future__ import annotations

import re
import signal
import threading

import speedysvc
from supervisor_harness import wait_until

AUTOSCALE = {"min_proc_num": "1", "max_proc_num": "3", "scale_interval": "200ms",
             "scale_up_intervals": "2", "scale_down_intervals": "3", "scale_up_cooldown": "200ms",
             "scale_down_cooldown": "600ms", "scale_step_max": "1", "scale_up_busy": "0.6",
             "scale_down_busy": "0.2"}


def test_scales_up_under_load_and_back_down_when_idle(make_supervisor):
    sup = make_supervisor({"Work": AUTOSCALE}).start()
    assert len(sup.pids("work")) == 1
    stop = threading.Event()

    def load():
        with speedysvc.connect("work", f"shm://{sup.scope}") as c:
            while not stop.is_set():
                c.sleep(0.05)   # busy time without burning the CPU the supervisor needs

    clients = [threading.Thread(target=load) for _ in range(6)]
    for t in clients:
        t.start()
    try:
        wait_until(lambda: len(sup.pids("work")) == 3, timeout=30, message="scale-up to 3")
    finally:
        stop.set()
        for t in clients:
            t.join(30)
    wait_until(lambda: len(sup.pids("work", states=("idle", "busy", "stopping"))) == 1, timeout=30,
               message="scale-down to 1 when idle")
    with sup.control() as c:
        entries = c.logs("work", lines=500, text="scaling work")["entries"]
    # the reason names the measurement: busy fraction or queue per worker above its threshold
    ups = [e["message"] for e in entries if "->" in e["message"]
           and re.search(r"busy \d\.\d\d > 0\.60|queue [\d.]+ per worker > 1\.0", e["message"])]
    downs = [e["message"] for e in entries if "< 0.20" in e["message"] and "->" in e["message"]]
    assert any("1 -> 2" in m for m in ups) and any("2 -> 3" in m for m in ups), entries
    assert any("3 -> 2" in m for m in downs) and any("2 -> 1" in m for m in downs), entries
    assert sup.service("work")["last_scaling"]
    assert sup.stop() == 0


def test_ttin_ttou_and_scale_command(make_supervisor):
    manual = {"min_proc_num": "1", "max_proc_num": "3", "scale_down_cooldown": "1h"}
    sup = make_supervisor({"Work": manual, "Other": {"max_proc_num": "2"}}).start()
    sup.signal(signal.SIGTTIN)
    wait_until(lambda: len(sup.pids("work")) == 2 and len(sup.pids("other")) == 2,
               message="TTIN to add a worker to every service")
    sup.signal(signal.SIGTTIN)   # other is at its max: only work grows
    wait_until(lambda: len(sup.pids("work")) == 3, message="TTIN again")
    assert len(sup.pids("other")) == 2
    sup.signal(signal.SIGTTOU)
    wait_until(lambda: len(sup.pids("work")) == 2 and len(sup.pids("other")) == 1,
               message="TTOU to remove a worker from every service")

    scaled = sup.cli("scale", "work", "3")
    assert scaled.returncode == 0, scaled.stderr
    wait_until(lambda: len(sup.pids("work")) == 3, message="scale work 3")
    refused = sup.cli("scale", "work", "9")
    assert refused.returncode == 1 and "outside" in refused.stdout
    unknown = sup.cli("scale", "nosuch", "1")
    assert unknown.returncode == 1 and "no service named 'nosuch'" in unknown.stderr
    assert sup.stop() == 0
