"""A tiny service for the end-to-end monitor tests: it prints to stdout so the log tail has
something to show, and answers calls so the call charts have something to count."""
from __future__ import annotations

import os
import sys

from speedysvc import ServerMethodsBase, json_method


class MonitorE2EEcho(ServerMethodsBase):
    name = "monitor_e2e_echo"
    port = 5931

    def on_start(self) -> None:
        print(f"monitor-e2e worker {os.getpid()} ready", flush=True)

    @json_method
    def echo(self, text: str) -> str:
        print(f"echo says {text}", flush=True)
        return text

    @json_method
    def complain(self, text: str) -> str:
        print(f"complaint {text}", file=sys.stderr, flush=True)
        return text


class MonitorE2ESecond(ServerMethodsBase):
    name = "monitor_e2e_second"
    port = 5932

    @json_method
    def ping(self) -> str:
        return "pong"
