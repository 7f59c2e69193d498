"""Who holds a TCP port: so "address in use" can name the deployment in the way."""
from __future__ import annotations

import os
from typing import Optional

_LISTEN = "0A"


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 9 and cols[3] == _LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    return inodes


def holder_pids(port: int) -> list[int]:
    """Processes (of this user: others' are not visible) with a socket listening on `port`."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    pids.append(int(entry))
                    break
            except OSError:
                continue
    return sorted(pids)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    return text if len(text) <= 160 else text[:157] + "..."


def describe(port: int) -> Optional[str]:
    """'pid N (command line)' of each holder, or None when no holder is visible."""
    pids = holder_pids(port)
    if not pids:
        return None
    return "; ".join(f"pid {pid} ({_cmdline(pid)})" for pid in pids[:4])
