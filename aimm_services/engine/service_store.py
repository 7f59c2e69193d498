"""ModelStore over speedysvc: the backend service, called from one dedicated thread (one
shared-memory channel, and the backend runs one worker anyway)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from speedysvc import connect

from ..backends.base import StoredModel


def _model(data: dict) -> StoredModel:
    return StoredModel(data["instance_id"], data["model_type"], data["instance"],
                       data["version"], data["created_at"], data["updated_at"])


class ServiceModelStore:
    def __init__(self, service_name: str, address: str, connect_timeout: float = 30.0,
                 call_timeout: float = 120.0):
        self._client = connect(service_name, address, timeout=call_timeout,
                               connect_timeout=connect_timeout)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimm-backend")

    def _call(self, method: str, *args):
        return self._thread.submit(getattr(self._client, method), *args).result()

    def create(self, model_type: str, instance: bytes) -> StoredModel:
        return _model(self._call("create", model_type, instance))

    def update(self, instance_id: int, instance: bytes,
               model_type: Optional[str] = None) -> StoredModel:
        return _model(self._call("update", instance_id, instance, model_type))

    def remove(self, instance_id: int) -> None:
        self._call("remove", instance_id)

    def get(self, instance_id: int) -> StoredModel:
        return _model(self._call("get", instance_id))

    def all(self) -> list[StoredModel]:
        return [_model(m) for m in self._call("all")]

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        self._client.close()
