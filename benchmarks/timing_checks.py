"""How soon the things the pass/fail tests check happen, measured and printed.

    python -m benchmarks.timing_checks [--only NAME ...] [--repeat N]

The tests assert outcomes (a call failed with CallTimeout while it was still running, four
predicts were inside their plugins at once, a stop returned while a transport was stuck);
how long those took depends on how busy the machine is, so it is measured here instead, next
to the bound the tests once asserted. A row over its bound is flagged, not failed.

Reuses the tests' service classes and harnesses (tests/ is put on sys.path and PYTHONPATH, so
worker processes import them by module path too).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
TEST_DIRS = [REPO / "tests", REPO / "tests" / "aimm_services", REPO / "tests" / "supervisor",
             REPO / "tests" / "services"]
for _path in [REPO, *TEST_DIRS]:
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(p) for p in [REPO, *TEST_DIRS]] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


@contextlib.contextmanager
def _stopwatch(out: list[float]) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        out.append(time.monotonic() - started)


def _expect(exc_type: type[BaseException], call: Callable[[], Any]) -> None:
    try:
        call()
    except exc_type:
        return
    raise AssertionError(f"expected {exc_type.__name__}")


# -- core calls (tests/core/test_calls.py) ------------------------------------------------------
def call_timeout() -> dict[str, float]:
    """From the call to CallTimeout, 0.3 s timeout, on a call that sleeps 3 s."""
    from speedysvc import CallTimeout, connect, serve
    from speedysvc.serve import new_scope
    from support_services import Echo
    out: dict[str, float] = {}
    with serve(Echo, workers=4, scope=new_scope(), tcp="127.0.0.1:0") as svc:
        for transport, address in (("shm", svc.shm_address), ("tcp", svc.tcp_address)):
            times: list[float] = []
            with connect(Echo, address, timeout=0.3) as c, _stopwatch(times):
                _expect(CallTimeout, lambda c=c: c.sleep(3))
            out[transport] = times[0]
    return out


def connect_not_running() -> dict[str, float]:
    """From connect() to ServiceUnavailable for a service not running, connect_timeout 0.5 s."""
    from speedysvc import ServiceUnavailable, connect
    from speedysvc.serve import new_scope
    from support_services import Echo
    times: list[float] = []
    with _stopwatch(times):
        _expect(ServiceUnavailable, lambda: connect(Echo, f"shm://{new_scope()}", connect_timeout=0.5))
    return {"shm": times[0]}


def worker_death() -> dict[str, float]:
    """From the call to WorkerDied: a worker dying in the call (shm), SIGKILLed mid-call (tcp)."""
    from speedysvc import WorkerDied, connect, serve
    from speedysvc.serve import new_scope
    from support_services import Counter
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "calls.txt")
        with serve(Counter, workers=2, scope=new_scope()) as svc, connect(Counter, svc.shm_address) as c:
            times: list[float] = []
            with _stopwatch(times):
                _expect(WorkerDied, lambda: c.record_then_die(marker))
            out["shm, dies in the call"] = times[0]
        marker = os.path.join(tmp, "slept.txt")
        with serve(Counter, workers=1, scope=new_scope(), tcp="127.0.0.1:0") as svc, \
                connect(Counter, svc.tcp_address) as c:
            ended = threading.Event()

            def sleeping_call(c: Any = c) -> None:
                try:
                    _expect(WorkerDied, lambda: c.record_then_sleep(marker, 30))
                finally:
                    ended.set()
            caller = threading.Thread(target=sleeping_call)
            caller.start()
            while not (os.path.exists(marker) and open(marker).read().strip()):
                time.sleep(0.01)
            killed_at = time.monotonic()
            os.kill(int(open(marker).read().split()[0]), signal.SIGKILL)
            ended.wait(60)
            out["tcp, SIGKILL mid-call"] = time.monotonic() - killed_at
            caller.join(60)
    return out


def boot_failure() -> dict[str, float]:
    """From serve() to ServiceUnavailable when every worker fails in on_start."""
    from speedysvc import ServiceUnavailable, serve
    from speedysvc.serve import new_scope
    from support_services import BrokenAtStart

    def start() -> None:
        with serve(BrokenAtStart, workers=1, scope=new_scope(), start_timeout=60):
            pass
    times: list[float] = []
    with _stopwatch(times):
        _expect(ServiceUnavailable, start)
    return {"serve": times[0]}


# -- AIMM (tests/aimm_services/test_aimm_services.py) -------------------------------------------
def aimm() -> dict[str, float]:
    """Four 1 s predicts on four plugin workers (all at once: about 1 s), and from cancelling
    a running fit to ActionCancelled."""
    from aimm_deployment import PASSWORD, USER, deploy, write_config
    from aimm_services.client import AIMM
    from aimm_services.errors import ActionCancelled
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), max_children=4)
        with deploy(config, plugin_workers=4) as deployment, AIMM(deployment.shm_address) as client:
            client.login(USER, PASSWORD)
            models = [client.create_instance("aimm_test_plugins.Sleeper") for _ in range(4)]
            times: list[float] = []
            with _stopwatch(times):
                handles = [client.predict(m.instance_id, seconds=1.0, wait=False) for m in models]
                for h in handles:
                    h.result(timeout=30)
            out["four 1 s predicts"] = times[0]
            model = client.create_instance("test.Counter")
            handle = client.fit(model.instance_id, gate=os.path.join(tmp, "never"), wait=False)
            while not handle.progress:
                time.sleep(0.02)
            times = []
            with _stopwatch(times):
                handle.cancel()
                _expect(ActionCancelled, lambda: handle.result(timeout=30))
            out["cancel a running fit"] = times[0]
    return out


# -- supervisor (tests/supervisor/test_arbiter_lifecycle.py) ------------------------------------
def second_sigint() -> dict[str, float]:
    """From the first SIGINT to the supervisor's exit, a second SIGINT sent at once, with a
    30 s call in flight and a 60 s graceful timeout."""
    import speedysvc
    from speedysvc.serve import new_scope
    from supervisor_harness import Supervisor, wait_until
    with tempfile.TemporaryDirectory() as tmp:
        sup = Supervisor(tmp, new_scope(), {"Work": {}}, defaults={"graceful_timeout": "60s"})
        try:
            sup.start()
            client = speedysvc.connect("work", f"shm://{sup.scope}")
            caller = threading.Thread(target=lambda: _expect(Exception, lambda: client.sleep(30)))
            caller.start()
            wait_until(lambda: any(w["state"] == "busy" for w in sup.service("work")["workers"]))
            for child in sup.children():
                sup.seen_pids.add(child.pid)
            started = time.monotonic()
            sup.signal(signal.SIGINT)
            wait_until(lambda: "stopping gracefully" in sup.log_text())
            sup.signal(signal.SIGINT)
            sup.proc.wait(60)
            elapsed = time.monotonic() - started
            caller.join(60)
            client.close()
        finally:
            sup.cleanup()
    return {"stop": elapsed}


# -- device API (tests/services/test_device_api_*.py) -------------------------------------------
def device_api() -> dict[str, float]:
    """Heartbeat gaps (cadence 0.2 s) while a command handler blocks, and how long stop()
    takes with a transport that never drains (flush timeout 0.3 s)."""
    import zmq

    from device_api_peers import FAST_HEARTBEAT, ZmqPeer, rpc_options
    from services.device_api import (ApiCommandRequestResponse, ApiCommandRequestResult, ApiOptions,
                                     RpcService, create_api_service)
    out: dict[str, float] = {}
    heartbeat = (1001).to_bytes(4, "little")
    release = threading.Event()

    def handler(request: Any) -> Any:
        release.wait(60)
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)

    context = zmq.Context()
    service = create_api_service(ApiOptions(rpc=rpc_options()))
    service.command_request_delegate = handler
    service.start()
    peer = ZmqPeer(context, service.subscriber_port, service.command_port)
    try:
        peer.wait_until_subscribed(timeout=30)
        peer.send_raw(json.dumps({"command": 50, "nonce": 1}).encode())
        arrivals: list[float] = []
        while len(arrivals) < 11:
            frames = peer.recv_frames(timeout=30)
            if frames is None:
                raise AssertionError("heartbeats stopped while a handler blocks")
            if frames[0] == heartbeat:
                arrivals.append(time.monotonic())
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        out[f"heartbeat gap, max (cadence {FAST_HEARTBEAT:g} s)"] = max(gaps)
        out["heartbeat gap, mean"] = statistics.mean(gaps)
    finally:
        release.set()
        peer.close()
        service.stop(timeout=2.0)
        context.destroy(linger=0)

    class StuckTransport:
        name = "stuck"

        def __init__(self) -> None:
            self.unblock = threading.Event()

        def start(self, sink: Any) -> None:
            pass

        def publish(self, message: Any) -> None:
            self.unblock.wait(60)

        def stop(self, flush_timeout: float) -> None:
            pass

    transport = StuckTransport()
    stuck = RpcService(rpc_options(), [transport])
    stuck.start()
    for index in range(3):
        stuck.send_event_dict({"kind": 1301, "when": time.time(), "index": index, "context": None})
    times: list[float] = []
    with _stopwatch(times):
        stuck.stop(timeout=0.3)
    transport.unblock.set()
    out["stop(timeout=0.3) with a stuck transport"] = times[0]
    return out


# Each check: its function and the bounds the tests once asserted, by row.
CHECKS: dict[str, tuple[Callable[[], dict[str, float]], dict[str, float]]] = {
    "call_timeout": (call_timeout, {"shm": 2.5, "tcp": 2.5}),
    "connect_not_running": (connect_not_running, {"shm": 3.0}),
    "worker_death": (worker_death, {"shm, dies in the call": 2.5, "tcp, SIGKILL mid-call": 2.5}),
    "boot_failure": (boot_failure, {"serve": 30.0}),
    "aimm": (aimm, {"four 1 s predicts": 3.5, "cancel a running fit": 2.0}),
    "second_sigint": (second_sigint, {"stop": 25.0}),
    "device_api": (device_api, {"heartbeat gap, max (cadence 0.2 s)": 0.6,
                                "stop(timeout=0.3) with a stuck transport": 3.0}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), help="run only these checks")
    parser.add_argument("--repeat", type=int, default=1, help="run each check N times (median shown)")
    options = parser.parse_args(argv)
    over = 0
    for name in options.only or CHECKS:
        check, bounds = CHECKS[name]
        runs = [check() for _ in range(options.repeat)]
        for row in runs[0]:
            seconds = statistics.median(run[row] for run in runs)
            bound = bounds.get(row)
            flag = "" if bound is None or seconds < bound else "  OVER"
            over += bool(flag)
            limit = f"(tests once asserted < {bound:g} s)" if bound is not None else ""
            print(f"{name:20} {row:45} {seconds:8.3f} s  {limit}{flag}", flush=True)
    if over:
        print(f"{over} row(s) over the bound once asserted: a busy machine, or slower code", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
