"""Serve's autoscaler adds replicas under load and removes them after it (within two minutes)."""
from __future__ import annotations

import threading

import pytest

import speedysvc
from speedysvc.errors import SpeedysvcError
from support_services import Echo

from ray_harness import wait_until

pytestmark = [pytest.mark.ray, pytest.mark.ray_scaling]


def running_replicas(sup) -> int:
    svc = sup.service("echo")
    return min(svc["replica_states"].get("RUNNING", 0),
               len([w for w in svc["workers"] if w["state"] in ("idle", "busy")]))


def test_replicas_scale_up_under_load_and_back_down(ray_supervisor):
    sup = ray_supervisor({"Echo": {"min_proc_num": "1", "max_proc_num": "2"}})
    sup.start(timeout=120)
    assert running_replicas(sup) == 1
    stop = threading.Event()

    def load() -> None:
        with speedysvc.connect(Echo, "ray://", timeout=60) as c:
            while not stop.is_set():
                try:
                    c.sleep(0.3)
                except SpeedysvcError:
                    pass
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: running_replicas(sup) == 2, 120,
                   message="Serve to scale echo up to 2 replicas")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    up = sup.service("echo")["last_scaling"]
    assert up and "1 -> 2" in up and "Serve autoscaler" in up
    wait_until(lambda: running_replicas(sup) == 1, 120,
               message="Serve to scale echo back down to 1 replica")
    # the reason is read from Serve's status a moment after the replica count changes
    wait_until(lambda: "2 -> 1" in (sup.service("echo")["last_scaling"] or ""), 30,
               message="the scale-down and its reason in status")
    # a manual scale raises the autoscaler's floor: Serve keeps 2 replicas without load
    out = sup.cli("scale", "--scope", sup.scope, "echo", "2")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: running_replicas(sup) == 2, 120, message="echo scaled to 2 by hand")
    assert "at least 2" in sup.service("echo")["last_scaling"]
