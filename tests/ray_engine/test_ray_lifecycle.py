"""A supervisor with `ray_address = local` owns a Ray instance: it dies with the supervisor.

The test process is already a driver of the session's Ray instance, so the supervisor's own
instance is called from a client subprocess (which finds it through the supervisor's state
and address files, as any user's program would).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from ray_harness import RaySupervisor, wait_until

pytestmark = pytest.mark.ray


def ray_shm_objects() -> set[str]:
    """/dev/shm entries Ray makes (its object store's files)."""
    return {n for n in os.listdir("/dev/shm") if "plasma" in n or n.startswith("ray")}


def call_from_another_process(sup: RaySupervisor) -> str:
    env = {k: v for k, v in sup.env.items() if k != "RAY_ADDRESS"}
    code = textwrap.dedent("""
        import speedysvc
        with speedysvc.connect("echo", "ray://", connect_timeout=60) as c:
            print(c.echo("over ray"))
        """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def owned_processes(sup: RaySupervisor) -> list[psutil.Process]:
    procs = sup.children()
    assert any("local_cluster" in " ".join(p.cmdline()) for p in procs), \
        "no local Ray helper among the supervisor's processes"
    return procs


def start_local(ray_supervisor) -> RaySupervisor:
    sup = ray_supervisor({"Echo": {}}, supervisor={"ray_address": "local",
                                                   "ray_local_cpus": "1"})
    sup.start(timeout=150)
    return sup


def test_a_clean_stop_removes_the_applications_and_the_local_ray_instance(ray_supervisor, scope):
    before_shm = ray_shm_objects()
    sup = start_local(ray_supervisor)
    assert call_from_another_process(sup) == "over ray!"
    temp_dir = f"/tmp/ssr-{scope}"
    assert os.path.isdir(temp_dir)
    procs = owned_processes(sup)
    assert sup.stop(timeout=90) == 0
    gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], \
        f"processes left after a clean stop: {alive}"
    assert not os.path.exists(temp_dir), "the Ray instance's temp dir was left behind"
    assert ray_shm_objects() <= before_shm, "Ray left objects in /dev/shm"
    assert "stopped the local Ray instance" in sup.log_text()


def test_a_supervisor_killed_with_sigkill_leaves_no_ray_process(ray_supervisor, scope):
    before_shm = ray_shm_objects()
    sup = start_local(ray_supervisor)
    wait_until(lambda: sup.workers("echo"), 30, message="the replica to report")
    procs = owned_processes(sup)
    os.kill(sup.proc.pid, signal.SIGKILL)
    sup.proc.wait(10)
    gone, alive = psutil.wait_procs(procs, timeout=60)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes outlived the supervisor: {[p.cmdline()[:2] for p in alive]}"
    wait_until(lambda: not os.path.exists(f"/tmp/ssr-{scope}"), 30,
               message="the Ray instance's temp dir to be removed")
    assert ray_shm_objects() <= before_shm, "Ray left objects in /dev/shm"
