"""Model stores: SQLite (default, durable) and memory (tests, AIMM's dummy backend)."""
from __future__ import annotations

from ..config import BackendConfig
from .base import ModelStore, StoredModel
from .memory_store import MemoryStore
from .sqlite_store import SQLiteStore


def open_store(config: BackendConfig) -> ModelStore:
    """The store the backend section of the configuration asks for."""
    if config.kind == "sqlite":
        return SQLiteStore(config.path)
    return MemoryStore()


__all__ = ["ModelStore", "StoredModel", "MemoryStore", "SQLiteStore", "open_store"]
