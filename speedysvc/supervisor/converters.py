"""Named converters from .ini strings to Python values, in the manner of supervisor's datatypes.

Each converter takes the raw string and returns the value or raises `ConversionError` (a
ValueError) that says what was expected and what was found. Each also carries `.expected`
(a phrase for error messages and the README) and `.format` (value -> ini text), so the option
registry can validate, explain and print every option from the converter alone.
"""
from __future__ import annotations

import ipaddress
import keyword
import math
import os
import re
from typing import Any, Callable, NamedTuple, TypeVar

T = TypeVar("T")


class ConversionError(ValueError):
    def __init__(self, expected: str, found: str):
        super().__init__(f"expected {expected}, found {found!r}")
        self.expected = expected
        self.found = found


def converter(expected: str,
              fmt: Callable[[Any], str] = str) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
    """Mark a function as a converter: `expected` phrases what it accepts, `fmt` prints a value."""
    def mark(fn: Callable[[str], T]) -> Callable[[str], T]:
        fn.expected = expected  # type: ignore[attr-defined]
        fn.format = fmt  # type: ignore[attr-defined]
        return fn
    return mark


def _fail(fn: Callable[..., Any], value: str) -> ConversionError:
    return ConversionError(fn.expected, value)  # type: ignore[attr-defined]


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@converter("a boolean (true/false, yes/no, on/off, 1/0)", lambda v: "true" if v else "false")
def boolean(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _fail(boolean, value)


def _integer(fn: Callable[..., Any], value: str, minimum: int, maximum: float = math.inf) -> int:
    v = value.strip()
    try:
        n = int(v, 10)
    except ValueError:
        raise _fail(fn, value) from None
    if not minimum <= n <= maximum:
        raise _fail(fn, value)
    return n


@converter("a positive integer")
def positive_int(value: str) -> int:
    return _integer(positive_int, value, 1)


@converter("a non-negative integer")
def non_negative_int(value: str) -> int:
    return _integer(non_negative_int, value, 0)


@converter("a port number (1-65535)")
def port_number(value: str) -> int:
    return _integer(port_number, value, 1, 65535)


@converter("a port number (1-65535, or 0 for any free port)")
def bind_port(value: str) -> int:
    return _integer(bind_port, value, 0, 65535)


@converter("a fraction between 0 and 1 such as 0.75")
def fraction(value: str) -> float:
    try:
        f = float(value.strip())
    except ValueError:
        raise _fail(fraction, value) from None
    if not 0.0 <= f <= 1.0:  # also rejects nan
        raise _fail(fraction, value)
    return f


@converter("a non-negative number such as 1.5")
def non_negative_float(value: str) -> float:
    try:
        f = float(value.strip())
    except ValueError:
        raise _fail(non_negative_float, value) from None
    if not (math.isfinite(f) and f >= 0):
        raise _fail(non_negative_float, value)
    return f


# K/M/G/T and the IEC names are powers of 1024 (as docker and supervisord read them);
# KB/MB/GB/TB are SI powers of 1000, as a disk vendor would read them.
_BYTE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
_BYTE_RE = re.compile(r"^\s*(\d[\d_]*(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def format_byte_size(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


@converter("a byte size such as 512MB, 1GiB, 1.5G or 1_000_000", format_byte_size)
def byte_size(value: str) -> int:
    m = _BYTE_RE.match(value)
    if not m or m.group(2).lower() not in _BYTE_UNITS or "__" in m.group(1):
        raise _fail(byte_size, value)
    number, unit = m.group(1).replace("_", ""), _BYTE_UNITS[m.group(2).lower()]
    if "." in number:
        return int(float(number) * unit)
    return int(number) * unit


_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)", re.IGNORECASE)


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    if (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return repr(seconds)  # a plain number is seconds, exactly


@converter("a duration such as 500ms, 2s, 5m, 1h30m or a number of seconds", format_duration)
def duration(value: str) -> float:
    """Seconds, as a float. A plain number is seconds; units us, ms, s, m, h, d may be combined."""
    v = value.strip()
    try:
        seconds = float(v)
    except ValueError:
        seconds = _parse_units(v, value)
    if not math.isfinite(seconds) or seconds < 0:
        raise _fail(duration, value)
    return seconds


def _parse_units(v: str, original: str) -> float:
    total, pos = 0.0, 0
    compact = re.sub(r"\s+", "", v)
    for m in _DURATION_PART.finditer(compact):
        if m.start() != pos:
            raise _fail(duration, original)
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    if pos == 0 or pos != len(compact):
        raise _fail(duration, original)
    return total


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _is_host(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        pass
    if len(v) > 253 or not v:
        return False
    return all(_LABEL.match(label) for label in v.rstrip(".").split("."))


@converter("a host name or IP address such as 127.0.0.1")
def host(value: str) -> str:
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        v = v[1:-1]
    if not _is_host(v):
        raise _fail(host, value)
    return v


class BindAddress(NamedTuple):
    host: str
    port: int | None  # None: the service class's port (or the `port` option)

    def __str__(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return h if self.port is None else f"{h}:{self.port}"


_DISABLED = {"", "none", "off"}


def format_tcp_bind(value: BindAddress | None) -> str:
    return "none" if value is None else str(value)


@converter("host or host:port to accept TCP connections on ('none' or empty disables TCP)",
           format_tcp_bind)
def tcp_bind(value: str) -> BindAddress | None:
    v = value.strip()
    if v.lower() in _DISABLED:
        return None
    h, port = v, None
    m = re.match(r"^\[(.*)\](?::(.*))?$", v)
    if m:  # [::1]:5555
        h, port = m.group(1), m.group(2)
    elif v.count(":") == 1:
        h, port = v.split(":")
    try:
        h = host(h or "127.0.0.1")
        p = None if port is None else bind_port(port)
    except ConversionError:
        raise _fail(tcp_bind, value) from None
    return BindAddress(h, p)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


@converter("a log level (" + ", ".join(LOG_LEVELS) + ")")
def log_level(value: str) -> str:
    v = value.strip().upper()
    v = _LEVEL_ALIASES.get(v, v)
    if v not in LOG_LEVELS:
        raise _fail(log_level, value)
    return v


@converter("a Python module path such as mypackage.services")
def python_module(value: str) -> str:
    v = value.strip()
    parts = v.split(".")
    if not v or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        raise _fail(python_module, value)
    return v


# Mirrors speedysvc.naming: scopes become part of /dev/shm names.
_SCOPE = re.compile(r"^[A-Za-z0-9]{1,24}$")


@converter("1 to 24 letters or digits")
def scope(value: str) -> str:
    v = value.strip()
    if not _SCOPE.match(v):
        raise _fail(scope, value)
    return v


@converter("a file system path")
def path(value: str) -> str:
    v = value.strip()
    if not v or "\0" in v:
        raise _fail(path, value)
    return os.path.expanduser(v)


@converter("paths separated by ':' or new lines", lambda v: os.pathsep.join(v))
def path_list(value: str) -> tuple[str, ...]:
    parts = [p.strip() for line in value.splitlines() for p in line.split(os.pathsep)]
    return tuple(path(p) for p in parts if p)


class Secret(str):
    """A str whose repr is masked, so a config dataclass printed in a log shows no secret."""

    def __repr__(self) -> str:
        return "Secret('********')" if self else "Secret('')"


@converter("any text (kept secret)")
def secret(value: str) -> Secret:
    return Secret(value.strip())


def one_of(*choices: str) -> Callable[[str], str]:
    """A converter accepting one of `choices`, case-insensitively."""
    @converter("one of " + ", ".join(choices))
    def choice(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise _fail(choice, value)
        return v
    choice.choices = choices  # type: ignore[attr-defined]
    return choice


@converter("local, auto, ray://host:port (Ray Client) or host:port (a cluster's GCS address)")
def ray_address(value: str) -> str:
    v = value.strip()
    if v.lower() in ("local", "auto"):
        return v.lower()
    rest = v[len("ray://"):] if v.startswith("ray://") else v
    host_part, sep, port = rest.rpartition(":")
    if not sep or not host_part or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail(ray_address, value)
    return v
