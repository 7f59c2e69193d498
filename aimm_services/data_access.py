"""DataAccess: an argument that tells the engine to run a data access plugin first."""
from __future__ import annotations

from typing import Any, NamedTuple

# a data access name the plugin service answers itself: item `key` of the value of another
# data access, so `DataAccess.of("source", ...)["x"]` passes only the "x" part on
ITEM_ACCESS = "aimm_services.item"


class DataAccess(NamedTuple):
    """Replaced, before the main plugin runs, by the result of the data access plugin `name`
    called with `args` and `kwargs` (which may themselves contain DataAccess values).

    `DataAccess.of(name, ...)["x"]` (a str key) stands for item "x" of that result; integer
    indexes and slices are the tuple's own, as for any NamedTuple."""

    name: str
    args: tuple = ()
    kwargs: dict = {}

    @classmethod
    def of(cls, name: str, *args: Any, **kwargs: Any) -> "DataAccess":
        """`DataAccess.of("csv", "file.csv", sep=";")` reads better than the tuple form."""
        return cls(name, tuple(args), dict(kwargs))

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return tuple.__getitem__(self, key)
        return DataAccess(ITEM_ACCESS, (self, key), {})


def item_of(value: Any, key: Any) -> Any:
    """`value[key]`, with an error that says what was there instead."""
    try:
        return value[key]
    except (KeyError, IndexError, TypeError) as exc:
        keys = list(value)[:20] if isinstance(value, dict) else type(value).__name__
        raise KeyError(f"data access result has no item {key!r} (it has: {keys})") from exc


# AIMM's client calls it DataAccessArg
DataAccessArg = DataAccess
