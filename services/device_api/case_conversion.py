"""snake_case <-> camelCase for the keys of JSON objects.

Only keys are converted, recursively through dicts and lists. String *values* are
never touched: the original converted whole payloads and mangled values such as
"Hello_World" into "_hello__world".
"""
from __future__ import annotations

import re
from typing import Any

_SEPARATORS = re.compile(r"[_\-]+")
# Boundaries where a snake_case word starts inside a camelCase key:
# "innerKey" -> inner|Key, "HTTPServer" -> HTTP|Server, "key2Value" -> key2|Value.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def camel_key(key: str) -> str:
    """'dcs_send_x' -> 'dcsSendX'; keys without separators and CONSTANT_CASE stay as they are."""
    stripped = key.lstrip("_")
    leading = key[: len(key) - len(stripped)]
    if not stripped or key.isupper() or not _SEPARATORS.search(stripped.rstrip("_-")):
        return key
    trailing_len = len(stripped) - len(stripped.rstrip("_-"))
    body = stripped[: len(stripped) - trailing_len]
    trailing = stripped[len(body):]
    words = [w for w in _SEPARATORS.split(body) if w]
    first, rest = words[0], words[1:]
    return leading + first[0].lower() + first[1:] + "".join(w[0].upper() + w[1:] for w in rest) + trailing


def snake_key(key: str) -> str:
    """'innerKey' -> 'inner_key'; keys that are already snake_case or CONSTANT_CASE stay."""
    if key.isupper() or "_" in key.strip("_"):
        return key
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def camelize_keys(value: Any) -> Any:
    return _convert_keys(value, camel_key)


def snakify_keys(value: Any) -> Any:
    return _convert_keys(value, snake_key)


def _convert_keys(value: Any, convert) -> Any:
    if isinstance(value, dict):
        return {
            (convert(k) if isinstance(k, str) else k): _convert_keys(v, convert)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_convert_keys(v, convert) for v in value]
    return value
