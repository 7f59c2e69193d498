"""Per-service log files on disk: writing, rotation, querying and following with a cursor."""
import itertools
import json
import os
import threading

import pytest

from speedysvc.monitoring.log_store import (LogReader, LogWriter, classify_level, log_paths,
                                            make_record, redact)


def rec(message, level="INFO", stream="log", ts=1000.0, pid=42, worker_id=1):
    return {"ts": ts, "pid": pid, "worker_id": worker_id, "stream": stream, "level": level,
            "message": message}


def messages(entries):
    return [e["message"] for e in entries]


def test_a_record_written_can_be_read_back_with_its_cursor(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        assert w.write(rec("hello", ts=1.5)) == 1
        assert w.write(make_record("stderr", "boom", pid=7, worker_id=2, ts=2.5)) == 2
        entries, cursor = LogReader(str(tmp_path), "echo").query()
    assert entries == [
        {"ts": 1.5, "pid": 42, "worker_id": 1, "stream": "log", "level": "INFO",
         "message": "hello", "cursor": 1},
        {"ts": 2.5, "pid": 7, "worker_id": 2, "stream": "stderr", "level": "ERROR",
         "message": "boom", "cursor": 2}]
    assert cursor == 2
    # one JSON object per line on disk
    lines = (tmp_path / "echo.log").read_text().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["hello", "boom"]


def test_a_service_without_logs_has_no_entries(tmp_path):
    assert LogReader(str(tmp_path / "nowhere"), "echo").query() == ([], 0)
    assert LogReader(str(tmp_path / "nowhere"), "echo").query(after=5) == ([], 5)


def test_tail_returns_the_last_lines_oldest_first(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        for i in range(50):
            w.write(rec(f"m{i}"))
    entries, cursor = LogReader(str(tmp_path), "echo").query(lines=3)
    assert messages(entries) == ["m47", "m48", "m49"] and cursor == 50


def test_filter_by_minimum_level_and_text(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        for level in ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]:
            w.write(rec(f"{level.lower()} Disk full", level))
            w.write(rec(f"{level.lower()} all good", level))
    reader = LogReader(str(tmp_path), "echo")
    entries, _ = reader.query(level="warning")
    assert [e["level"] for e in entries] == ["WARNING", "WARNING", "ERROR", "ERROR",
                                             "CRITICAL", "CRITICAL"]
    entries, cursor = reader.query(text="disk FULL", level="ERROR")
    assert messages(entries) == ["error Disk full", "critical Disk full"]
    assert cursor == 10  # the newest record, matching or not
    with pytest.raises(ValueError, match="level"):
        reader.query(level="LOUD")


def test_after_a_cursor_pages_forward_without_gaps(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        for i in range(1, 11):
            w.write(rec(f"m{i}"))
    reader = LogReader(str(tmp_path), "echo")
    entries, cursor = reader.query(after=3, lines=4)
    assert messages(entries) == ["m4", "m5", "m6", "m7"] and cursor == 7
    entries, cursor = reader.query(after=cursor, lines=4)
    assert messages(entries) == ["m8", "m9", "m10"] and cursor == 10
    assert reader.query(after=cursor) == ([], 10)


def test_a_filtered_follower_still_moves_past_unmatched_records(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        for i in range(1, 7):
            w.write(rec(f"m{i}", "ERROR" if i in (2, 5) else "INFO"))
    reader = LogReader(str(tmp_path), "echo")
    entries, cursor = reader.query(after=0, level="ERROR", lines=1)
    assert messages(entries) == ["m2"] and cursor == 4  # m3, m4 examined and skipped
    entries, cursor = reader.query(after=cursor, level="ERROR")
    assert messages(entries) == ["m5"] and cursor == 6


def test_rotation_keeps_the_configured_backups(tmp_path):
    with LogWriter(str(tmp_path), "echo", max_bytes=1000, backups=2) as w:
        for i in range(200):
            w.write(rec(f"message number {i}"))
    paths = log_paths(str(tmp_path), "echo")
    assert [os.path.basename(p) for p in paths] == ["echo.log.2", "echo.log.1", "echo.log"]
    assert all(os.path.getsize(p) <= 1000 for p in paths)
    entries, cursor = LogReader(str(tmp_path), "echo").query(after=0, lines=1000)
    cursors = [e["cursor"] for e in entries]
    assert cursors == list(range(cursors[0], 201)) and cursor == 200  # the newest, contiguous
    assert cursors[0] > 1  # the oldest were rotated away
    tail, _ = LogReader(str(tmp_path), "echo").query(lines=len(entries) + 50)
    assert tail == entries


def test_no_backups_means_the_file_starts_over(tmp_path):
    with LogWriter(str(tmp_path), "echo", max_bytes=500, backups=0) as w:
        for i in range(50):
            w.write(rec(f"message number {i}"))
    assert os.listdir(tmp_path) == ["echo.log"]
    entries, cursor = LogReader(str(tmp_path), "echo").query()
    assert entries and entries[-1]["message"] == "message number 49" and cursor == 50


def test_a_follower_sees_every_record_once_across_rotations(tmp_path):
    reader = LogReader(str(tmp_path), "echo")
    seen, cursor = [], 0
    with LogWriter(str(tmp_path), "echo", max_bytes=800, backups=3) as w:
        for i in range(300):
            w.write(rec(f"m{i}"))
            if i % 3 == 0:  # the follower polls now and then; rotations happen in between
                entries, cursor = reader.query(after=cursor, lines=5)
                seen += messages(entries)
        while True:
            entries, cursor = reader.query(after=cursor, lines=5)
            if not entries:
                break
            seen += messages(entries)
    assert seen == [f"m{i}" for i in range(300)]


def test_numbering_continues_after_a_restart(tmp_path):
    with LogWriter(str(tmp_path), "echo", max_bytes=300, backups=1) as w:
        for i in range(20):
            w.write(rec(f"m{i}"))
    with LogWriter(str(tmp_path), "echo", max_bytes=300, backups=1) as w:
        assert w.write(rec("after restart")) == 21


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        w.write(rec("whole"))
    with open(tmp_path / "echo.log", "ab") as f:
        f.write(b'{"ts": 1, "message": "half')  # the supervisor died mid-write
    reader = LogReader(str(tmp_path), "echo")
    assert reader.query() == ([reader.query()[0][0]], 1)
    with LogWriter(str(tmp_path), "echo") as w:
        assert w.write(rec("next")) == 2
    entries, cursor = reader.query()
    assert messages(entries) == ["whole", "next"] and cursor == 2
    assert messages(reader.query(after=1)[0]) == ["next"]


def test_a_follower_of_removed_logs_picks_up_the_new_ones(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        for i in range(10):
            w.write(rec(f"old{i}"))
    os.remove(tmp_path / "echo.log")
    with LogWriter(str(tmp_path), "echo") as w:
        w.write(rec("new"))
    entries, cursor = LogReader(str(tmp_path), "echo").query(after=10)
    assert messages(entries) == ["new"] and cursor == 1


def test_binary_search_finds_the_cursor_in_a_large_file(tmp_path):
    with LogWriter(str(tmp_path), "echo", max_bytes=0) as w:
        for i in range(1, 5001):
            w.write(rec(f"m{i} " + "x" * (i % 37)))
    reader = LogReader(str(tmp_path), "echo")
    for after in [0, 1, 999, 2500, 4998, 4999, 5000]:
        entries, _ = reader.query(after=after, lines=2)
        assert [e["cursor"] for e in entries] == [c for c in (after + 1, after + 2) if c <= 5000]


def test_writes_from_many_threads_are_whole_lines_with_unique_cursors(tmp_path):
    w = LogWriter(str(tmp_path), "echo", max_bytes=20_000, backups=100)

    def spam(n):
        for i in range(200):
            w.write(rec(f"thread {n} line {i} " + "y" * 50))
    threads = [threading.Thread(target=spam, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    entries, cursor = LogReader(str(tmp_path), "echo").query(after=0, lines=10_000)
    assert [e["cursor"] for e in entries] == list(range(1, 1601)) and cursor == 1600
    for path in log_paths(str(tmp_path), "echo"):
        with open(path) as f:
            for line in f:
                json.loads(line)


def test_follow_yields_the_tail_then_new_records(tmp_path):
    w = LogWriter(str(tmp_path), "echo")
    for i in range(5):
        w.write(rec(f"m{i}", "ERROR" if i % 2 else "INFO"))
    counter = itertools.count(5)
    sleeps = []

    def sleep(seconds):  # while the follower waits, the service logs two more lines
        sleeps.append(seconds)
        for _ in range(2):
            i = next(counter)
            w.write(rec(f"m{i}", "ERROR" if i % 2 else "INFO"))

    follower = LogReader(str(tmp_path), "echo").follow(lines=2, sleep=sleep, interval=0.25)
    assert messages(itertools.islice(follower, 8)) == [f"m{i}" for i in range(3, 11)]
    assert sleeps == [0.25] * 3
    errors = LogReader(str(tmp_path), "echo").follow(lines=1, level="ERROR", sleep=sleep)
    assert [int(m[1:]) % 2 for m in messages(itertools.islice(errors, 4))] == [1, 1, 1, 1]
    w.close()


@pytest.mark.parametrize("text,redacted", [
    ("tcp_secret=abc123 next", "tcp_secret=******** next"),
    ("password: hunter2", "password: ********"),
    ('{"api_key": "a b c", "user": "bob"}', '{"api_key": "********", "user": "bob"}'),
    ("TOKEN = 'xyz'", "TOKEN = '********'"),
    ("connect tcp://admin:s3cret@db:5432/x", "connect tcp://admin:********@db:5432/x"),
    ("db_passwd=pw&user=me", "db_passwd=********&user=me"),
    ("nothing to hide here", "nothing to hide here"),
    ("the key point is speed", "the key point is speed"),
])
def test_redact_masks_secret_values(text, redacted):
    assert redact(text) == redacted


def test_secrets_never_reach_the_log_file(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        w.write(rec("starting with tcp_secret=hunter2"))
    assert "hunter2" not in (tmp_path / "echo.log").read_text()


@pytest.mark.parametrize("stream,line,level", [
    ("stdout", "ERROR in the output is still output", "INFO"),
    ("stderr", "Traceback (most recent call last):", "ERROR"),
    ("stderr", "Error: no such file", "ERROR"),
    ("stderr", "WARNING:root:disk almost full", "WARNING"),
    ("stderr", "2024-05-01 12:00:00,123 - echo - INFO - started", "INFO"),
    ("stderr", "[DEBUG] cache miss", "DEBUG"),
    ("stderr", "CRITICAL:db:gone", "CRITICAL"),
    ("stderr", "WARN something", "WARNING"),
])
def test_captured_lines_get_a_level(stream, line, level):
    assert classify_level(stream, line) == level
    assert make_record(stream, line, pid=1, worker_id=0, ts=0)["level"] == level


def test_odd_records_are_normalised_rather_than_crashing_the_writer(tmp_path):
    with LogWriter(str(tmp_path), "echo") as w:
        w.write({"ts": 1.0, "level": "warn", "stream": "elsewhere", "message": 123})
    [entry], _ = LogReader(str(tmp_path), "echo").query()
    assert (entry["level"], entry["stream"], entry["message"]) == ("WARNING", "log", "123")


def test_bad_names_are_refused(tmp_path):
    with pytest.raises(ValueError):
        LogWriter(str(tmp_path), "../etc/passwd")
    with pytest.raises(ValueError):
        make_record("stdin", "x", pid=1, worker_id=0, ts=0)
