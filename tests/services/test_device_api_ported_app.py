"""A device application written against auto-trainer-api 0.12 runs unchanged on
services.device_api once its one `from autotrainer.api import ...` line says
`from services.device_api import ...`.

ported_app/autotrainer_app.py is run twice as a real process -- as written, on the
published package, and with the import replaced, on ours -- and driven by the same
remote peer (raw ZeroMQ SUB + REQ, as a 0.12 management service is): same replies to
the same commands, same events for the same input, apart from the time stamps.
"""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from device_api_peers import HEARTBEAT_TOPIC_FRAME, ZmqPeer

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
APPLICATION = HERE / "ported_app" / "autotrainer_app.py"
RUNNER = HERE / "ported_app" / "run_on_loopback.py"
ORIGINAL_IMPORT = "from autotrainer.api import ("
PORTED_IMPORT = "from services.device_api import ("


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ported_copy(directory: Path) -> Path:
    source = APPLICATION.read_text()
    ported = source.replace(ORIGINAL_IMPORT, PORTED_IMPORT)
    assert source.count(ORIGINAL_IMPORT) == 1 and not _autotrainer_imports(ported)
    path = directory / "ported_app.py"
    path.write_text(ported)
    return path


def _autotrainer_imports(source: str) -> list:
    return [line for line in source.splitlines()
            if line.startswith(("from ", "import ")) and "autotrainer" in line]


def test_the_application_imports_autotrainer_api_exactly_once():
    assert _autotrainer_imports(APPLICATION.read_text()) == \
        [ORIGINAL_IMPORT + "ApiAlarmKind, ApiApplicationMode, ApiCommand, ApiCommandRequestResponse,"]


class RunningApplication:
    def __init__(self, path: Path) -> None:
        self.subscriber_port, self.command_port = _free_port(), _free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNNER), str(path), str(self.subscriber_port), str(self.command_port)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready and self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def quit(self) -> int:
        if self.proc.poll() is None:
            try:
                self.type("quit")
                self.proc.wait(15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()
        return self.proc.returncode


def _normalised(frames: list) -> tuple:
    """(topic, body) with the time stamps, which differ from run to run, replaced by their type."""
    body = json.loads(frames[1])
    for key in ("when", "index", "timestamp"):
        if key in body:
            body[key] = type(body[key]).__name__
    return int.from_bytes(frames[0], "little"), body


REQUESTS = [
    {"command": 300, "customCommand": -1, "nonce": 1, "data": None},
    {"command": 120, "customCommand": -1, "nonce": 2, "data": {"mode": 300}},
    {"command": 120, "customCommand": -1, "nonce": 3, "data": {"mode": 300}},  # unchanged: no event
    {"command": 200, "customCommand": -1, "nonce": 4, "data": None},
    {"command": 99999, "customCommand": 7, "nonce": 5, "data": {"takeCount": 3}},
    {"command": 1070, "customCommand": -1, "nonce": 6, "data": {"enabled": True}},
    {"command": 400, "customCommand": -1, "nonce": 7, "data": None},
]
# What each request publishes: applicationModeChanged; emergencyStop on 2001 and 4001; the
# asynchronous result on 6001.
EVENTS_PER_REQUEST = [0, 1, 0, 2, 1, 0, 0]


def _observe(app: RunningApplication, zmq_context) -> list:
    peer = ZmqPeer(zmq_context, app.subscriber_port, app.command_port)
    try:
        observed = [("heartbeat", _normalised(peer.wait_until_subscribed(timeout=15)))]
        for request, events in zip(REQUESTS, EVENTS_PER_REQUEST, strict=True):
            observed.append(("reply", peer.request(request, timeout=10)))
            observed.extend(("event", _normalised(frames)) for frames in peer.collect_non_heartbeats(events))
        for kind in ("tunnelEnter", "trialAnimalSeen", "6501"):
            app.type(kind)
            observed.append(("typed", _normalised(peer.next_non_heartbeat())))
        heartbeat = peer.recv_frames()
        while heartbeat is not None and heartbeat[0] != HEARTBEAT_TOPIC_FRAME:
            heartbeat = peer.recv_frames()
        observed.append(("still beating", heartbeat is not None))
        return observed
    finally:
        peer.close()


@pytest.fixture
def run_application():
    running = []

    def run(path: Path) -> RunningApplication:
        app = RunningApplication(path)
        running.append(app)
        return app

    yield run
    for app in running:
        app.quit()


def test_the_application_behaves_the_same_on_both(run_application, zmq_context, tmp_path):
    original = run_application(APPLICATION)
    on_reference = _observe(original, zmq_context)
    assert original.quit() == 0

    ported = run_application(_ported_copy(tmp_path))
    on_ours = _observe(ported, zmq_context)
    assert ported.quit() == 0

    assert on_ours == on_reference
    # ...and it did what the application means to do.
    replies = [body for what, body in on_ours if what == "reply"]
    assert [r["result"] for r in replies] == [100, 100, 100, 100, 201, 9999, 0]
    assert replies[0]["data"]["deviceId"] == "Rig_7" and replies[5]["errorKind"] == 2
    events = [body for what, body in on_ours if what in ("event", "typed")]
    assert [topic for topic, _ in events] == [4001, 2001, 4001, 6001, 4001, 4001, 4001]
    assert events[3][1]["nonce"] == 5 and events[3][1]["data"] == {"customCommand": 7, "framesWritten": 3}
    assert [body["kind"] for _, body in events[4:]] == [1101, 1501, 6501]
