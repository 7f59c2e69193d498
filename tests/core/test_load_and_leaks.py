"""Many concurrent clients, and many short-lived ones: nothing lost, mixed up or leaked."""
from __future__ import annotations

import multiprocessing
import os
import threading

import psutil
import pytest

from speedysvc import connect, naming, serve
from support_services import Echo

PROCESSES, THREADS, CALLS = 8, 4, 150


def _hammer(scope: str, proc_no: int, results) -> None:
    errors = []
    counts = []

    def thread_main(thread_no: int) -> None:
        client_id = f"p{proc_no}t{thread_no}"
        try:
            with connect(Echo, f"shm://{scope}") as c:
                n_ok = 0
                for n in range(CALLS):
                    payload = f"{client_id}:{n}:" + "x" * (n % 50)
                    got_id, got_n, _ = c.tagged(client_id, n)
                    echoed = c.echo(payload, suffix="")
                    if (got_id, got_n) != (client_id, n) or echoed != payload:
                        errors.append((client_id, n, got_id, got_n, echoed))
                    n_ok += 1
                counts.append(n_ok)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.append(repr(exc))
    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((proc_no, sum(counts), errors))


def test_8_processes_x_4_threads_every_reply_matches_its_request(scope):
    with serve(Echo, workers=2, scope=scope) as svc:
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        procs = [ctx.Process(target=_hammer, args=(svc.scope, i, results)) for i in range(PROCESSES)]
        for p in procs:
            p.start()
        collected = [results.get(timeout=240) for _ in procs]
        for p in procs:
            p.join(30)
        assert all(p.exitcode == 0 for p in procs)
    assert sorted(r[0] for r in collected) == list(range(PROCESSES))
    assert [r[2] for r in collected] == [[]] * PROCESSES  # no loss, duplication or cross-talk
    assert sum(r[1] for r in collected) == PROCESSES * THREADS * CALLS


def _shm_objects(scope: str) -> int:
    return len(naming.list_objects(scope))


def test_10000_connect_call_close_cycles_leak_nothing(scope):
    me = psutil.Process()
    with serve(Echo, workers=1, scope=scope) as svc:
        worker = psutil.Process(svc.worker_pids()[0])

        def cycle(n):
            for i in range(n):
                with connect(Echo, svc.shm_address) as c:
                    assert c.echo_raw(b"%d" % i) == b"%d" % i

        cycle(200)  # warm up caches, lazily created objects
        shm0, fds0, threads0 = _shm_objects(scope), me.num_fds(), threading.active_count()
        worker_fds0, worker_rss0 = worker.num_fds(), worker.memory_info().rss
        cycle(10_000)
        assert _shm_objects(scope) <= shm0, "shared-memory objects grew"
        assert me.num_fds() <= fds0, "client file descriptors grew"
        assert threading.active_count() <= threads0, "client threads grew"
        assert worker.num_fds() <= worker_fds0, "worker file descriptors grew"
        assert worker.memory_info().rss < worker_rss0 + 64 * 1024 * 1024, "worker memory grew"


def test_client_threads_that_come_and_go(scope):
    with serve(Echo, workers=2, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        shm0 = _shm_objects(scope)

        def one_call(i):
            assert c.echo(i) == i
            c.provider.release_thread_channel()
        for batch in range(20):
            threads = [threading.Thread(target=one_call, args=(batch * 10 + i,)) for i in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert _shm_objects(scope) <= shm0


@pytest.mark.parametrize("n", [1000])
def test_forked_child_uses_its_own_channels(scope, n):
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        assert c.echo("parent") == "parent!"
        pid = os.fork()
        if pid == 0:  # child: must not share the parent's channel
            ok = all(c.echo(i) == i for i in range(n))
            c.close()
            os._exit(0 if ok else 1)
        for i in range(n):
            assert c.echo(-i) == -i
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
