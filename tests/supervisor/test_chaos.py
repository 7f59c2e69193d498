"""Chaos, bounded: while callers run over shared memory and TCP, worker processes, callers and
the supervisor itself are killed with SIGKILL at random, and the supervisor is started again.

Afterwards, deterministic criteria: every call has a result or a specific error; no call ran
twice (the service writes each call down before answering); no call waited past its timeout;
callers recover after every kind of kill (including the supervisor's); nothing is left in
/dev/shm and no process outlives the test.

Select with `-m chaos`; it runs in CI within its cap (SPEEDYSVC_CHAOS_SECONDS, default 25).
"""
from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time

import psutil
import pytest

from speedysvc import naming
from supervisor_harness import HERE, REPO, wait_until, wait_until_dead

CHAOS_SECONDS = float(os.environ.get("SPEEDYSVC_CHAOS_SECONDS", "25"))
CALL_TIMEOUT = 5.0
SPECIFIC_ERRORS = {"WorkerDied", "CallTimeout", "ServiceUnavailable"}
LEDGER_PORT = 17314


class Callers:
    def __init__(self, sup, tmp_path):
        self.sup = sup
        self.dir = tmp_path / "callers"
        self.dir.mkdir()
        self.stop_file = str(self.dir / "STOP")
        self.procs: dict[int, subprocess.Popen] = {}
        self.all_pids: set[int] = set()
        self.steady: set[int] = set()   # never killed: they must live through every other kill

    def start(self, address: str, steady: bool = False) -> None:
        env = dict(self.sup.env)
        env.pop("SPEEDYSVC_SCOPE", None)
        n = len(self.all_pids)
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "chaos_caller.py"), address,
             str(self.dir / f"caller{n}.log"), self.stop_file, str(CALL_TIMEOUT)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / f"caller{n}.err", "w"))
        self.procs[proc.pid] = proc
        self.all_pids.add(proc.pid)
        if steady:
            self.steady.add(proc.pid)

    def kill_one(self, rng: random.Random) -> None:
        pid = rng.choice(sorted(set(self.procs) - self.steady))
        proc = self.procs.pop(pid)
        proc.kill()
        proc.wait(10)

    def lines(self) -> list[tuple[str, str, float]]:
        out = []
        for log in sorted(self.dir.glob("caller*.log")):
            for line in log.read_text().splitlines():
                call_id, outcome, seconds = line.split()
                out.append((call_id, outcome, float(seconds)))
        return out

    def ok_count(self) -> int:
        return sum(1 for _, outcome, _ in self.lines() if outcome == "ok")

    def stop(self) -> None:
        open(self.stop_file, "w").close()
        for proc in self.procs.values():
            try:
                proc.wait(2 * CALL_TIMEOUT + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise AssertionError(f"caller {proc.pid} did not stop: a call hangs") from None


def _workers(sup) -> list[psutil.Process]:
    return [c for c in sup.children() if "speedysvc.worker_main" in " ".join(c.cmdline())]


@pytest.mark.chaos
def test_kills_of_workers_callers_and_the_supervisor_cost_only_the_calls_they_hit(make_supervisor,
                                                                                  tmp_path):
    seed = int(os.environ.get("SPEEDYSVC_CHAOS_SEED", time.time()))
    rng = random.Random(seed)
    sup = make_supervisor({"Ledger": {"min_proc_num": "2", "max_proc_num": "3",
                                      "tcp_bind": "127.0.0.1", "scale_down_cooldown": "1h"}},
                          defaults={"crash_loop_restarts": "1000", "restart_backoff_max": "200ms"})
    sup.start()
    callers = Callers(sup, tmp_path)
    for address in (f"shm://{sup.scope}", "shm://", f"tcp://127.0.0.1:{LEDGER_PORT}"):
        callers.start(address, steady=True)
    for address in (f"shm://{sup.scope}", f"tcp://127.0.0.1:{LEDGER_PORT}"):
        callers.start(address)
    wait_until(lambda: callers.ok_count() >= 20, 60, message="the callers to get going")

    actions = collections.Counter()
    began = time.monotonic()
    deadline = began + CHAOS_SECONDS
    # the supervisor is killed at a third and at two thirds of the time; the rest is random
    supervisor_kills = [began + CHAOS_SECONDS / 3, began + 2 * CHAOS_SECONDS / 3]
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 1.0))   # the pace of the chaos, not a wait for anything
            what = rng.choices(["worker", "caller"], weights=[2, 1])[0]
            if supervisor_kills and time.monotonic() >= supervisor_kills[0]:
                supervisor_kills.pop(0)
                what = "supervisor"
            if what == "worker":
                workers = _workers(sup)
                if workers:
                    sup.seen_pids.update(w.pid for w in workers)
                    os.kill(rng.choice(workers).pid, signal.SIGKILL)
            elif what == "caller":
                callers.kill_one(rng)
                callers.start(rng.choice([f"shm://{sup.scope}", "shm://",
                                          f"tcp://127.0.0.1:{LEDGER_PORT}"]))
            else:
                children = sup.children()
                sup.seen_pids.update(c.pid for c in children)
                os.kill(sup.proc.pid, signal.SIGKILL)
                sup.proc.wait(10)
                assert wait_until_dead([c.pid for c in children]) == []
                sup.output.close()
                sup.start()
            actions[what] += 1

        # recovery: every caller still running -- the steady ones lived through every kill,
        # the supervisor's included -- gets answers again with the client it has
        sup.wait_running(60)
        assert callers.steady <= set(callers.procs)
        marks = {pid: _ok_lines(callers, pid) for pid in callers.procs}
        wait_until(lambda: all(_ok_lines(callers, pid) > marks[pid] for pid in callers.procs), 60,
                   message=f"every caller to be answered again (seed {seed}, {dict(actions)})")
    finally:
        callers.stop()
        for proc in callers.procs.values():
            if proc.poll() is None:
                proc.kill()
    assert sup.stop() == 0

    lines = callers.lines()
    outcomes = collections.Counter(outcome for _, outcome, _ in lines)
    unexpected = {o for o in outcomes if o != "ok" and o not in SPECIFIC_ERRORS}
    assert not unexpected, f"calls ended otherwise than with a result or a specific error: {outcomes}"
    slowest = max(seconds for _, _, seconds in lines)
    assert slowest <= 2 * CALL_TIMEOUT + 3, f"a call waited {slowest:.1f}s (timeout {CALL_TIMEOUT}s)"

    ledger = collections.Counter(line.split()[0] for line in
                                 open(os.path.join(sup.marks_dir, "ledger.txt")).read().splitlines())
    twice = [call_id for call_id, n in ledger.items() if n > 1]
    assert not twice, f"calls that ran twice: {twice[:10]}"
    answered = [call_id for call_id, outcome, _ in lines if outcome == "ok"]
    assert all(ledger[call_id] == 1 for call_id in answered)
    assert len(answered) >= 100, outcomes
    assert actions["worker"] and actions["caller"] and actions["supervisor"] == 2, actions

    wait_until(lambda: not [o for o in naming.list_objects(sup.scope)], 15,
               message="every shared-memory object of the scope to be gone")
    assert wait_until_dead(callers.all_pids) == []


def _ok_lines(callers: Callers, pid: int) -> int:
    total = 0
    for call_id, outcome, _ in callers.lines():
        if outcome == "ok" and call_id.startswith(f"{pid}-"):
            total += 1
    return total
