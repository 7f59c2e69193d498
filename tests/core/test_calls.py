"""Calling a service: client styles, errors, timeouts, unavailable services, dying workers."""
from __future__ import annotations

import os
import time

import pytest

from speedysvc import (CallTimeout, ClientMethodsBase, MethodNotFound, NetworkClient, RemoteError,
                       ServiceUnavailable, SHMClient, WorkerDied, connect, naming, serve)
from support_services import Counter, Echo, EchoError


@pytest.fixture(scope="module")
def running():
    from speedysvc.serve import new_scope
    with serve(Echo, workers=2, tcp="127.0.0.1:0", scope=new_scope()) as svc:
        yield svc
    assert naming.list_objects(svc.scope) == []


def addresses(svc):
    return [svc.shm_address, svc.tcp_address]


class EchoClient(ClientMethodsBase):
    """A hand-written client in the style of the published API."""

    def echo(self, data, suffix="!"):
        return self.send(Echo.echo, [data, suffix])

    def echo_raw(self, data):
        return self.send(Echo.echo_raw, data)

    echo_json = Echo.echo_json.as_rpc()
    stub_echo = Echo.echo.as_rpc()


@pytest.mark.parametrize("transport", [0, 1])
def test_client_methods_base_send_and_as_rpc(running, transport):
    host, port = running.tcp_address[len("tcp://"):].rsplit(":", 1)
    provider = (SHMClient(Echo, running.scope) if transport == 0
                else NetworkClient(Echo, host=host, port=int(port)))
    with EchoClient(provider) as client:
        assert client.echo("x") == "x!"
        assert client.echo("x", "?") == "x?"
        assert client.echo_raw(b"raw") == b"raw"
        assert client.echo_json(1, k=2) == [[1], {"k": 2}]
        assert client.stub_echo("s", suffix="#") == "s#"
        with pytest.raises(TypeError):  # checked against the server signature, locally
            client.stub_echo()


def test_send_requires_a_list_of_arguments(running):
    with EchoClient(SHMClient(Echo, running.scope)) as client:
        with pytest.raises(TypeError, match="as a list"):
            client.send(Echo.echo, "not a list")


def test_client_from_name_discovers_methods_and_encoders(running):
    for address in addresses(running):
        with connect("echo", address) as client:
            assert client.methods["echo_raw"] == "raw"
            assert client.methods["echo_json"] == "json"
            assert client.echo_raw(b"abc") == b"abc"
            assert client.echo_json("a") == [["a"], {}]
            description = client.describe()
            assert description["name"] == "echo"
            assert any(p["name"] == "suffix" and p["default"] == "'!'"
                       for p in description["methods"]["echo"]["params"])


def test_list_of_addresses_is_tried_in_order(running, scope):
    dead_tcp = "tcp://127.0.0.1:1"  # nothing listens on port 1
    with connect(Echo, [dead_tcp, f"shm://{scope}", running.tcp_address], connect_timeout=0.2) as c:
        assert c.provider.transport == "tcp"
        assert c.echo("ok") == "ok!"
    with pytest.raises(ServiceUnavailable) as info:
        connect(Echo, [dead_tcp, f"shm://{scope}"], connect_timeout=0.2)
    assert "tcp://127.0.0.1:1" in str(info.value) and scope in str(info.value)


def test_unknown_method_names_the_method_and_lists_the_real_ones(running):
    for address in addresses(running):
        with connect(Echo, address) as c:
            with pytest.raises(MethodNotFound, match="no method 'nope'.*echo"):
                c.nope()
            # and the server refuses it too, if a client sends it anyway
            with pytest.raises(MethodNotFound):
                c.provider.methods["nope"] = "msgpack"
                c.provider.call("nope")
            del c.provider.methods["nope"]


@pytest.mark.parametrize("transport", [0, 1])
def test_builtin_and_user_exceptions_reraise_with_remote_traceback(running, transport):
    with connect(Echo, addresses(running)[transport]) as c:
        with pytest.raises(ValueError, match="bad value") as info:
            c.fail_builtin("bad value")
        assert "fail_builtin" in info.value.remote_traceback
        assert "raise ValueError" in info.value.remote_traceback
        with pytest.raises(EchoError, match="custom") as info:
            c.fail_custom("custom")
        assert "raise EchoError" in info.value.remote_traceback
        assert c.echo("still fine") == "still fine!"


def test_exception_of_a_type_the_client_cannot_import_becomes_remote_error():
    from speedysvc.remote_errors import dict_to_exception
    exc = dict_to_exception({"type": "Boom", "module": "not_imported_anywhere", "message": "m",
                             "args": ["m"], "traceback": "tb"})
    assert isinstance(exc, RemoteError) and exc.type_name == "not_imported_anywhere.Boom"
    assert exc.remote_traceback == "tb"


@pytest.mark.parametrize("transport", [0, 1])
def test_per_call_and_default_timeouts(scope, transport, tmp_path):
    # enough workers that the abandoned calls do not hold up the calls that follow
    with serve(Echo, workers=4, scope=scope, tcp="127.0.0.1:0") as svc:
        check_timeouts(addresses(svc)[transport], str(tmp_path / "release"))


def check_timeouts(address, release):
    with connect(Echo, address, timeout=0.3) as c:
        try:
            # the call cannot finish before `release` exists, so CallTimeout here proves the
            # caller got control back while its call was still running (how soon: benchmarks/)
            with pytest.raises(CallTimeout, match="timed out"):
                c.block_until(release, 120)
        finally:
            open(release, "w").close()
        assert c.sleep.with_timeout(5)(0.5) == 0.5  # per-call override of the default
        assert c.echo("after timeout") == "after timeout!"  # the late reply is not mistaken for this one
    with connect(Echo, address) as c:
        try:
            with pytest.raises(CallTimeout):
                c.call("block_until", [release + ".2", 60], timeout=0.3)
        finally:
            open(release + ".2", "w").close()  # the abandoned call ends: stop need not wait for it


def test_service_not_running_gives_service_unavailable_after_bounded_wait(scope):
    # an error, not a hang (how long it waits: benchmarks/timing_checks.py)
    with pytest.raises(ServiceUnavailable, match="not running"):
        connect(Echo, f"shm://{scope}", connect_timeout=0.5)
    with pytest.raises(ServiceUnavailable):
        connect(Echo, "tcp://127.0.0.1:1", connect_timeout=0.5)


def test_worker_death_during_call_is_reported_and_not_rerun(scope, tmp_path):
    marker = tmp_path / "calls.txt"
    with serve(Counter, workers=2, scope=scope) as svc, connect(Counter, svc.shm_address) as c:
        # WorkerDied, not a CallTimeout at the end of the call timeout (how soon: benchmarks/)
        with pytest.raises(WorkerDied, match="died during the call"):
            c.record_then_die(str(marker))
        # the dead worker is replaced and the call was executed exactly once
        assert svc.wait_for_workers(2, timeout=20)
        assert len(marker.read_text().splitlines()) == 1
        assert c.record_then_sleep(str(tmp_path / "other.txt"), 0) == "slept"


def test_worker_killed_by_signal_mid_call_over_tcp(scope, tmp_path):
    marker = tmp_path / "calls.txt"
    with serve(Counter, workers=1, scope=scope, tcp="127.0.0.1:0") as svc:
        with connect(Counter, svc.tcp_address) as c:
            import threading
            result = {}

            def call():
                try:
                    c.record_then_sleep(str(marker), 30)
                except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                    result["exc"] = exc
            t = threading.Thread(target=call)
            t.start()
            from waiting import wait_until
            wait_until(lambda: marker.exists() and marker.read_text().strip(), message="call to start")
            pid = int(marker.read_text().split()[0])
            os.kill(pid, 9)
            # the call would sleep 30 s: finished within the join, with WorkerDied, it was the
            # death the caller heard of (how soon: benchmarks/timing_checks.py)
            t.join(10)
            assert not t.is_alive() and isinstance(result.get("exc"), WorkerDied), result
            assert len(marker.read_text().splitlines()) == 1


def test_two_scopes_run_side_by_side_and_leave_nothing(scope):
    from speedysvc.serve import new_scope
    other = new_scope()
    with serve(Echo, scope=scope) as a, serve(Echo, scope=other) as b:
        with connect(Echo, a.shm_address) as ca, connect(Echo, b.shm_address) as cb:
            assert ca.pid() != cb.pid()
            assert ca.pid() in a.worker_pids() and cb.pid() in b.worker_pids()
    assert naming.list_objects(scope) == [] and naming.list_objects(other) == []


def test_stale_objects_of_a_crashed_run_are_swept_at_next_start(scope):
    import posix_ipc
    # what a crashed run leaves: the service segment, its semaphores, a dead client's channel
    posix_ipc.SharedMemory(naming.service_segment(scope, "echo"), posix_ipc.O_CREX, size=4096).close_fd()
    posix_ipc.Semaphore(naming.service_semaphore(scope, "echo", "q"), posix_ipc.O_CREX).close()
    dead_pid = 2 ** 22 + 7  # above pid_max on typical systems: certainly not running
    posix_ipc.SharedMemory(naming.channel_segment(scope, dead_pid, 1, 1), posix_ipc.O_CREX, size=4096).close_fd()
    assert len(naming.list_objects(scope)) == 3
    with serve(Echo, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        assert c.echo("fresh") == "fresh!"
    assert naming.list_objects(scope) == []


def test_idle_service_uses_next_to_no_cpu(scope):
    import psutil
    with serve(Echo, workers=2, scope=scope) as svc:
        with connect(Echo, svc.shm_address) as c:
            c.echo("warm")
        procs = [psutil.Process(pid) for pid in svc.worker_pids()]
        before = [sum(p.cpu_times()[:2]) for p in procs]
        time.sleep(2.0)  # measuring a resource over an interval, not synchronising
        used = [sum(p.cpu_times()[:2]) - b for p, b in zip(procs, before, strict=True)]
    assert max(used) < 0.1, f"idle workers used {used} s of CPU in 2 s"


def test_a_worker_reaches_sibling_services_of_its_scope(scope):
    from support_services import SiblingCaller
    with serve(Echo, scope=scope), serve(SiblingCaller, scope=scope) as svc:
        with connect(SiblingCaller, svc.shm_address) as c:
            assert c.call_echo("hi") == [scope, "hi!"]


def test_closing_a_subscription_while_another_thread_waits_on_it(running):
    import queue
    import threading
    with connect(Echo, running.shm_address) as c:
        for _ in range(5):
            sub = c.subscribe(["x"])
            outcome = []

            def waiter(sub, outcome):
                try:
                    sub.get(timeout=30)
                except queue.Empty:
                    outcome.append("woken")
            t = threading.Thread(target=waiter, args=(sub, outcome))
            t.start()
            from waiting import wait_until
            wait_until(sub._lock.locked, message="waiter to block")
            sub.close()
            t.join(5)
            assert outcome == ["woken"]


def test_stopping_while_a_tcp_call_is_in_flight_cleans_up(scope):
    """Regression: the gateway used to unmap channels under a connection thread mid-call."""
    import threading
    from speedysvc import SpeedysvcError
    svc = serve(Echo(), workers=1, in_process=True, scope=scope, tcp="127.0.0.1:0")
    client = connect(Echo, svc.tcp_address)
    outcome = []

    def slow_call():
        try:
            outcome.append(client.sleep(1.5))
        except SpeedysvcError as exc:
            outcome.append(type(exc).__name__)
    t = threading.Thread(target=slow_call)
    t.start()
    from waiting import wait_until
    wait_until(lambda: any(w["state"] == "busy" for w in svc._segment.workers()), message="call in flight")
    svc.stop()  # must not raise, and must remove every shared-memory object
    t.join(10)
    client.close()
    # finished before the stop, or told that the server went away mid-call (never a hang)
    assert outcome and outcome[0] in (1.5, "ServiceUnavailable", "WorkerDied")
    assert naming.list_objects(scope) == []


def test_serve_without_a_with_block(scope):
    svc = serve(Echo, scope=scope)
    try:
        with connect(Echo, svc.shm_address) as c:
            assert c.echo("x") == "x!"
    finally:
        svc.stop()
    assert naming.list_objects(scope) == []


def test_a_second_pool_cannot_take_over_a_running_service(scope, caplog):
    import subprocess
    import sys
    # the first owner is another process (an owner in this process could be a restart)
    code = ("import sys, time; sys.path.insert(0, 'tests'); from speedysvc import serve; "
            "from support_services import Echo; "
            f"svc = serve(Echo, scope='{scope}'); print('up', flush=True); sys.stdin.read(); svc.stop()")
    owner = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout.readline().strip() == "up"
        with pytest.raises(RuntimeError, match="already running"):
            serve(Echo, scope=scope)
        # refused at start: its monitor never ticked a pool without a segment, nor waited out a stop
        assert "supervising echo failed" not in caplog.text
        assert "did not stop in time" not in caplog.text
        with connect(Echo, f"shm://{scope}") as c:  # the first one is untouched
            assert c.echo("still mine") == "still mine!"
    finally:
        owner.communicate("", timeout=30)


def test_a_full_call_queue_waits_for_room_instead_of_failing(scope):
    """Regression: more waiting clients than the queue holds raised 'queue full' at once."""
    import threading
    from speedysvc.shm import service_segment as ss
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        seg = ss.ServiceSegment.open(scope, "echo")
        me = os.getpid()
        taken = []  # every call slot a client of this process could use, held by live "clients"
        while (slot := seg.register(me, 10 ** 6 + len(taken), 1, time.monotonic() + 5)) is not None:
            taken.append((slot, me << 32 | 10 ** 6 + len(taken)))
        assert len(taken) >= 1024
        result = {}
        try:
            with pytest.raises(CallTimeout, match="stayed full"):
                c.echo.with_timeout(0.3)("never queued")
            caller = threading.Thread(target=lambda: result.setdefault("r", c.echo("patient")))
            caller.start()
            caller.join(0.3)
            assert caller.is_alive() and not result  # waiting for room, not failing
        finally:
            for slot, owner in taken:
                seg.unregister(slot, owner)
        caller.join(30)
        seg.close()
        assert result == {"r": "patient!"}
