"""Starting helper processes (the web monitor) so that they die with the supervisor.

A tiny bootstrap sets PR_SET_PDEATHSIG and then execs the real command: the death signal
survives exec, so even a supervisor killed with SIGKILL leaves no helper behind. The bootstrap
is inline (`python -c`) to avoid importing speedysvc just to exec something else.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Optional

_BOOTSTRAP = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def bound_command(argv: list[str]) -> list[str]:
    """`argv` wrapped so that the process gets SIGKILL when this process dies."""
    return [sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), *argv]


def start_helper(argv: list[str], env: Optional[dict[str, Any]] = None) -> "subprocess.Popen[bytes]":
    """Start `argv` (argv[0] an absolute path) with piped stdout/stderr, bound to our life."""
    return subprocess.Popen(bound_command(argv), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
