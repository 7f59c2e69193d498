"""Service classes of the Ray tests (importable by module path, by replicas too)."""
from __future__ import annotations

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
