"""Where the monitor listens and how it authenticates, read from the `[web monitor]` section of the
supervisor's .ini and the environment. The same rules serve the supervisor and
`python -m web_monitor`, so both refuse the same unsafe setups."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Mapping

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5155
PASSWORD_HASH_ENV = "SPEEDYSVC_MONITOR_PASSWORD_HASH"
SECRET_KEY_ENV = "SPEEDYSVC_MONITOR_SECRET_KEY"
SECTION = "web monitor"
# werkzeug.security hash methods; anything else is almost certainly a pasted plain password.
_HASH_METHODS = ("scrypt", "pbkdf2")


class MonitorConfigError(ValueError):
    """The monitor's settings are unusable or unsafe; the message says what to change."""


def is_loopback(host: str) -> bool:
    """True when only this machine can reach `host`. Unknown names count as reachable from
    outside: resolving them could give a different answer later."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_password_hash_format(password_hash: str) -> str:
    """Return the hash if it looks like werkzeug.security output, else raise MonitorConfigError."""
    parts = password_hash.split("$")
    if len(parts) != 3 or not parts[0].startswith(_HASH_METHODS) or not parts[1] or not parts[2]:
        raise MonitorConfigError(
            "[web monitor] password_hash is not a salted hash (expected 'scrypt:...$salt$hash' or "
            "'pbkdf2:...$salt$hash'). Create one with: python -m web_monitor.passwords")
    return password_hash


def check_port(value: str | int, where: str = "[web monitor] port") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise MonitorConfigError(f"{where}: expected a port number 0-65535, found {value!r}") from None
    if not 0 <= port <= 65535:
        raise MonitorConfigError(f"{where}: expected a port number 0-65535, found {port}")
    return port


@dataclass(frozen=True)
class MonitorSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    password_hash: str | None = None
    secret_key: str | None = None

    @property
    def auth_required(self) -> bool:
        return self.password_hash is not None

    def check(self) -> "MonitorSettings":
        """Raise MonitorConfigError if this is unsafe to serve; return self otherwise."""
        if self.password_hash is not None:
            check_password_hash_format(self.password_hash)
        elif not is_loopback(self.host):
            raise MonitorConfigError(
                f"Refusing to serve the web monitor on {self.host!r} without a password: anyone who "
                f"can reach it could stop services. Set password_hash in [web monitor] or "
                f"{PASSWORD_HASH_ENV} (create one with: python -m web_monitor.passwords), "
                f"or bind to 127.0.0.1.")
        check_port(self.port)
        return self

    @classmethod
    def from_section(cls, section: Mapping[str, str] | None,
                     environ: Mapping[str, str] | None = None) -> "MonitorSettings":
        """Build from the `[web monitor]` keys (host, port, password_hash, secret_key); the
        environment's password hash and secret key apply when the section has none."""
        section = dict(section or {})
        environ = os.environ if environ is None else environ
        password_hash = (section.get("password_hash") or environ.get(PASSWORD_HASH_ENV) or "").strip()
        secret_key = (section.get("secret_key") or environ.get(SECRET_KEY_ENV) or "").strip()
        return cls(
            host=(section.get("host") or DEFAULT_HOST).strip(),
            port=check_port(section.get("port") or DEFAULT_PORT),
            password_hash=password_hash or None,
            secret_key=secret_key or None,
        ).check()
