"""The device simulator and the remote console, run as real processes. `scope` is the
suite-wide fixture that checks no shared-memory object of the test is left behind."""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from speedysvc import connect, serve

from services.device_simulator import DeviceSimulatorService

from device_api_peers import ZmqPeer

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT, EMERGENCY, COMMAND_RESULT = ((t).to_bytes(4, "little") for t in (4001, 2001, 6001))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"the process printed nothing within {timeout}s")
    return proc.stdout.readline()


class Simulator:
    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.device_simulator", "--pub-port", "0", "--cmd-port", "0",
             "--heartbeat-interval", "0.2", "--trial-interval", "0.3", "--slow-command-seconds", "0.5", *extra],
            cwd=REPO_ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.ready = json.loads(_read_line(self.proc, 30))
        assert self.ready["ready"] is True
        self.subscriber_port = self.ready["subscriber_port"]
        self.command_port = self.ready["command_port"]

    def terminate(self, signalled: bool = False) -> int:
        """SIGTERM (unless the test already sent it: a second one during shutdown kills) and wait."""
        if self.proc.poll() is None:
            if not signalled:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def simulator():
    sim = Simulator()
    yield sim
    sim.terminate()


@pytest.fixture
def peer(simulator, zmq_context):
    peer = ZmqPeer(zmq_context, simulator.subscriber_port, simulator.command_port)
    peer.wait_until_subscribed(timeout=10)
    yield peer
    peer.close()


def _wait_for_event(peer, topic: bytes, kind: int, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = peer.recv_frames(max(0.0, deadline - time.monotonic()))
        if frames is not None and frames[0] == topic:
            body = json.loads(frames[1])
            if body.get("kind", body.get("result")) == kind:
                return body
    raise AssertionError(f"no message of kind {kind} on topic {topic!r} within {timeout}s")


def test_a_peer_asks_configuration_and_status_when_it_hears_the_heartbeat(peer):
    configuration = peer.request({"command": 300, "customCommand": -1, "nonce": 1, "data": None})
    assert configuration["result"] == 100 and configuration["data"]["deviceId"] == "device-simulator"
    status = peer.request({"command": 400, "customCommand": -1, "nonce": 2, "data": None})
    assert status["result"] == 100 and status["data"]["emergencyStopped"] is False


def test_emergency_stop_and_resume(peer):
    assert peer.request({"command": 200, "nonce": 3})["result"] == 100
    assert _wait_for_event(peer, EMERGENCY, 101)
    assert peer.request({"command": 400, "nonce": 4})["data"]["emergencyStopped"] is True
    refused = peer.request({"command": 50, "nonce": 5})
    assert (refused["result"], refused["errorKind"], refused["errorCode"]) == (400, 2, 10)
    assert peer.request({"command": 210, "nonce": 6})["result"] == 100
    assert _wait_for_event(peer, EVENT, 102)


def test_the_slow_command_replies_pending_then_publishes_its_result(peer):
    reply = peer.request({"command": 50, "customCommand": -1, "nonce": 99, "data": None})
    assert reply["result"] == 201
    result = _wait_for_event(peer, COMMAND_RESULT, 100)
    assert (result["nonce"], result["command"]) == (99, 50)
    assert peer.request({"request": "commandResult", "nonce": 99})["state"] == "complete"


def test_the_simulator_runs_trials(peer):
    kinds = []
    deadline = time.monotonic() + 10
    while 1102 not in kinds or 1101 not in kinds:
        assert time.monotonic() < deadline, kinds
        frames = peer.next_non_heartbeat()
        if frames[0] == EVENT:
            kinds.append(json.loads(frames[1])["kind"])
    start = kinds.index(1101)
    assert kinds[start:start + 4] == [1101, 1301, 1311, 1102]


def test_sigterm_publishes_application_terminating_and_exits_0(simulator, peer):
    simulator.proc.send_signal(signal.SIGTERM)
    assert _wait_for_event(peer, EVENT, 202)
    assert simulator.terminate(signalled=True) == 0


def _console(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.device_api.console", *args], cwd=REPO_ROOT, env=_env(),
                          input=stdin, capture_output=True, text=True, timeout=60)


def _ports(simulator) -> list:
    return ["--pub-port", str(simulator.subscriber_port), "--cmd-port", str(simulator.command_port)]


def test_console_sends_a_command(simulator):
    result = _console(*_ports(simulator), "--send", "GET_STATUS")
    assert result.returncode == 0, result.stderr
    assert "reply SUCCESS" in result.stdout and '"emergencyStopped": false' in result.stdout


def test_console_waits_for_an_asynchronous_result(simulator):
    result = _console(*_ports(simulator), "--send", "start_acquisition", "--wait-result", "--timeout", "10")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "reply PENDING_WITH_NOTIFICATION" in result.stdout
    assert "result [COMMAND_RESULT" in result.stdout


def test_console_shows_events_live(simulator):
    result = _console(*_ports(simulator), "--listen", "10", "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("[") for line in lines)


def test_console_interactive_session(simulator):
    result = _console(*_ports(simulator), stdin="status\ncmd GET_CONFIGURATION\nsnapshot\nnonsense\nquit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("reply SUCCESS") == 2
    assert '"sequences"' in result.stdout and "unknown input 'nonsense'" in result.stdout


def test_console_rejects_an_unknown_command_name(simulator):
    result = _console(*_ports(simulator), "--send", "MAKE_COFFEE")
    assert result.returncode == 64 and "unknown command 'MAKE_COFFEE'" in result.stderr


def test_simulator_and_console_over_speedysvc(scope):
    sim = Simulator("--no-zmq", "--speedysvc-scope", scope)
    try:
        assert sim.ready["speedysvc_shm"] == f"shm://{scope}"
        result = _console("--speedysvc", sim.ready["speedysvc_shm"], "--send", "GET_CONFIGURATION")
        assert result.returncode == 0, result.stderr
        assert "reply SUCCESS" in result.stdout
        result = _console("--speedysvc", sim.ready["speedysvc_shm"], "--send", "START_ACQUISITION", "--wait-result")
        assert result.returncode == 0, result.stderr + result.stdout
        assert "result [COMMAND_RESULT" in result.stdout
    finally:
        assert sim.terminate() == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_simulator_served_as_a_speedysvc_worker(scope, monkeypatch, zmq_context):
    """How the supervisor runs it: DeviceSimulatorService in a worker process."""
    pub_port, cmd_port = _free_port(), _free_port()
    for key, value in {"PUB_PORT": pub_port, "CMD_PORT": cmd_port, "HEARTBEAT_INTERVAL": 0.2,
                       "TRIAL_INTERVAL": 0.3, "SLOW_COMMAND_SECONDS": 0.3}.items():
        monkeypatch.setenv(f"DEVICE_SIMULATOR_{key}", str(value))
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    with serve(DeviceSimulatorService, workers=1, scope=scope, tcp="127.0.0.1:0") as running:
        peer = ZmqPeer(zmq_context, pub_port, cmd_port)
        try:
            peer.wait_until_subscribed(timeout=10)
            assert peer.request({"command": 400, "nonce": 1})["result"] == 100
        finally:
            peer.close()
        for address in (running.shm_address, running.tcp_address):
            with connect("device_simulator", address) as client:
                subscription = client.subscribe(["6001"])
                try:
                    reply = client.send_command({"command": 50, "customCommand": -1, "nonce": 5, "data": None})
                    assert reply["result"] == 201
                    event = subscription.get(timeout=10)
                    assert event.payload["message"]["nonce"] == 5 and event.payload["message"]["result"] == 100
                    assert client.get_command_result(5)["state"] == "complete"
                finally:
                    subscription.close()
