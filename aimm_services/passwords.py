"""Salted password hashes for the `users` of the control configuration.

Format: `scrypt-sha256$<log2 n>$<r>$<p>$<salt base64>$<hash base64>`: scrypt over the
SHA-256 hex digest of the password. AIMM's REPL client never sends the password itself, only
that digest, so the stored hash has to be a slow hash *of the digest* for both kinds of client
(the Python client over speedysvc sends the password; it is digested here first).
Still accepted: AIMM's unsalted entries (the 64 hex digits of SHA-256(password)), with a
warning, and `scrypt$...` entries of the first releases (scrypt over the password itself;
they work for the speedysvc client only -- regenerate them for AIMM's REPL client).

Create a hash:  python -m aimm_services.passwords            (prompts twice)
                echo -n secret | python -m aimm_services.passwords --stdin
"""
from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import re
import secrets
import sys

SCHEME = "scrypt-sha256"
PLAIN_SCHEME = "scrypt"      # scrypt over the password itself (first releases)
_LOG2_N, _R, _P = 14, 8, 1   # ~20-50 ms per check: slow for guessing, fine for logins
_LEGACY_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class InvalidPasswordHash(ValueError):
    """A configured password entry is neither a salted hash nor a legacy SHA-256 digest."""


def password_digest(password: str) -> str:
    """What AIMM's REPL client sends instead of the password: SHA-256 hex of its UTF-8."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def hash_password(password: str, *, log2_n: int = _LOG2_N, r: int = _R, p: int = _P) -> str:
    """A new salted hash of `password` to put in the configuration."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password_digest(password), salt, log2_n, r, p)
    return "$".join([SCHEME, str(log2_n), str(r), str(p), _b64(salt), _b64(digest)])


def is_legacy_hash(entry: str) -> bool:
    """Whether `entry` is AIMM's unsalted SHA-256 hex digest."""
    return bool(_LEGACY_SHA256.match(entry))


def check_hash_format(entry: str) -> None:
    """Raise InvalidPasswordHash with a hint if `entry` cannot be used to verify passwords."""
    if is_legacy_hash(entry):
        return
    parts = entry.split("$")
    if len(parts) != 6 or parts[0] not in (SCHEME, PLAIN_SCHEME):
        raise InvalidPasswordHash(
            "expected 'scrypt-sha256$...' (create one with: python -m aimm_services.passwords) "
            "or AIMM's 64-hex-digit SHA-256 digest")
    try:
        int(parts[1]), int(parts[2]), int(parts[3])
        base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise InvalidPasswordHash(f"malformed scrypt hash: {exc}") from exc


def is_plain_scrypt(entry: str) -> bool:
    """Whether `entry` is a first-release `scrypt$` hash (usable only with the password)."""
    return entry.startswith(PLAIN_SCHEME + "$")


def verify_password(password: str, entry: str) -> bool:
    """Whether `password` matches the configured `entry` (constant-time comparison)."""
    if is_plain_scrypt(entry):
        return _verify_scrypt(password, entry)
    return verify_digest(password_digest(password), entry)


def verify_digest(digest: str, entry: str) -> bool:
    """Whether the SHA-256 hex `digest` (what AIMM's REPL client sends) matches `entry`.
    First-release `scrypt$` entries cannot be checked this way and never match."""
    if not isinstance(digest, str):
        return False
    digest = digest.lower()
    if is_legacy_hash(entry):
        return hmac.compare_digest(digest.encode("ascii", "replace"),
                                   entry.lower().encode("ascii"))
    if is_plain_scrypt(entry):
        burn_time(digest)
        return False
    return _verify_scrypt(digest, entry)


def _verify_scrypt(secret: str, entry: str) -> bool:
    _scheme, log2_n, r, p, salt, digest = entry.split("$")
    candidate = _scrypt(secret, base64.b64decode(salt), int(log2_n), int(r), int(p))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def burn_time(password: str) -> None:
    """Do the work of one verification so unknown users take as long as known ones."""
    _scrypt(password, b"\0" * 16, _LOG2_N, _R, _P)


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2 ** log2_n, r=r, p=p,
                          maxmem=256 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aimm_services.passwords",
        description="Print a salted password hash for the users list of an AIMM configuration.")
    parser.add_argument("--stdin", action="store_true",
                        help="read the password from standard input instead of prompting")
    options = parser.parse_args(argv)
    if options.stdin:
        password = sys.stdin.read().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            print("passwords differ; nothing printed", file=sys.stderr)
            return 1
    if not password:
        print("refusing to hash an empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
