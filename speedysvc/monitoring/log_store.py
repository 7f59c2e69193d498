"""Per-service log files: captured stdout/stderr and log records, one JSON object per line,
rotated by size, queryable by text and level, and followable with a cursor.

Every record carries `cursor`, a per-service counter that only grows and is stored in the
record itself, so it survives rotation and restarts: a follower asks for "after cursor N" and
the reader finds the place by binary search, without reading the files from the start.
One LogWriter per service writes (the supervisor); any number of readers may read.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any, Callable, Iterator, Mapping

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_RANK = {name: i for i, name in enumerate(LEVELS)}
STREAMS = ("stdout", "stderr", "log")

_SECRET_KEY = r"[\w.-]*(?:secret|passw(?:or)?d|token|api[_-]?key|credential)[\w.-]*"
_QUOTED = re.compile(rf"""(?i)(["']?{_SECRET_KEY}["']?\s*[:=]\s*)(["'])(.*?)(\2)""")
_BARE = re.compile(rf"""(?i)(["']?{_SECRET_KEY}["']?\s*[:=]\s*)(?!["'])([^\s,;&}}]+)""")
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)([^@\s]+)(@)")
_HINTS = ("secret", "passw", "token", "key", "credential", "://")


def redact(text: str) -> str:
    """Mask values of keys named like secret/password/token/api_key, and passwords in URLs."""
    lowered = text.lower()
    if not any(h in lowered for h in _HINTS):
        return text  # the common case stays cheap
    text = _QUOTED.sub(r"\1\2********\4", text)
    text = _BARE.sub(r"\1********", text)
    return _URL_PASSWORD.sub(r"\1********\3", text)


# A logging-formatted line names its level as a word near the start ("WARNING:root:...",
# "2024-01-01 12:00:00,000 - x - INFO - ...", "[ERROR] ..."); upper case only, so that
# "Error: ..." prose on stderr stays an error.
_LEVEL_WORD = re.compile(r"(?<![A-Za-z])(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL)(?![A-Za-z])")
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def classify_level(stream: str, line: str) -> str:
    """The level of a captured line: stdout is INFO, stderr ERROR unless it names its level."""
    if stream == "stdout":
        return "INFO"
    m = _LEVEL_WORD.search(line, 0, 80)
    if m:
        return _ALIASES.get(m.group(1), m.group(1))
    return "ERROR"


def make_record(stream: str, message: str, *, pid: int, worker_id: int | None, ts: float,
                level: str | None = None) -> dict[str, Any]:
    """A record of one captured line (level classified when not given)."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
    return {"ts": ts, "pid": pid, "worker_id": worker_id, "stream": stream,
            "level": level or classify_level(stream, message), "message": message}


def _check_service(service: str) -> str:
    if not service or "/" in service or "\0" in service or service.startswith("."):
        raise ValueError(f"service name {service!r} cannot be used as a file name")
    return service


def log_paths(log_dir: str, service: str) -> list[str]:
    """Existing log files of a service, oldest first: NAME.log.N ... NAME.log.1, NAME.log."""
    base = os.path.join(log_dir, _check_service(service) + ".log")
    prefix = os.path.basename(base) + "."
    try:
        names = os.listdir(log_dir)
    except FileNotFoundError:
        return []
    numbered = sorted((int(n[len(prefix):]) for n in names
                       if n.startswith(prefix) and n[len(prefix):].isdigit()), reverse=True)
    return [f"{base}.{n}" for n in numbered] + ([base] if os.path.exists(base) else [])


def _parse(line: bytes) -> dict[str, Any] | None:
    if not line.endswith(b"\n"):
        return None  # being written right now, or cut short by a crash
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("cursor"), int) else None


def _first_record(path: str) -> dict[str, Any] | None:
    with open(path, "rb") as f:
        for line in f:
            record = _parse(line)
            if record is not None:
                return record
    return None


def _last_record(path: str) -> dict[str, Any] | None:
    return next(_reverse_records(path), None)


def _reverse_records(path: str, block: int = 65536) -> Iterator[dict[str, Any]]:
    """A file's complete records, newest first, read in blocks from the end."""
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        while pos > 0:  # skip a last line still being written
            start = max(0, pos - block)
            f.seek(start)
            i = f.read(pos - start).rfind(b"\n")
            if i >= 0:
                pos = start + i + 1
                break
            pos = start
        buf = b""
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            buf = f.read(pos - start) + buf
            pos = start
            lines = buf.split(b"\n")[:-1]  # buf ends with a newline
            # the first line may begin in the previous block; keep it for the next round
            buf = lines.pop(0) + b"\n" if pos > 0 else b""
            for line in reversed(lines):
                record = _parse(line + b"\n")
                if record is not None:
                    yield record


def _seek_after(f: Any, after: int) -> None:
    """Move f to a line start at or before the first record with cursor > after.

    Cursors grow along a file, so a binary search over byte offsets needs only a few reads.
    """
    lo, hi = 0, f.seek(0, os.SEEK_END)  # invariant: lo is a line start not past the target
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        f.seek(mid)
        f.readline()
        record, pos = None, f.tell()
        while record is None:
            line = f.readline()
            if not line:
                break
            record = _parse(line)
            if record is None:
                pos = f.tell()
        if record is None or record["cursor"] > after:
            hi = mid
        else:
            lo = pos
    f.seek(lo)


def _snapshot(paths: list[str]) -> list[tuple[str, int]]:
    """Identity of the log files, to notice a rotation that happened while they were read."""
    out = []
    for p in paths:
        try:
            out.append((p, os.stat(p).st_ino))
        except FileNotFoundError:
            out.append((p, -1))
    return out


class LogWriter:
    """Appends records of one service; thread-safe; each record is flushed as it is written."""

    def __init__(self, log_dir: str, service: str, max_bytes: int = 10 * 2**20, backups: int = 5):
        self.log_dir = log_dir
        self.service = _check_service(service)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path = os.path.join(log_dir, service + ".log")
        self._lock = threading.Lock()
        os.makedirs(log_dir, exist_ok=True)
        self._cursor = self._find_last_cursor()
        self._file = self._open()

    def _find_last_cursor(self) -> int:
        for path in reversed(log_paths(self.log_dir, self.service)):
            record = _last_record(path)
            if record is not None:
                cursor: int = record["cursor"]
                return cursor
        return 0

    def _open(self) -> Any:
        f = open(self.path, "ab")
        if f.tell() > 0:
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write(b"\n")  # a crash left half a line; start ours on a line of its own
        return f

    def write(self, record: Mapping[str, Any]) -> int:
        """Append a record (see make_record); the message is redacted. Returns its cursor."""
        level = str(record.get("level") or "INFO").upper()
        stream = record.get("stream", "log")
        entry = {"ts": record.get("ts", time.time()), "pid": record.get("pid"),
                 "worker_id": record.get("worker_id"),
                 "stream": stream if stream in STREAMS else "log",
                 # a capture thread must never die on an odd level name
                 "level": level if level in _RANK else _ALIASES.get(level, "INFO"),
                 "message": redact(str(record.get("message", "")))}
        with self._lock:
            self._cursor += 1
            entry["cursor"] = self._cursor
            line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
            size = self._file.tell()
            if self.max_bytes and size and size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._file.flush()
            return self._cursor

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            os.remove(self.path)
        else:
            for n in range(self.backups - 1, 0, -1):
                src = f"{self.path}.{n}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{n + 1}")
            os.replace(self.path, f"{self.path}.1")
        self._file = open(self.path, "ab")

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "LogWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _matches(record: dict[str, Any], needle: str | None, min_rank: int) -> bool:
    if _RANK.get(record.get("level", ""), _RANK["ERROR"]) < min_rank:
        return False
    return needle is None or needle in str(record.get("message", "")).lower()


class LogReader:
    def __init__(self, log_dir: str, service: str):
        self.log_dir = log_dir
        self.service = _check_service(service)

    def query(self, lines: int = 200, text: str | None = None, level: str | None = None,
              after: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Entries oldest first, and the cursor to pass as `after` next time.

        Without `after`: the last `lines` entries matching `text` (case-insensitive substring)
        and `level` (minimum). With `after`: the first `lines` matching entries after it.
        """
        if level is not None and level.upper() not in _RANK:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        min_rank = _RANK[level.upper()] if level else 0
        needle = text.lower() if text else None
        result: tuple[list[dict[str, Any]], int] = ([], after or 0)
        for _attempt in range(5):
            paths = log_paths(self.log_dir, self.service)
            before = _snapshot(paths)
            try:
                if after is None:
                    result = self._tail(paths, lines, needle, min_rank)
                else:
                    result = self._after(paths, after, lines, needle, min_rank)
            except FileNotFoundError:
                continue
            if _snapshot(log_paths(self.log_dir, self.service)) == before:
                break  # no rotation while reading
        return result

    def _tail(self, paths: list[str], lines: int, needle: str | None,
              min_rank: int) -> tuple[list[Any], int]:
        found: list[dict[str, Any]] = []
        newest = 0
        for path in reversed(paths):
            for record in _reverse_records(path):
                newest = newest or record["cursor"]
                if len(found) >= lines:
                    break
                if _matches(record, needle, min_rank):
                    found.append(record)
            if len(found) >= lines and newest:
                break
        found.reverse()
        return found, newest

    def _after(self, paths: list[str], after: int, lines: int, needle: str | None,
               min_rank: int) -> tuple[list[Any], int]:
        start = 0  # the newest file that begins at or before the record after `after`
        for i in range(len(paths) - 1, -1, -1):
            first = _first_record(paths[i])
            if first is not None and first["cursor"] <= after + 1:
                start = i
                break
        found: list[dict[str, Any]] = []
        cursor = after
        for path in paths[start:]:
            with open(path, "rb") as f:
                _seek_after(f, after)
                for line in f:
                    record = _parse(line)
                    if record is None or record["cursor"] <= after:
                        continue
                    if _matches(record, needle, min_rank):
                        if len(found) >= lines:
                            return found, cursor
                        found.append(record)
                    cursor = record["cursor"]
        if cursor == after and paths:
            last = _last_record(paths[-1])
            if last is not None and last["cursor"] < after:
                # The logs were removed and numbering began again: follow the new ones.
                return self._after(paths, 0, lines, needle, min_rank)
        return found, cursor

    def follow(self, lines: int = 10, text: str | None = None, level: str | None = None,
               interval: float = 0.5,
               sleep: Callable[[float], None] = time.sleep) -> Iterator[dict[str, Any]]:
        """The last `lines` entries, then each new entry as it is written (forever)."""
        entries, cursor = self.query(lines=lines, text=text, level=level)
        yield from entries
        while True:
            entries, cursor = self.query(lines=1000, text=text, level=level, after=cursor)
            yield from entries
            if not entries:
                sleep(interval)
