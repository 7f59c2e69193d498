"""Who holds a TCP port, for error messages that tell the user what to stop."""
from __future__ import annotations

from typing import Optional

import psutil


def port_holder(port: int) -> Optional[str]:
    """'pid N (command line)' of a process listening on `port`, when this user may see it."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                cmdline = " ".join(psutil.Process(conn.pid).cmdline())[:120]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                cmdline = "?"
            return f"pid {conn.pid} ({cmdline})"
    return None
