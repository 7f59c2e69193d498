"""Retention of asynchronous command results, on a controlled clock."""
from __future__ import annotations

from services.device_api.command_results import CommandResultStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pending_then_complete_then_expired():
    clock = FakeClock()
    store = CommandResultStore(retention=60, pending_timeout=600, clock=clock)
    store.mark_pending(7, 50)
    assert store.lookup(7) == {"nonce": 7, "state": "pending", "command": 50, "response": None}
    clock.now += 500
    store.complete(7, 50, {"result": 100})
    clock.now += 59
    assert store.lookup(7)["response"] == {"result": 100}
    clock.now += 1
    assert store.lookup(7)["state"] == "unknown"


def test_pending_commands_are_forgotten_after_their_timeout():
    clock = FakeClock()
    store = CommandResultStore(retention=60, pending_timeout=600, clock=clock)
    store.mark_pending(1, 50)
    clock.now += 600
    assert store.lookup(1)["state"] == "unknown"


def test_a_result_published_before_the_handler_returned_is_not_overwritten():
    store = CommandResultStore(retention=60, pending_timeout=600, clock=FakeClock())
    store.complete(3, 50, {"result": 100})
    store.mark_pending(3, 50)
    assert store.lookup(3)["state"] == "complete"


def test_the_oldest_entries_go_first_when_full():
    store = CommandResultStore(retention=60, pending_timeout=600, max_entries=2, clock=FakeClock())
    for nonce in (1, 2, 3):
        store.complete(nonce, 50, {})
    assert [store.lookup(n)["state"] for n in (1, 2, 3)] == ["unknown", "complete", "complete"]
