"""The echo service measured by rpc_bench.py.

It lives in its own module (not in the script) because speedysvc worker processes import the
service class by module path, and a script run as __main__ has no importable path.
"""
from __future__ import annotations

from typing import Any

from speedysvc import ServerMethodsBase, json_method, msgpack_method, pickle_method, raw_method


class EchoService(ServerMethodsBase):
    """Returns its argument unchanged, once per encoder, so only the transport and encoder cost."""

    name = "ssvcbench_echo"
    port = 47_311  # default TCP port; the benchmark overrides it with an ephemeral one

    @raw_method
    def echo_raw(self, data: bytes) -> bytes:
        return data

    @msgpack_method
    def echo_msgpack(self, data: Any) -> Any:
        return data

    @json_method
    def echo_json(self, data: Any) -> Any:
        return data

    @pickle_method
    def echo_pickle(self, data: Any) -> Any:
        return data
