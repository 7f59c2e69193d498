"""resolve_enum(): turn what a person typed (a number, a member name or the start of
one) into an enum member, as consoles and command-line tools need."""
from __future__ import annotations

from enum import IntEnum
from typing import Type, TypeVar

E = TypeVar("E", bound=IntEnum)


def resolve_enum(enum_type: Type[E], value: str) -> E:
    """By numeric value, then exact name, then a case-insensitive unique name prefix.

    Raises ValueError listing the valid names when nothing matches, or the candidates
    when the prefix is ambiguous (the same messages as 0.12).
    """
    try:
        return enum_type(int(value))
    except (ValueError, KeyError):
        pass
    try:
        return enum_type[value]
    except KeyError:
        pass
    prefix = value.lower()
    candidates = [member for member in enum_type if member.name.lower().startswith(prefix)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        valid = ", ".join(member.name for member in enum_type)
        raise ValueError(f"'{value}' does not match any {enum_type.__name__} member. Valid: {valid}")
    ambiguous = ", ".join(member.name for member in candidates)
    raise ValueError(f"'{value}' is ambiguous, matches: {ambiguous}")
