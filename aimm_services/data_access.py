"""DataAccess: an argument that tells the engine to run a data access plugin first."""
from __future__ import annotations

from typing import Any, NamedTuple


class DataAccess(NamedTuple):
    """Replaced, before the main plugin runs, by the result of the data access plugin `name`
    called with `args` and `kwargs` (which may themselves contain DataAccess values)."""

    name: str
    args: tuple = ()
    kwargs: dict = {}

    @classmethod
    def of(cls, name: str, *args: Any, **kwargs: Any) -> "DataAccess":
        """`DataAccess.of("csv", "file.csv", sep=";")` reads better than the tuple form."""
        return cls(name, tuple(args), dict(kwargs))


# AIMM's client calls it DataAccessArg
DataAccessArg = DataAccess
