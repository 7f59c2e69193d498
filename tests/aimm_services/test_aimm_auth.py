"""Password hashes, login/logout sessions and failed-login rate limiting (no processes)."""
import hashlib
import subprocess
import sys

import pytest

from aimm_services.auth import Authenticator, LoginPolicy
from aimm_services.errors import LoginFailed, LoginRateLimited, NotLoggedIn
from aimm_services.passwords import hash_password, verify_password


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_hash_is_salted_and_verifies():
    first, second = hash_password("secret"), hash_password("secret")
    assert first != second
    assert verify_password("secret", first) and not verify_password("Secret", first)


def test_aimm_unsalted_sha256_entries_still_work(caplog):
    legacy = hashlib.sha256(b"pw").hexdigest()
    auth = Authenticator({"old": legacy})
    assert "unsalted" in caplog.text
    assert auth.require(auth.login("old", "pw")) == "old"


def test_login_logout_and_require():
    auth = Authenticator({"ann": hash_password("pw")})
    with pytest.raises(NotLoggedIn, match="login"):
        auth.require(None)
    token = auth.login("ann", "pw")
    assert auth.require(token) == "ann"
    auth.logout(token)
    with pytest.raises(NotLoggedIn):
        auth.require(token)


def test_wrong_password_and_unknown_user_look_the_same():
    auth = Authenticator({"ann": hash_password("pw")})
    with pytest.raises(LoginFailed) as wrong:
        auth.login("ann", "nope")
    with pytest.raises(LoginFailed) as unknown:
        auth.login("bob", "pw")
    assert str(wrong.value) == str(unknown.value)


def test_failed_logins_are_rate_limited_with_growing_lockouts():
    clock = FakeClock()
    auth = Authenticator({"ann": hash_password("pw")},
                         LoginPolicy(max_failures=3, window_s=60, lockout_s=10), clock)
    for _ in range(3):
        with pytest.raises(LoginFailed):
            auth.login("ann", "bad")
    with pytest.raises(LoginRateLimited, match="try again in 10 s"):
        auth.login("ann", "pw")           # even the right password waits out the lockout
    clock.now += 11
    for _ in range(3):
        with pytest.raises(LoginFailed):
            auth.login("ann", "bad")
    with pytest.raises(LoginRateLimited, match="20 s"):
        auth.login("ann", "pw")
    clock.now += 21
    assert auth.require(auth.login("ann", "pw")) == "ann"


def test_sessions_expire_when_idle():
    clock = FakeClock()
    auth = Authenticator({"ann": hash_password("pw")}, LoginPolicy(session_idle_s=5), clock)
    token = auth.login("ann", "pw")
    clock.now += 4
    auth.require(token)
    clock.now += 6
    with pytest.raises(NotLoggedIn):
        auth.require(token)


def test_password_command_prints_a_usable_hash():
    done = subprocess.run([sys.executable, "-m", "aimm_services.passwords", "--stdin"],
                          input="s3cret\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert verify_password("s3cret", done.stdout.strip())
