"""Services deployed from an .ini with engine = ray, called through ray:// on a real Ray instance."""
from __future__ import annotations

import os

import numpy as np
import pytest

import speedysvc
from speedysvc import ClientMethodsBase, naming
from speedysvc.errors import CallTimeout, ServiceUnavailable, WorkerDied
from speedysvc.serve import new_scope
from support_services import Counter, Echo, EchoError

from ray_harness import RaySupervisor, serve_apps, wait_until

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def sup(tmp_path_factory, ray_cluster):
    """One supervisor for the module: Echo and Counter on Ray, Echo2 kept local."""
    scope = new_scope()
    s = RaySupervisor(tmp_path_factory.mktemp("raycalls"), scope, {
        "Echo": {},
        "Counter": {},
        # engine = local keeps a service on this machine, in worker processes
        "SiblingCaller": {"engine": "local"},
        "LocalCaller": {"engine": "local", "import_from": "ray_services"},
        "RayCaller": {"import_from": "ray_services"},
        "Calculator": {"import_from": "speedysvc.examples"},   # as example.ini has it
        "Hog": {"import_from": "ray_services", "max_proc_mem_bytes": "400MiB"},
    }, web_monitor={"enabled": "true", "port": "0"})
    s.start(timeout=120)
    yield s
    try:
        s.cleanup()
        assert not serve_apps(scope), "the supervisor's Serve applications were left running"
    finally:
        leftovers = naming.list_objects(scope)
        naming.sweep(scope)
    assert not leftovers, f"shared-memory objects left behind: {leftovers}"


@pytest.fixture
def echo(sup):
    with speedysvc.connect(Echo, "ray://", timeout=30) as c:
        yield c


def test_every_encoder_round_trips_through_ray(echo):
    assert echo.echo("hi", suffix="?") == "hi?"
    assert echo.echo({1: (2, 3)}) == {1: [2, 3]}            # msgpack as over shm: int keys kept
    assert echo.echo_raw(b"\x00bytes") == b"\x00bytes"
    assert echo.echo_json(1, [2], k="v") == [[1, [2]], {"k": "v"}]
    assert echo.echo_pickle({1: (2, 3), "s": {4}}) == {1: (2, 3), "s": {4}}   # tuples and sets kept
    assert echo.echo_marshal((1, 2.5, b"x")) == (1, 2.5, b"x")


def test_numpy_arrays_keep_dtype_and_shape(echo):
    small = np.arange(12, dtype=np.int16).reshape(3, 4)
    big = np.random.default_rng(1).random((512, 300))         # out of band: > 16 KiB
    back = echo.echo(small)
    assert back.dtype == small.dtype and back.shape == (3, 4) and (back == small).all()
    assert (echo.echo(big) == big).all()
    assert echo.array_info(big) == {"dtype": "<f8", "shape": [512, 300], "sum": float(big.sum())}


def test_client_methods_base_over_ray(sup):
    class EchoClient(ClientMethodsBase):
        echo = Echo.echo.as_rpc()
        pid = Echo.pid.as_rpc()

        def shout(self, text):
            return self.send(Echo.echo, [text.upper(), "!!"])

    with EchoClient(speedysvc.connect(Echo, f"ray:///{sup.scope}")) as client:
        assert client.echo("a") == "a!"
        assert client.shout("hey") == "HEY!!"
        assert isinstance(client.pid(), int)


def test_a_client_without_the_class_discovers_the_methods(sup):
    with speedysvc.connect("echo", "ray://") as c:
        assert c.provider.transport == "ray"
        assert "echo_pickle" in c.describe()["methods"]
        assert c.echo("x") == "x!"


def test_remote_exceptions_keep_type_message_and_traceback(echo):
    with pytest.raises(EchoError, match="custom trouble") as info:
        echo.fail_custom("custom trouble")
    assert "fail_custom" in info.value.remote_traceback
    with pytest.raises(ValueError, match="plain trouble"):
        echo.fail_builtin("plain trouble")
    assert echo.echo("still fine") == "still fine!"


def test_a_call_over_its_timeout_raises_call_timeout(echo):
    with pytest.raises(CallTimeout):
        echo.sleep.with_timeout(0.3)(3)
    assert echo.echo("after") == "after!"


def test_a_service_that_is_not_deployed_is_unavailable(sup):
    with pytest.raises(ServiceUnavailable):
        speedysvc.connect("no_such_service", f"ray:///{sup.scope}", connect_timeout=1)


def test_events_reach_a_ray_subscriber_in_order(echo):
    with echo.subscribe(["tick"]) as sub:
        assert echo.publish_many("tick", 5) == 5
        got = [sub.get(timeout=20) for _ in range(5)]
    assert [e.payload["i"] for e in got] == [0, 1, 2, 3, 4]
    assert [e.topic_seq for e in got] == sorted(e.topic_seq for e in got)
    assert sub.missed == 0


def test_a_replica_killed_mid_call_gives_worker_died_and_the_call_never_runs_twice(sup, tmp_path):
    marks = tmp_path / "ran"
    with speedysvc.connect(Counter, "ray://", timeout=60) as counter:
        before = {w["pid"] for w in sup.workers("counter")} or None
        with pytest.raises(WorkerDied):
            counter.record_then_die(str(marks))
        assert len(marks.read_text().split()) == 1
        # Serve replaces the replica; the service answers again from a new process
        assert wait_until(lambda: _answers(counter, tmp_path / "probe"), 60,
                          message="a replacement replica to answer")
    wait_until(lambda: {w["pid"] for w in sup.workers("counter")} - (before or set()), 30,
               message="status to list the replacement replica")
    assert len(marks.read_text().split()) == 1, "the killed call was run again"


def _answers(counter, path) -> bool:
    try:
        return counter.record_then_sleep(str(path), 0) == "slept"
    except (WorkerDied, ServiceUnavailable, CallTimeout):
        return False


def test_a_request_delivered_again_is_not_run_twice(sup, tmp_path):
    """The request-id guard: Serve's router re-sends a request (attempt 2) after the replica
    it chose died; a replica that finds the id already started answers WorkerDied."""
    from ray import serve
    from speedysvc import dispatch, serialisers
    marks = tmp_path / "ran"
    request = b"".join(dispatch.encode_request(
        "record_then_sleep", serialisers.SERIALISERS["msgpack"].code,
        serialisers.SERIALISERS["msgpack"].encode_call([str(marks), 0], {})))
    with speedysvc.connect(Counter, "ray://"):
        handle = serve.get_app_handle(f"{sup.scope}.counter").options(method_name="call")
    rid = os.urandom(16)
    first = handle.remote(rid, 1, request).result(timeout_s=30)
    assert dispatch.decode_reply(memoryview(first), serialisers.SERIALISERS["msgpack"]) == "slept"
    again = handle.remote(rid, 2, request).result(timeout_s=30)
    with pytest.raises(WorkerDied, match="at most once"):
        dispatch.decode_reply(memoryview(again), serialisers.SERIALISERS["msgpack"])
    # a second attempt of a request no replica started (Serve rejected it) does run
    other = handle.remote(os.urandom(16), 2, request).result(timeout_s=30)
    assert dispatch.decode_reply(memoryview(other), serialisers.SERIALISERS["msgpack"]) == "slept"
    assert len(marks.read_text().split()) == 2


def test_status_shows_replicas_with_their_own_readings(sup, echo):
    for _ in range(20):
        echo.echo("load")

    def replica_rows():
        svc = sup.service("echo")
        rows = [w for w in svc["workers"] if w["state"] in ("idle", "busy")]
        return svc if rows and all(w["rss"] > 0 for w in rows) and sum(
            w["calls"] for w in rows) >= 20 else None
    svc = wait_until(replica_rows, 30, message="replica readings in status")
    assert svc["engine"] == "ray" and svc["ray_application"] == f"{sup.scope}.echo"
    assert svc["status"] == "running" and svc["replica_states"].get("RUNNING", 0) >= 1
    replica = svc["workers"][0]
    assert replica["node"] and replica["replica"] and replica["pid"] != os.getpid()
    # one client calling in turn: Serve's router sent every request once (attempt 1), so no
    # call paid for the re-delivery check
    assert replica["redeliveries"] == 0
    out = sup.cli("status", "--scope", sup.scope)
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if row.startswith("echo "))
    assert "running" in line and "MiB" in line


def test_an_engine_local_service_runs_in_local_worker_processes(sup):
    svc = sup.service("sibling_caller")
    assert svc.get("engine", "local") == "local" and svc["status"] == "running"
    pids = [w["pid"] for w in svc["workers"]]
    assert pids and all(p in {c.pid for c in sup.children()} for p in pids)
    with speedysvc.connect("sibling_caller", f"shm://{sup.scope}") as c:
        assert c.provider.transport == "shm"


def test_service_logs_gather_replica_output(sup, echo):
    echo.print_line("hello from a replica")
    out = wait_until(lambda: (lambda r: r if "hello from a replica" in r.stdout else None)(
        sup.cli("logs", "--scope", sup.scope, "echo", "-n", "200")), 30,
        message="the replica's print in speedysvc logs")
    assert out.returncode == 0


def test_a_sibling_is_reached_on_whichever_engine_runs_it(sup):
    with speedysvc.connect("local_caller", f"shm://{sup.scope}", timeout=120) as local:
        assert local.call_echo("from a worker") == ["ray", "from a worker!"]
    with speedysvc.connect("ray_caller", "ray://", timeout=60) as remote:
        assert remote.call_echo("from a replica") == ["ray", sup.scope, "from a replica!"]


def test_the_web_monitor_shows_replicas(sup, echo):
    import json
    import urllib.request
    echo.echo("seen by the monitor")
    url = wait_until(lambda: sup.state().get("web_monitor"), 60, message="the web monitor's URL")

    def replicas():
        with urllib.request.urlopen(url + "api/services/echo", timeout=10) as r:
            data = json.load(r)
        rows = [w["raw"] for w in data["workers"]]
        return data if rows and all(w["rss"] > 0 and w.get("node") for w in rows) else None
    data = wait_until(replicas, 30, message="replicas in the monitor's service status")
    assert data["raw"]["engine"] == "ray" and data["status"] == "running"
    with urllib.request.urlopen(url + "services/echo", timeout=10) as r:
        page = r.read().decode()
    assert str(data["workers"][0]["raw"]["pid"]) in page
    assert f"on Ray Serve ({sup.scope}.echo)" in page
    with urllib.request.urlopen(url + "health", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(url + "metrics", timeout=10) as r:
        assert 'service="echo"' in r.read().decode()


def test_restart_rolls_every_replica_and_restart_worker_replaces_one(sup, echo):
    old = {w["pid"] for w in sup.workers("echo")}
    out = sup.cli("restart", "--scope", sup.scope, "echo")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: (lambda pids: pids and not pids & old)({w["pid"] for w in sup.workers("echo")}),
               90, message="Serve to replace every echo replica")
    assert echo.echo("after restart") == "after restart!"
    target = sup.workers("echo")[0]
    with sup.control() as control:
        assert control.restart_worker("echo", target["worker_id"])["ok"]
    wait_until(lambda: (lambda ws: ws and target["pid"] not in {w["pid"] for w in ws})(
        sup.workers("echo")), 90, message="Serve to replace the killed replica")
    assert wait_until(lambda: _echoes(echo), 60, message="echo to answer again")


def _echoes(echo) -> bool:
    try:
        return echo.echo("again") == "again!"
    except (WorkerDied, ServiceUnavailable, CallTimeout):
        return False


def test_the_example_calculator_runs_on_ray(sup):
    with speedysvc.connect("calculator", "ray://") as calc:
        assert calc.add(2, 3) == 5
        assert calc.sqrt(16.0) == 4.0                       # marshal
        assert calc.slow_sum(10, seconds=0.01) == 45
        with pytest.raises(ZeroDivisionError, match="cannot divide by zero"):
            calc.divide(1, 0)                               # json, a remote builtin exception


def test_a_replica_over_max_proc_mem_bytes_is_replaced(sup):
    with speedysvc.connect("hog", "ray://", timeout=60) as hog:
        first = hog.grow(450)          # over 400MiB: its health check fails from now on
        def replaced():
            try:
                return hog.pid() != first
            except (WorkerDied, ServiceUnavailable, CallTimeout):
                return False
        wait_until(replaced, 90, message="Serve to replace the replica over its memory limit")
        assert hog.grow(1) != first    # the new replica serves, small again
    rows = wait_until(lambda: [w for w in sup.workers("hog") if w["pid"] != first], 30,
                      message="status to list the new replica")
    assert all(w["rss"] < 400 * 2**20 for w in rows)
