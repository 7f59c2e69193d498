"""No caller starves: with one worker kept busy by callers that never pause, another caller's
call is still served (the worker scans pending calls from after the one it served last)."""
from __future__ import annotations

import threading

from speedysvc import connect, serve
from support_services import Echo


def test_a_caller_is_served_while_two_others_keep_the_only_worker_busy(scope):
    with serve(Echo, workers=1, scope=scope) as svc:
        stop = threading.Event()

        def hammer() -> None:
            with connect(Echo, svc.shm_address) as c:
                while not stop.is_set():
                    c.echo("busy")

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            with connect(Echo, svc.shm_address, timeout=20) as late:
                assert [late.echo(f"late {i}") for i in range(50)] == [f"late {i}!" for i in range(50)]
        finally:
            stop.set()
            for t in threads:
                t.join(30)
