"""Model stores: SQLite on a real file (durable, WAL, ids never reused) and memory."""
import sqlite3

import pytest

from aimm_services.backends import MemoryStore, SQLiteStore
from aimm_services.errors import UnknownModel


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    made = SQLiteStore(tmp_path / "db" / "aimm.db") if request.param == "sqlite" else MemoryStore()
    yield made
    made.close()


def test_create_get_update_remove(store):
    created = store.create("t.A", b"one")
    assert (created.instance_id, created.version) == (1, 1)
    updated = store.update(created.instance_id, b"two")
    assert updated.version == 2 and store.get(1).instance == b"two"
    assert [m.instance_id for m in store.all()] == [1]
    store.remove(1)
    with pytest.raises(UnknownModel, match="no model with instance id 1"):
        store.get(1)
    with pytest.raises(UnknownModel):
        store.update(1, b"x")


def test_ids_are_never_reused(store):
    first = store.create("t", b"a").instance_id
    second = store.create("t", b"b").instance_id
    store.remove(second)
    store.remove(first)
    assert store.create("t", b"c").instance_id == second + 1


def test_sqlite_survives_reopen_and_uses_wal(tmp_path):
    path = tmp_path / "aimm.db"
    store = SQLiteStore(path)
    store.create("t", b"a")
    removed = store.create("t", b"b").instance_id
    store.remove(removed)
    store.close()
    reopened = SQLiteStore(path)
    assert [m.instance for m in reopened.all()] == [b"a"]
    assert reopened.create("t", b"c").instance_id == removed + 1
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reopened.close()


def test_sqlite_opens_a_database_made_by_aimm(tmp_path):
    path = tmp_path / "aimm.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE models (id INTEGER PRIMARY KEY, type TEXT NOT NULL, "
                 "instance BLOB)")
    conn.execute("INSERT INTO models VALUES (7, 't.A', x'0102')")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    (model,) = store.all()
    assert (model.instance_id, model.model_type, model.instance) == (7, "t.A", b"\x01\x02")
    assert store.create("t.A", b"x").instance_id == 8
    store.close()
