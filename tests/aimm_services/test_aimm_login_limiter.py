"""Failed-login limits per source and per username, kept in SQLite (no processes).

Regressions of the faults issue: the limiter only knew usernames (so one attacker could
keep the real user out from anywhere, and spraying usernames was never limited) and it
forgot everything when the engine restarted.
"""
import hashlib

import pytest

from aimm_services.auth import Authenticator
from aimm_services.errors import LoginFailed, LoginRateLimited
from aimm_services.login_limiter import LoginPolicy
from aimm_services.passwords import hash_password

DIGEST = hashlib.sha256(b"pw").hexdigest()
WRONG = "0" * 64


class FakeClock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def users():
    return {"x": hash_password("pw"), "y": hash_password("pw")}


def fail(auth, source, username, times=1):
    for _ in range(times):
        with pytest.raises((LoginFailed, LoginRateLimited)):
            auth.login_digest(username, WRONG, source)


def test_fifty_usernames_from_one_source_get_limited(users):
    auth = Authenticator(users, LoginPolicy(source_max_failures=20), FakeClock())
    outcomes = []
    for i in range(50):
        try:
            auth.login_digest(f"user{i}", WRONG, "A")
        except LoginRateLimited:
            outcomes.append("limited")
        except LoginFailed:
            outcomes.append("failed")
    assert outcomes[:20] == ["failed"] * 20 and set(outcomes[20:]) == {"limited"}
    with pytest.raises(LoginRateLimited, match="from A"):
        auth.login_digest("x", DIGEST, "A")      # the source is out, even with the password
    assert auth.require(auth.login_digest("x", DIGEST, "B")) == "x"


def test_attacker_on_a_user_does_not_lock_that_user_out_elsewhere(users):
    clock = FakeClock()
    auth = Authenticator(users, LoginPolicy(max_failures=5, lockout_s=30), clock)
    for _round in range(10):              # a persistent attacker keeps failing from A
        fail(auth, "A", "x", times=5)
        with pytest.raises(LoginRateLimited, match="for 'x' from A"):
            auth.login_digest("x", DIGEST, "A")
        # the real user, from B, logs in every time
        assert auth.require(auth.login_digest("x", DIGEST, "B")) == "x"
        clock.now += 2000
    # and another user is not affected from A either
    assert auth.require(auth.login_digest("y", DIGEST, "A")) == "y"


def test_lockouts_grow_and_a_success_resets_the_pair(users):
    clock = FakeClock()
    auth = Authenticator(users, LoginPolicy(max_failures=3, lockout_s=10), clock)
    fail(auth, "A", "x", times=3)
    with pytest.raises(LoginRateLimited, match="try again in 10 s"):
        auth.login_digest("x", DIGEST, "A")
    clock.now += 11
    fail(auth, "A", "x", times=3)
    with pytest.raises(LoginRateLimited, match="try again in 20 s"):
        auth.login_digest("x", DIGEST, "A")
    clock.now += 21
    auth.login_digest("x", DIGEST, "A")
    fail(auth, "A", "x", times=3)
    with pytest.raises(LoginRateLimited, match="try again in 10 s"):
        auth.login_digest("x", DIGEST, "A")


def test_limits_survive_a_restart(tmp_path, users):
    """The engine keeps the records in SQLite: a new Authenticator on the same file (what a
    restarted engine makes) still refuses the locked-out source."""
    clock = FakeClock()
    path = tmp_path / "aimm.db.logins"
    first = Authenticator(users, LoginPolicy(max_failures=3), clock, limiter_path=path)
    fail(first, "A", "x", times=3)
    fail(first, "S", "u", times=2)
    first.close()
    second = Authenticator(users, LoginPolicy(max_failures=3), clock, limiter_path=path)
    with pytest.raises(LoginRateLimited):
        second.login_digest("x", DIGEST, "A")
    fail(second, "S", "u", times=1)          # 2 before the restart + 1 = locked
    with pytest.raises(LoginRateLimited):
        second.login_digest("u", WRONG, "S")
    assert second.require(second.login_digest("x", DIGEST, "B")) == "x"
    second.close()


def test_speedysvc_client_logins_count_as_one_source(users):
    auth = Authenticator(users, LoginPolicy(max_failures=2), FakeClock())
    for _ in range(2):
        with pytest.raises(LoginFailed):
            auth.login("x", "wrong")
    with pytest.raises(LoginRateLimited, match="from speedysvc"):
        auth.login("x", "pw")
    assert auth.require(auth.login_digest("x", DIGEST, "remote:10.0.0.1")) == "x"
