"""A service for the TCP fault tests: each call's completion is recorded, so a test can tell
a call that ran to its end from one whose worker died under it."""
from __future__ import annotations

import os
import time

from speedysvc import ServerMethodsBase, msgpack_method


class Ledger(ServerMethodsBase):
    name = "ledger"
    port = 15557

    @msgpack_method
    def work(self, path, token, seconds):
        """Sleep, then append `token` to the file at `path`: only finished calls are there."""
        time.sleep(seconds)
        with open(path, "a") as f:
            f.write(f"{token}\n")
        return [token, os.getpid()]

    @msgpack_method
    def pid(self):
        return os.getpid()
