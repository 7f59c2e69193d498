"""Service classes of the Ray tests (importable by module path, by replicas too)."""
from __future__ import annotations

import os

from speedysvc import ServerMethodsBase, connect, msgpack_method
from support_services import Echo


class LocalCaller(ServerMethodsBase):
    """Runs in local worker processes and calls Echo, which runs on Ray, with no address."""
    name = "local_caller"

    @msgpack_method
    def call_echo(self, text):
        with connect(Echo, timeout=60, connect_timeout=60) as c:
            return [c.provider.transport, c.echo(text)]


class RayCaller(ServerMethodsBase):
    """Runs on Ray and calls its sibling Echo, also on Ray, with no address."""
    name = "ray_caller"

    @msgpack_method
    def call_echo(self, text):
        with connect(Echo, timeout=60) as c:
            return [c.provider.transport, self.scope, c.echo(text)]


class Hog(ServerMethodsBase):
    """Grows its memory on request (max_proc_mem_bytes on Ray: Serve replaces the replica)."""
    name = "hog"

    def __init__(self):
        super().__init__()
        self.kept = []

    @msgpack_method
    def grow(self, mib):
        self.kept.append(b"\x01" * (mib << 20))   # touched pages: they count in RSS
        return os.getpid()

    @msgpack_method
    def pid(self):
        return os.getpid()
