"""A caller for the chaos test: calls Ledger.record in a loop until told to stop, and writes
one line per call outcome to its own log: "<call id> <outcome> <seconds>" where outcome is
`ok` or the exception's class name. Usage: chaos_caller.py ADDRESS LOG STOPFILE TIMEOUT"""
from __future__ import annotations

import os
import random
import sys
import time

import speedysvc
from supervisor_services import Ledger


def main() -> int:
    address, log_path, stop_file, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    log = open(log_path, "a", buffering=1)
    client = None
    n = 0
    while not os.path.exists(stop_file):
        n += 1
        call_id = f"{os.getpid()}-{n}"
        started = time.monotonic()
        try:
            if client is None:
                client = speedysvc.connect(Ledger, address, timeout=timeout, connect_timeout=timeout)
            outcome = "ok" if client.record(call_id, random.choice((0.0, 0.0, 0.005, 0.02))) == call_id \
                else "WRONG"
        except speedysvc.SpeedysvcError as exc:
            # The client is kept whatever happens, as an application would keep it: it must
            # follow its service across worker deaths and supervisor restarts by itself.
            outcome = type(exc).__name__
            if isinstance(exc, speedysvc.ServiceUnavailable):
                time.sleep(0.05)  # the service is away: do not spin
        log.write(f"{call_id} {outcome} {time.monotonic() - started:.3f}\n")
    if client is not None:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
