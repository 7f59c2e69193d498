"""The default model store: one SQLite file in WAL mode.

Every write commits (with synchronous=FULL) before returning, so a model whose call returned
survives the supervisor being killed. Ids come from a sequence row rather than max(id)+1 so
an id is never handed out twice, even after the newest model is removed; this also works on
database files created by AIMM, whose table has no AUTOINCREMENT.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

from ..errors import UnknownModel
from .base import StoredModel

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    instance BLOB
);
CREATE TABLE IF NOT EXISTS aimm_sequence (
    name TEXT PRIMARY KEY,
    next_value INTEGER NOT NULL
);
"""
# columns AIMM's table lacks, added in place so its database files keep working
_EXTRA_COLUMNS = {"version": "INTEGER NOT NULL DEFAULT 1", "created_at": "REAL",
                  "updated_at": "REAL"}


class SQLiteStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by the service's threads, serialised by a lock
        self._conn = sqlite3.connect(str(self.path), isolation_level=None,
                                     check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(models)")}
            for name, decl in _EXTRA_COLUMNS.items():
                if name not in columns:
                    self._conn.execute(f"ALTER TABLE models ADD COLUMN {name} {decl}")
            self._conn.execute(
                "INSERT OR IGNORE INTO aimm_sequence (name, next_value) "
                "SELECT 'model_id', COALESCE(MAX(id), 0) + 1 FROM models")

    def create(self, model_type: str, instance: bytes) -> StoredModel:
        now = time.time()
        with self._lock, self._transaction():
            (instance_id,) = self._conn.execute(
                "SELECT next_value FROM aimm_sequence WHERE name='model_id'").fetchone()
            self._conn.execute("UPDATE aimm_sequence SET next_value=? WHERE name='model_id'",
                               (instance_id + 1,))
            self._conn.execute(
                "INSERT INTO models (id, type, instance, version, created_at, updated_at) "
                "VALUES (?, ?, ?, 1, ?, ?)", (instance_id, model_type, bytes(instance), now, now))
        return StoredModel(instance_id, model_type, bytes(instance), 1, now, now)

    def update(self, instance_id: int, instance: bytes,
               model_type: Optional[str] = None) -> StoredModel:
        now = time.time()
        with self._lock, self._transaction():
            old = self._get(instance_id)
            new_type = model_type or old.model_type
            self._conn.execute(
                "UPDATE models SET instance=?, type=?, version=version+1, updated_at=? "
                "WHERE id=?", (bytes(instance), new_type, now, instance_id))
        return StoredModel(instance_id, new_type, bytes(instance), old.version + 1,
                           old.created_at, now)

    def remove(self, instance_id: int) -> None:
        with self._lock, self._transaction():
            self._get(instance_id)
            self._conn.execute("DELETE FROM models WHERE id=?", (instance_id,))

    def get(self, instance_id: int) -> StoredModel:
        with self._lock:
            return self._get(instance_id)

    def all(self) -> list[StoredModel]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, type, instance, version, created_at, updated_at FROM models "
                "ORDER BY id").fetchall()
        return [_row_to_model(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _get(self, instance_id: int) -> StoredModel:
        row = self._conn.execute(
            "SELECT id, type, instance, version, created_at, updated_at FROM models WHERE id=?",
            (int(instance_id),)).fetchone()
        if row is None:
            raise UnknownModel(f"no model with instance id {instance_id}")
        return _row_to_model(row)

    def _transaction(self):
        return _Transaction(self._conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def __enter__(self):
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _row_to_model(row) -> StoredModel:
    instance_id, model_type, instance, version, created_at, updated_at = row
    return StoredModel(int(instance_id), model_type, bytes(instance or b""), int(version or 1),
                       float(created_at or 0.0), float(updated_at or created_at or 0.0))
