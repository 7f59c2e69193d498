"""BackendService: the model store as a service (SQLite by default, memory for tests).

Run it with max_proc_num=1: the memory store lives in one process, and SQLite writes are
serialised anyway. Every write is committed before the call returns.
"""
from __future__ import annotations

from typing import Any, Optional

from speedysvc import ServerMethodsBase, msgpack_method

from .backends import open_store
from .service_config import load_service_config


class BackendService(ServerMethodsBase):
    name = "aimm_backend"
    port = 5311
    aimm_config: Optional[str] = None

    def __init__(self, logger_client: Any = None):
        super().__init__(logger_client)
        self.config = load_service_config(self)
        self.store = open_store(self.config.backend)

    def on_stop(self) -> None:
        self.store.close()

    @msgpack_method
    def create(self, model_type: str, instance: bytes) -> dict:
        return self.store.create(model_type, instance).as_dict()

    @msgpack_method
    def update(self, instance_id: int, instance: bytes, model_type: Optional[str] = None) -> dict:
        return self.store.update(instance_id, instance, model_type).as_dict()

    @msgpack_method
    def remove(self, instance_id: int) -> None:
        self.store.remove(instance_id)

    @msgpack_method
    def get(self, instance_id: int) -> dict:
        return self.store.get(instance_id).as_dict()

    @msgpack_method
    def all(self) -> list:
        return [m.as_dict() for m in self.store.all()]
