"""The adaptive spin rule (channel.SpinState; the compiled path has the same rule in C)."""
from __future__ import annotations

from speedysvc.shm.channel import MAX_SKIP, SpinState

MAX = 100_000


def test_fast_peers_keep_spinning_for_about_twice_their_replies():
    s = SpinState(MAX)
    for _ in range(50):
        budget = s.budget()
        assert budget > 0
        s.result(budget, True, 3_000)
    assert 6_000 <= s.budget() <= 12_000


def test_failed_spins_back_off_exponentially_then_probe_briefly():
    s = SpinState(MAX)
    for _ in range(20):
        s.result(s.budget(), True, 3_000)
    stretches = []
    for _ in range(8):
        budget = s.budget()
        assert budget > 0
        s.result(budget, False, budget)   # the peer had no core: nothing caught
        skipped = 0
        while (b := s.budget()) == 0:
            skipped += 1
        stretches.append(skipped)
        assert b <= 4 * s.ok_ns + 8_000 < MAX   # a probe, not the full budget
        s.skip, s.probe = 0, True                # put the probe back for the next round
    assert stretches == [1, 2, 4, 8, 16, 32, 64, 128]


def test_the_back_off_is_bounded_and_a_fast_reply_ends_it():
    s = SpinState(MAX)
    for _ in range(40):
        budget = s.budget()
        if budget:
            s.result(budget, False, budget)
    assert s.level <= MAX_SKIP
    while s.budget() == 0:
        pass
    s.result(1, True, 2_000)
    assert s.level == 0 and s.budget() > 0


def test_a_reply_caught_only_after_a_long_spin_counts_as_a_failure():
    s = SpinState(MAX)
    s.result(MAX, True, MAX * 3 // 4)
    assert s.level == 1 and s.budget() == 0


def test_no_spinning_when_disabled():
    s = SpinState(0)
    assert s.budget() == 0
