"""A model store in process memory, for tests and for AIMM's `dummy` backend."""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace
from typing import Optional

from ..errors import UnknownModel
from .base import StoredModel


class MemoryStore:
    """Same behaviour as SQLiteStore, but forgets everything when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[int, StoredModel] = {}
        self._ids = itertools.count(1)

    def create(self, model_type: str, instance: bytes) -> StoredModel:
        now = time.time()
        with self._lock:
            model = StoredModel(next(self._ids), model_type, bytes(instance), 1, now, now)
            self._models[model.instance_id] = model
        return model

    def update(self, instance_id: int, instance: bytes,
               model_type: Optional[str] = None) -> StoredModel:
        with self._lock:
            old = self._get(instance_id)
            model = replace(old, instance=bytes(instance), version=old.version + 1,
                            model_type=model_type or old.model_type, updated_at=time.time())
            self._models[instance_id] = model
        return model

    def remove(self, instance_id: int) -> None:
        with self._lock:
            self._get(instance_id)
            del self._models[instance_id]

    def get(self, instance_id: int) -> StoredModel:
        with self._lock:
            return self._get(instance_id)

    def all(self) -> list[StoredModel]:
        with self._lock:
            return [self._models[k] for k in sorted(self._models)]

    def close(self) -> None:
        return None

    def _get(self, instance_id: int) -> StoredModel:
        try:
            return self._models[instance_id]
        except KeyError:
            raise UnknownModel(f"no model with instance id {instance_id}") from None
