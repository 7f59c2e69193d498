"""Which scope a client means when its address names none (`shm://`, `SHMClient(Echo)`).

The order, first match wins:
1. an explicit scope (`shm://SCOPE`, `scope=`);
2. the `SPEEDYSVC_SCOPE` environment variable (set inside every worker, so siblings find
   each other);
3. the running supervisors of this user, read from their state files: if exactly one serves
   the service, its scope; if several do, `AmbiguousService` naming each one;
4. `default`, the scope `serve()` uses when it is given none.

A supervisor's state file lists the services it serves, so step 3 never guesses. A supervisor
whose `runtime_dir` is not the default one leaves a pointer to its state file in the default
runtime directory (`elsewhere/<scope>.path`), so it is found too.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from . import naming
from .errors import AmbiguousService

DEFAULT_SCOPE = "default"


def explicit_scope() -> Optional[str]:
    """The scope this process was told to use (SPEEDYSVC_SCOPE), if any."""
    return os.environ.get("SPEEDYSVC_SCOPE") or None


def supervisors_serving(service_name: str) -> list[dict[str, Any]]:
    """State of every live supervisor of this user that serves `service_name`."""
    from .supervisor import state_file  # the supervisor package imports the client side
    live, _stale = state_file.find_all()
    return [s for s in live if service_name in (s.get("services") or ())]


def resolve_scope(service_name: str, scope: Optional[str] = None) -> str:
    """The scope to look for `service_name` in; raises AmbiguousService when several
    supervisors of this user serve it."""
    if scope:
        return naming.check_scope(scope)
    env = explicit_scope()
    if env:
        return naming.check_scope(env)
    serving = supervisors_serving(service_name)
    scopes = sorted({s["scope"] for s in serving})
    if len(scopes) == 1:
        return naming.check_scope(scopes[0])
    if len(scopes) > 1:
        listed = "; ".join(f"scope {s['scope']} (pid {s.get('pid')}, {s.get('ini')})"
                           for s in sorted(serving, key=lambda s: s["scope"]))
        raise AmbiguousService(
            f"service {service_name!r} is served by {len(scopes)} supervisors: {listed}. "
            f"Say which in the address, e.g. shm://{scopes[0]}, or set SPEEDYSVC_SCOPE")
    return DEFAULT_SCOPE
