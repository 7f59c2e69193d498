"""Which speedysvc scope and service a console should talk to when the user typed only
`--speedysvc shm://`.

example.ini runs the simulated device as the service `device_simulator` under the scope
its supervisor derives from the .ini path; a device application that enables
SpeedysvcOptions serves `device_api` (and the standalone simulator does too). So the
scope comes from SPEEDYSVC_SCOPE, else from the one running supervisor's state file, and
the service is whichever of those names is running in that scope.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from speedysvc import naming

# In this order: example.ini's device first, then the name SpeedysvcOptions defaults to.
DEVICE_SERVICE_NAMES: Tuple[str, ...] = ("device_simulator", "device_api")


class DeviceServiceNotFound(LookupError):
    """Several supervisors run and none of them (or more than one) serves a device."""


def service_running(scope: str, name: str) -> bool:
    """The service's shared-memory segment exists in `scope` (it is being served)."""
    return os.path.exists(os.path.join(naming.SHM_DIR, naming.service_segment(scope, name).lstrip("/")))


def running_device_services(scope: str, names: Sequence[str] = DEVICE_SERVICE_NAMES) -> List[str]:
    return [name for name in names if service_running(scope, name)]


def _supervisor_scopes(runtime_dir: Optional[str]) -> List[str]:
    from speedysvc.supervisor import state_file

    live, _stale = state_file.find(runtime_dir)
    return [state["scope"] for state in live if isinstance(state.get("scope"), str)]


def resolve_scope(address_scope: Optional[str], runtime_dir: Optional[str] = None) -> str:
    """The scope of `shm://SCOPE`; for a bare `shm://`, SPEEDYSVC_SCOPE or the running
    supervisor's scope (the one serving a device, if several run)."""
    if address_scope:
        return address_scope
    if os.environ.get("SPEEDYSVC_SCOPE"):
        return os.environ["SPEEDYSVC_SCOPE"]
    scopes = _supervisor_scopes(runtime_dir)
    if len(scopes) > 1:
        scopes = [s for s in scopes if running_device_services(s)]
        if len(scopes) > 1:
            raise DeviceServiceNotFound(
                f"several supervisors serve a device (scopes {', '.join(scopes)}); use --speedysvc shm://SCOPE")
    return scopes[0] if scopes else naming.default_scope()


def resolve_service_name(scope: str, requested: Optional[str]) -> str:
    """`requested` if given, else the device service running in `scope` (example.ini's
    `device_simulator` when none runs yet, so the error names what example.ini starts)."""
    if requested:
        return requested
    running = running_device_services(scope)
    return running[0] if running else DEVICE_SERVICE_NAMES[0]
