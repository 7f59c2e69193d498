"""snake_case <-> camelCase for the keys of JSON objects.

Only keys are converted, recursively through dicts and lists. String *values* are
never touched: the original converted whole payloads and mangled values such as
"Hello_World" into "_hello__world".
"""
from __future__ import annotations

import re
from typing import Any

# A run of "-"/"_" after a character that is not one, and the character after the run:
# the run goes and that character is upper-cased ("dcs_send_x" -> "dcsSendX").
_SEPARATOR_RUN = re.compile(r"(?<=[^\-_])[\-_]+[^\-_]")
_WHITESPACE = re.compile(r"\s+")
# Boundaries where a snake_case word starts inside a camelCase key:
# "innerKey" -> inner|Key, "HTTPServer" -> HTTP|Server, "key2Value" -> key2|Value.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def camel_key(key: str) -> str:
    """'dcs_send_x' -> 'dcsSendX', with 0.12's rules for keys: CONSTANT_CASE and numeric
    keys stay; the first letter is lower-cased unless the key starts with two capitals
    ('PascalCase' -> 'pascalCase', 'HTTP_server' -> 'HTTPServer'); whitespace is dropped;
    leading and trailing underscores stay."""
    compact = _WHITESPACE.sub("", key)
    if compact.isupper() or compact.isnumeric():
        return key
    if compact and not compact[:2].isupper():
        compact = compact[0].lower() + compact[1:]
    return _SEPARATOR_RUN.sub(lambda match: match.group(0)[-1].upper(), compact)


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
