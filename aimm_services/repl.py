"""Interactive client: `python -m aimm_services.repl ADDRESS [--user NAME]`.

Logs in (asking for the password), then opens a Python console with `aimm` (the connected
client), `DataAccess`, `numpy` and `pandas` ready:

    >>> m = aimm.create_instance("aimm_services.example.linear_plugins.LinearRegression")
    >>> data = DataAccess.of("example.synthetic", rows=200)   # run by the server, not here
    >>> aimm.fit(m.instance_id, data["x"], data["y"])          # items of its result
    >>> h = aimm.predict(m.instance_id, numpy.ones((3, 2)), wait=False); h.status, h.progress
    >>> models(); actions()
"""
from __future__ import annotations

import argparse
import code
import getpass
import pprint
import sys
from typing import Optional

import numpy
import pandas

from .client import AIMM, DataAccess
from .errors import AuthError

BANNER = """AIMM on speedysvc at {address} as {user}.
  aimm.create_instance(type, ...), aimm.fit(id, ...), aimm.predict(id, ...),
  aimm.add_instance / update_instance / remove_instance, aimm.cancel(action_id)
  wait=False returns an action handle (.status .progress .result() .cancel())
  models(), actions(), plugins() print the current state; DataAccess.of(name, ...)"""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aimm_services.repl",
                                     description="Interactive AIMM client.")
    parser.add_argument("address", help="engine address, e.g. shm://SCOPE or tcp://host:5310")
    parser.add_argument("--user", help="username (asked for when missing)")
    parser.add_argument("--secret", help="TCP shared secret, if the engine requires one")
    options = parser.parse_args(argv)
    user = options.user or input("Username: ")
    aimm = AIMM(options.address, secret=options.secret)
    try:
        aimm.login(user, getpass.getpass("Password: "))
    except AuthError as exc:
        print(f"login failed: {exc}", file=sys.stderr)
        aimm.close()
        return 1
    namespace = {
        "aimm": aimm, "DataAccess": DataAccess, "numpy": numpy, "np": numpy,
        "pandas": pandas, "pd": pandas,
        "models": lambda: pprint.pprint(aimm.state["models"]),
        "actions": lambda: pprint.pprint(aimm.state["actions"]),
        "plugins": lambda: pprint.pprint(aimm.plugins()),
    }
    try:
        code.interact(banner=BANNER.format(address=options.address, user=user),
                      local=namespace, exitmsg="logging out")
    finally:
        aimm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
