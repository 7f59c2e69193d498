"""Create a password hash for the monitor: python -m web_monitor.passwords

Prompts twice without echo (or reads one line from standard input with --stdin) and prints a
salted hash to put in the .ini as `password_hash` under [web monitor], or in the environment as
SPEEDYSVC_MONITOR_PASSWORD_HASH."""
from __future__ import annotations

import argparse
import getpass
import sys

from werkzeug.security import generate_password_hash

from .settings import PASSWORD_HASH_ENV

MIN_LENGTH = 8


class PasswordError(ValueError):
    pass


def make_hash(password: str) -> str:
    """A salted werkzeug hash (scrypt by default) of `password`."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"The password must have at least {MIN_LENGTH} characters.")
    return generate_password_hash(password)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web_monitor.passwords", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stdin", action="store_true",
                        help="read the password from the first line of standard input")
    args = parser.parse_args(argv)
    try:
        if args.stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Monitor password: ")
            if getpass.getpass("Again: ") != password:
                raise PasswordError("The two passwords differ; nothing was created.")
        hashed = make_hash(password)
    except PasswordError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(hashed)
    print(f"Put it in the .ini under [web monitor] as: password_hash = {hashed}\n"
          f"or set {PASSWORD_HASH_ENV} in the monitor's environment.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
