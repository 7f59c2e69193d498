"""What a model store keeps and the operations every store offers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol


@dataclass(frozen=True)
class StoredModel:
    """A model as stored: its serialized instance and bookkeeping."""

    instance_id: int
    model_type: str
    instance: bytes
    version: int
    created_at: float
    updated_at: float

    def summary(self) -> dict:
        """Everything but the instance bytes (what listings and events carry)."""
        return {"instance_id": self.instance_id, "model_type": self.model_type,
                "version": self.version, "created_at": self.created_at,
                "updated_at": self.updated_at, "size": len(self.instance)}

    def as_dict(self) -> dict:
        return {**self.summary(), "instance": self.instance}


class ModelStore(Protocol):
    """Durable (or not) storage of models. Ids are never reused, even after removal.
    Every write is committed before the method returns."""

    def create(self, model_type: str, instance: bytes) -> StoredModel: ...

    def update(self, instance_id: int, instance: bytes,
               model_type: Optional[str] = None) -> StoredModel: ...

    def remove(self, instance_id: int) -> None: ...

    def get(self, instance_id: int) -> StoredModel: ...

    def all(self) -> list[StoredModel]: ...

    def close(self) -> None: ...
