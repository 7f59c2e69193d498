"""A bounded chaos run over shared memory: workers, callers and the pool's owner (what a
supervisor is to its services) are killed with SIGKILL at random while callers keep calling.

Afterwards every call has either its result or a specific error, no call ran twice, no caller
hung past its timeout, and nothing is left in /dev/shm or alive. Selected with `-m chaos`
(part of CI: the core suite runs every test); about 20 s.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from speedysvc import naming
from waiting import wait_until

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAOS_S = 10.0
CALL_TIMEOUT_S = 5.0
CALLERS = 3
SPECIFIC_ERRORS = {"WorkerDied", "CallTimeout", "ServiceUnavailable"}

OWNER = """
    import sys
    from speedysvc import serve
    from support_services import Ledger
    svc = serve(Ledger, workers=2, scope={scope!r})
    print("up", flush=True)
    sys.stdin.read()
    svc.stop()
"""

CALLER = """
    import json, os, random, sys, time
    from speedysvc import SpeedysvcError, connect
    from support_services import Ledger
    ledger, outcomes, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    rnd = random.Random(os.getpid())
    c = connect(Ledger, "shm://{scope}", timeout={timeout}, connect_timeout=30, unavailable_after=2.0)
    n = 0
    with open(outcomes, "a") as out:
        while not os.path.exists(stop):
            n += 1
            call_id = f"{{os.getpid()}}-{{n}}"
            out.write(json.dumps({{"id": call_id, "start": time.monotonic()}}) + "\\n")
            out.flush()
            try:
                got = c.record(ledger, call_id, rnd.choice([0, 0, 0, 0.01, 0.05]))
                outcome = {{"id": call_id, "result": got}}
            except SpeedysvcError as exc:
                outcome = {{"id": call_id, "error": type(exc).__name__}}
            outcome["end"] = time.monotonic()
            out.write(json.dumps(outcome) + "\\n")
            out.flush()
    c.close()
"""


def _records(path: str) -> list[dict]:
    """A caller's outcomes; none when it was killed before it made a call."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def _python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _start_owner(scope: str) -> subprocess.Popen:
    owner = _python(OWNER.format(scope=scope))
    assert owner.stdout.readline().strip() == "up"
    return owner


def _workers(owner: subprocess.Popen) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(owner.pid).children() if "worker_main" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.chaos
def test_kill_workers_callers_and_the_owner_at_random_while_calls_run(scope, tmp_path):
    rnd = random.Random(16)
    ledger, stop = str(tmp_path / "ledger.txt"), str(tmp_path / "stop")
    caller_code = CALLER.format(scope=scope, timeout=CALL_TIMEOUT_S)
    owners = [_start_owner(scope)]
    callers: list[tuple[subprocess.Popen, str]] = []
    killed_callers: list[str] = []

    def new_caller() -> None:
        path = str(tmp_path / f"outcomes{len(callers)}.jsonl")
        callers.append((_python(caller_code, ledger, path, stop), path))

    kills = {"worker": 0, "caller": 0, "owner": 0}
    try:
        for _ in range(CALLERS):
            new_caller()
        deadline = time.monotonic() + CHAOS_S
        restarted_owner = False
        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.2, 0.8))  # chaos cadence, not synchronisation
            action = rnd.choice(["worker", "worker", "worker", "caller"])
            if not restarted_owner and time.monotonic() > deadline - CHAOS_S / 2:
                action = "owner"
            if action == "worker" and (pids := _workers(owners[-1])):
                os.kill(rnd.choice(pids), signal.SIGKILL)
            elif action == "caller":
                live = [(p, path) for p, path in callers if p.poll() is None]
                proc, path = rnd.choice(live)
                proc.kill()
                proc.wait(10)
                killed_callers.append(path)
                new_caller()
            elif action == "owner":
                os.kill(owners[-1].pid, signal.SIGKILL)  # its workers die with it
                owners[-1].wait(10)
                owners.append(_start_owner(scope))
                restarted_owner = True
            else:
                continue
            kills[action] += 1
        open(stop, "w").close()
        for proc, _ in callers:
            proc.wait(CALL_TIMEOUT_S + 20)  # no caller hangs past its timeout
            assert proc.returncode in (0, -signal.SIGKILL), f"caller exited with {proc.returncode}"
    finally:
        open(stop, "a").close()
        for proc, _ in callers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()
            proc.stdin.close()
        for owner in owners:
            if owner.poll() is None:
                owner.communicate("", timeout=60)
            owner.stdout.close()
        naming.sweep_dead_clients(scope)

    executed = open(ledger).read().split() if os.path.exists(ledger) else []
    assert len(executed) == len(set(executed)), "a call ran twice"
    outcomes: dict[str, dict] = {}
    for _, path in callers:
        for record in _records(path):
            outcomes.setdefault(record["id"], {}).update(record)
    finished = {k: v for k, v in outcomes.items() if "end" in v}
    for call_id, o in finished.items():
        if "result" in o:
            assert o["result"] == call_id and call_id in executed, o
        else:
            assert o["error"] in SPECIFIC_ERRORS, o
        assert o["end"] - o["start"] < CALL_TIMEOUT_S + 5, f"{call_id} took {o['end'] - o['start']:.1f}s"
    # only callers that were killed may leave a call without an outcome (their last one)
    unfinished = [k for k, v in outcomes.items() if "end" not in v]
    killed_ids = {record["id"] for path in killed_callers for record in _records(path)}
    assert set(unfinished) <= killed_ids, unfinished
    ran_ok = [o for o in finished.values() if "result" in o]
    assert len(ran_ok) > 20, f"too few calls succeeded: {len(ran_ok)} of {len(finished)}"  # progress
    assert kills["worker"] >= 3 and kills["owner"] == 1 and kills["caller"] >= 1, kills
    wait_until(lambda: not naming.list_objects(scope), timeout=10, message="shared memory of the scope to go")
