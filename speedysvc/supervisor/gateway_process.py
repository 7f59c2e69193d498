"""A service's TCP gateway process (`python -m speedysvc.tcp.gateway`), started without blocking.

serve.start_gateway_process() waits for the gateway to report its port; the supervisor's main
loop must never wait on a child, so this starts the same command and lets the loop pick the
"LISTENING <port>" line up on a later tick. The shared secret travels in the environment,
never on the command line (where ps shows it) and never in a log.
"""
from __future__ import annotations

import os
import subprocess
from typing import Optional

from ..tcp.gateway import gateway_command


class GatewayError(OSError):
    """The gateway could not listen (address in use, bad host...)."""


class GatewayProcess:
    def __init__(self, scope: str, name: str, host: str, port: int, *, secret: Optional[str],
                 allow_insecure: bool, max_frame: int, stderr: "int | None" = None,
                 compression: Optional[str] = None):
        cmd, env = gateway_command(scope, name, host, port, secret=secret, allow_insecure=allow_insecure,
                                   max_frame=max_frame, compression=compression)
        self.host = host
        self.port: Optional[int] = None
        self.popen = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=stderr)
        os.set_blocking(self.popen.stdout.fileno(), False)
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def address(self) -> Optional[str]:
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def check_listening(self) -> Optional[int]:
        """The port once the gateway listens; None while it starts; raises GatewayError."""
        if self.port is not None:
            return self.port
        try:
            chunk = self.popen.stdout.read()
        except BlockingIOError:
            chunk = None
        if chunk:
            self._buffer += chunk
        line, newline, _rest = self._buffer.partition(b"\n")
        if newline:
            text = line.decode("utf-8", "replace").strip()
            if text.startswith("LISTENING "):
                self.port = int(text.split()[1])
                return self.port
            raise GatewayError(text or "the gateway printed an empty line")
        if self.popen.poll() is not None:
            raise GatewayError(f"the gateway exited with code {self.popen.returncode} before listening")
        return None

    def poll(self) -> Optional[int]:
        return self.popen.poll()

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.returncode

    def stop(self, kill: bool = False, timeout: float = 5.0) -> None:
        if self.popen.poll() is None:
            if kill:
                self.popen.kill()
            else:
                self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen.stdout.close()
