"""speedysvc's web monitor: a Flask app over the supervisor's control API.

The supervisor starts it from the `[web monitor]` section (`start_monitor`); it also runs on its
own with `python -m web_monitor`. Tests build it with `create_app(fake_control, host=...)`."""
from .app import create_app
from .control import Control, ControlCallError, LazyControl, connect_control
from .server import MonitorServer, start_monitor
from .settings import MonitorConfigError, MonitorSettings, is_loopback

__all__ = ["create_app", "connect_control", "start_monitor", "Control", "ControlCallError",
           "LazyControl", "MonitorServer", "MonitorSettings", "MonitorConfigError", "is_loopback"]
