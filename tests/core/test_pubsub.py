"""Publish/subscribe over both transports: every event after subscribing, in order, numbered."""
from __future__ import annotations

import queue

import pytest

from speedysvc import connect, naming, serve
from support_services import Echo


@pytest.fixture(scope="module")
def running():
    from speedysvc.serve import new_scope
    with serve(Echo, workers=2, tcp="127.0.0.1:0", scope=new_scope()) as svc:
        yield svc
    assert naming.list_objects(svc.scope) == []


@pytest.mark.parametrize("transport", ["shm", "tcp"])
def test_subscriber_receives_every_event_in_order_with_sequence_numbers(running, transport):
    address = running.shm_address if transport == "shm" else running.tcp_address
    with connect(Echo, address) as c:
        c.publish_many("before", 3)  # published before subscribing: must not be delivered
        with c.subscribe(["orders"]) as sub:
            c.publish_many("orders", 200)
            c.publish_many("other-topic", 5)
            c.publish_many("orders", 50, start=200)
            events = [sub.get(timeout=10) for _ in range(250)]
            assert [e.payload["i"] for e in events] == list(range(250))
            assert {e.topic for e in events} == {"orders"}
            topic_seqs = [e.topic_seq for e in events]
            assert topic_seqs == list(range(topic_seqs[0], topic_seqs[0] + 250))  # no gaps
            seqs = [e.seq for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == 250
            with pytest.raises(queue.Empty):
                sub.get(timeout=0.2)
            assert sub.missed == 0


def test_all_topics_and_several_subscribers(running):
    with connect(Echo, running.shm_address) as c, connect(Echo, running.tcp_address) as t:
        with c.subscribe() as everything, t.subscribe(["b"]) as only_b:
            c.publish_many("a", 2)
            c.publish_many("b", 2)
            got = [everything.get(timeout=5) for _ in range(4)]
            assert [(e.topic, e.payload["i"]) for e in got] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
            got_b = [only_b.get(timeout=5) for _ in range(2)]
            assert [e.payload["i"] for e in got_b] == [0, 1]


def test_slow_subscriber_sees_the_gap_instead_of_torn_data(running):
    from speedysvc.shm.events import SLOTS
    with connect(Echo, running.shm_address) as c, c.subscribe(["flood"]) as sub:
        c.publish_many("flood", SLOTS + 100)  # overruns the ring before the subscriber reads
        first = sub.get(timeout=5)
        assert first.payload["i"] >= 100  # the oldest events were overwritten...
        assert sub.missed >= 100          # ...and the subscriber was told how many it lost
        assert first.topic_seq == first.payload["i"] + first.topic_seq - first.payload["i"]


def test_publish_outside_a_running_service_is_a_clear_error():
    with pytest.raises(RuntimeError, match="only available while the service is being served"):
        Echo().publish("t", 1)


def test_shm_subscription_follows_a_service_stopped_and_started_again(scope):
    """Regression: after a stop/start the subscriber kept waiting on the old, dead ring."""
    from speedysvc import SHMClient
    svc = serve(Echo, scope=scope)
    try:
        with connect(Echo, svc.shm_address) as c, SHMClient(Echo, scope).subscribe(["t"]) as sub:
            c.publish_many("t", 1)
            assert sub.get(timeout=5).payload == {"i": 0}
            svc.stop()
            svc = serve(Echo, scope=scope)
            from waiting import wait_until

            def delivered():  # publish until the subscriber has re-attached and hears it
                c.publish_many("t", 1, start=7)
                try:
                    return sub.get(timeout=0.3)
                except queue.Empty:
                    return None
            event = wait_until(delivered, timeout=15, message="an event from the restarted service")
            assert event.payload == {"i": 7} and sub._source.reattached == 1
    finally:
        svc.stop()


def test_tcp_subscription_survives_the_worker_serving_it_retiring(scope):
    with serve(Echo, workers=1, scope=scope, tcp="127.0.0.1:0") as svc:
        with connect(Echo, svc.tcp_address) as c, c.subscribe(["t"]) as sub:
            c.publish_many("t", 1)
            assert sub.get(timeout=5).payload == {"i": 0}
            old = svc.pool.live()[0]  # the only worker, so it published every event so far
            svc.restart_worker(old.worker_id)  # its replacement serves before it stops
            old.popen.wait(30)
            from waiting import wait_until

            def delivered():
                c.publish_many("t", 1, start=5)
                try:
                    return sub.get(timeout=0.3)
                except queue.Empty:
                    return None
            event = wait_until(delivered, timeout=15, message="events after the worker retired")
            # the connection lives in the pool's TCP front: a worker retiring does not touch it
            assert event.payload == {"i": 5} and sub._source.reattached == 0


def test_tcp_subscription_reconnects_when_the_tcp_front_is_replaced(scope):
    import os
    import signal
    from waiting import wait_until
    with serve(Echo, workers=1, scope=scope, tcp="127.0.0.1:0") as svc:
        with connect(Echo, svc.tcp_address) as c, c.subscribe(["t"]) as sub:
            c.publish_many("t", 1)
            assert sub.get(timeout=5).payload == {"i": 0}
            front = svc.pool.front_pid()
            os.kill(front, signal.SIGKILL)
            wait_until(lambda: svc.pool.front_pid() not in (None, front), timeout=15, message="a new front")

            def delivered():
                try:
                    c.publish_many("t", 1, start=7)
                    return sub.get(timeout=0.3)
                except Exception:  # noqa: BLE001 - the call itself may meet the dead front once
                    return None
            event = wait_until(delivered, timeout=15, message="events through the new front")
            assert event.payload == {"i": 7} and sub._source.reattached >= 1
