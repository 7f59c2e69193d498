"""speedysvc's web monitor: a Flask app over the supervisor's control API.

The supervisor runs `python -m web_monitor --host H --port P --scope S` for its `[web monitor]`
section (the password hash travels in SPEEDYSVC_MONITOR_PASSWORD_HASH); the same command watches
a running supervisor on its own. Tests build the app with `create_app(fake_control, host=...)`."""
from .app import create_app
from .control import Control, ControlCallError, LazyControl, connect_control
from .server import MonitorServer
from .settings import MonitorConfigError, MonitorSettings, is_loopback

__all__ = ["create_app", "connect_control", "Control", "ControlCallError",
           "LazyControl", "MonitorServer", "MonitorSettings", "MonitorConfigError", "is_loopback"]
