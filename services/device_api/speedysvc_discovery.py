"""Which speedysvc scope and service a console should talk to when the user typed only
`--speedysvc shm://`.

example.ini runs the simulated device as the service `device_simulator` under the scope
its supervisor derives from the .ini path; a device application that enables
SpeedysvcOptions serves `device_api` (and the standalone simulator does too). So the
scope comes from SPEEDYSVC_SCOPE, else from the one running supervisor's state file, and
the service is whichever of those names is running in that scope. The scope is found as
every speedysvc client finds it (speedysvc.scope_resolution).
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from speedysvc import naming
from speedysvc.scope_resolution import explicit_scope, supervisors_serving
from speedysvc.scope_resolution import resolve_scope as speedysvc_resolve_scope

# In this order: example.ini's device first, then the name SpeedysvcOptions defaults to.
DEVICE_SERVICE_NAMES: Tuple[str, ...] = ("device_simulator", "device_api")


def service_running(scope: str, name: str) -> bool:
    """The service's shared-memory segment exists in `scope` (it is being served)."""
    return os.path.exists(os.path.join(naming.SHM_DIR, naming.service_segment(scope, name).lstrip("/")))


def running_device_services(scope: str, names: Sequence[str] = DEVICE_SERVICE_NAMES) -> List[str]:
    return [name for name in names if service_running(scope, name)]


def resolve_scope(address_scope: Optional[str]) -> str:
    """The scope of `shm://SCOPE`; for a bare `shm://`, speedysvc's own resolution
    (SPEEDYSVC_SCOPE, else the one running supervisor serving a device service, else
    `default`). Several supervisors serving a device raise speedysvc.AmbiguousService."""
    if address_scope:
        return address_scope
    if explicit_scope() is None:
        for name in DEVICE_SERVICE_NAMES:
            if supervisors_serving(name):
                return speedysvc_resolve_scope(name)
    return speedysvc_resolve_scope(DEVICE_SERVICE_NAMES[0])


def resolve_service_name(scope: str, requested: Optional[str]) -> str:
    """`requested` if given, else the device service running in `scope` (example.ini's
    `device_simulator` when none runs yet, so the error names what example.ini starts)."""
    if requested:
        return requested
    running = running_device_services(scope)
    return running[0] if running else DEVICE_SERVICE_NAMES[0]
