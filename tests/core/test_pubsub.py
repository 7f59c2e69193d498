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
