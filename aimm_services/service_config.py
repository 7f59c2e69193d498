"""What every AIMM service needs at start: its configuration and the scope it runs in."""
from __future__ import annotations

import os
from typing import Any, Optional

from .config import AimmConfig, apply_log_config, load_config


def load_service_config(service: Any) -> AimmConfig:
    """The AIMM YAML of a service: its class attribute `aimm_config`, else $AIMM_CONFIG."""
    config = load_config(getattr(service, "aimm_config", None))
    apply_log_config(config)
    return config


def running_scope(service: Any) -> str:
    """The speedysvc scope this worker serves in, so it can reach its sibling services.

    speedysvc gives workers no public accessor for their scope; the publisher's event ring
    knows it (set before on_start). Falls back to $SPEEDYSVC_SCOPE, then "default".
    """
    publisher = getattr(service, "speedysvc_publisher", None)
    scope: Optional[str] = getattr(getattr(publisher, "ring", None), "scope", None)
    return scope or os.environ.get("SPEEDYSVC_SCOPE", "default")
