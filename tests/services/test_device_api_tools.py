"""Seed 003's tools as real processes: the interactive device application (driven through
its stdin, watched by a ZeroMQ peer and by the remote console) and the console, which
sends every ApiCommand; and the console finding example.ini's device service by itself."""
from __future__ import annotations

import json
import os
import re
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest
import zmq

from services.device_api import ApiCommand

from device_api_peers import ZmqPeer, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT, COMMAND_RESULT = ((t).to_bytes(4, "little") for t in (4001, 6001))


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("SPEEDYSVC_SCOPE", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ClientApplication:
    """python -m services.device_api.client_application on free ports, stdin and stdout piped."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.device_api.client_application", "--pub-port", "0", "--cmd-port", "0",
             "--heartbeat-interval", "0.2", *extra],
            cwd=REPO_ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: List[str] = []
        self._output: "queue.Queue" = queue.Queue()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        ready = json.loads(self.read_until(lambda line: line.startswith("{"), timeout=30))
        self.subscriber_port, self.command_port = ready["subscriber_port"], ready["command_port"]

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read_until(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        """The first line of output (after those already read) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._output.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout}s; output so far: {self.lines}") from None
            if line is None:
                raise AssertionError(f"the application ended; output: {self.lines}")
            self.lines.append(line.rstrip("\n"))
            if predicate(self.lines[-1]):
                return self.lines[-1]

    def _read_output(self) -> None:
        # A thread, because select() does not see lines already in the pipe reader's buffer.
        for line in self.proc.stdout:
            self._output.put(line)
        self._output.put(None)

    def ports(self) -> list:
        return ["--pub-port", str(self.subscriber_port), "--cmd-port", str(self.command_port)]

    def quit(self) -> int:
        if self.proc.poll() is None:
            try:
                self.type("quit")
                self.proc.wait(15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()
        return self.proc.returncode


@pytest.fixture
def application():
    app = ClientApplication()
    yield app
    app.quit()


def _console(*args: str, stdin: str = "", env: dict = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.device_api.console", *args], cwd=REPO_ROOT,
                          env=env or _env(), input=stdin, capture_output=True, text=True, timeout=90)


# What the console types for each command, and the result the application answers.
CONSOLE_INPUT = {
    ApiCommand.NONE: ("NONE", "SUCCESS"),
    ApiCommand.START_ACQUISITION: ("start_acquisition", "UNRECOGNIZED"),
    ApiCommand.STOP_ACQUISITION: ("cmd 55", "UNRECOGNIZED"),
    ApiCommand.SET_APPLICATION_MODE: ("set_application_mode IN_TRAINING", "SUCCESS"),
    ApiCommand.SET_TRAINING_MODE: ('cmd SET_TRAINING {"mode": 300}', "SUCCESS"),
    ApiCommand.EMERGENCY_STOP: ("estop", "SUCCESS"),
    ApiCommand.EMERGENCY_RESUME: ("resume", "SUCCESS"),
    ApiCommand.GET_CONFIGURATION: ("config", "SUCCESS"),
    ApiCommand.GET_STATUS: ("status", "SUCCESS"),
    ApiCommand.GET_ANIMALS: ("animals", "SUCCESS"),
    **{c: (f"{c.name} on", "SUCCESS") for c in ApiCommand if 1000 <= c < 1100},
    ApiCommand.USER_DEFINED: ('USER_DEFINED {"anyThing": 1}', "PENDING_WITH_NOTIFICATION"),
}


def test_the_console_sends_every_command_and_the_application_answers_each(application):
    assert set(CONSOLE_INPUT) == set(ApiCommand)
    lines = [typed for typed, _ in CONSOLE_INPUT.values()] + ["quit"]
    result = _console(*application.ports(), "--timeout", "10", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    replies = [line for line in result.stdout.splitlines() if line.startswith("reply ")]
    assert [r.split(":")[0] for r in replies] == [f"reply {expected}" for _, expected in CONSOLE_INPUT.values()]
    status = json.loads(next(r for r in replies if '"command": 400' in r).split(": ", 1)[1])
    assert status["data"]["applicationMode"] == 300 and status["data"]["trainingMode"] == 300
    # The application printed every command it was asked, with what it answered.
    for command, (_, expected) in CONSOLE_INPUT.items():
        application.read_until(lambda line, c=command, e=expected: line.startswith(f"command {c.name} ")
                               and line.endswith(f"-> {e}"))


def test_an_asynchronous_command_completes_when_the_user_says_so(application):
    console = subprocess.Popen(
        [sys.executable, "-m", "services.device_api.console", *application.ports(), "--send", "USER_DEFINED",
         "--data", '{"takeCount": 3}', "--wait-result", "--timeout", "30"],
        cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = application.read_until(lambda line: line.startswith("command USER_DEFINED nonce "), timeout=30)
        nonce = int(re.search(r"nonce (-?\d+)", line).group(1))
        assert '"take_count": 3' in line
        application.type("pending")
        application.read_until(lambda line: line.startswith(f"nonce {nonce}: USER_DEFINED"))
        application.type(f'result {nonce} SUCCESS {{"frames_written": 3}}')
        application.read_until(lambda line: line == f"published the result of USER_DEFINED nonce {nonce}: SUCCESS")
        out, err = console.communicate(timeout=60)
    finally:
        if console.poll() is None:
            console.kill()
            console.communicate()
    assert console.returncode == 0, err + out
    assert "reply PENDING_WITH_NOTIFICATION" in out
    result_line = next(line for line in out.splitlines() if line.startswith("result [COMMAND_RESULT"))
    assert f'"nonce": {nonce}' in result_line and '"framesWritten": 3' in result_line


def test_the_application_publishes_any_event_kind_typed(application, zmq_context):
    peer = ZmqPeer(zmq_context, application.subscriber_port, application.command_port)
    try:
        peer.wait_until_subscribed()
        application.type('event trialSt {"session_id": "S_1", "trial_id": 3, "reason": "Pellet_Seen"}')
        application.type("event 6501")
        application.type("event intertrialPelletShift")
        application.type("event no_such_kind")
        application.type("status")
        bodies = [json.loads(peer.next_non_heartbeat()[1]) for _ in range(4)]
        assert [b["kind"] for b in bodies] == [1301, 6501, 1921, 601]
        assert bodies[0]["context"] == {"sessionId": "S_1", "trialId": 3, "reason": "Pellet_Seen"}
        assert bodies[3]["context"]["applicationMode"] == 0 and "pelletDevice" in bodies[3]["context"]
        application.read_until(lambda line: line.startswith("error: 'no_such_kind' does not match any ApiEventKind"))
    finally:
        peer.close()


def test_the_application_says_which_option_to_use_when_its_port_is_taken(zmq_context):
    blocker = zmq_context.socket(zmq.PUB)
    blocker.linger = 0
    port = blocker.bind_to_random_port("tcp://127.0.0.1")
    try:
        result = subprocess.run([sys.executable, "-m", "services.device_api.client_application", "--pub-port",
                                 str(port), "--cmd-port", "0"], cwd=REPO_ROOT, env=_env(), stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=60)
    finally:
        blocker.close()
    assert result.returncode == 3
    assert str(port) in result.stderr and "--pub-port" in result.stderr


def test_help_says_how_to_use_the_tools_with_example_ini():
    for module in ("services.device_api.console", "services.device_api.client_application"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, env=_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0
        assert "example.ini" in result.stdout and "5556" in result.stdout and "--pub-port 5566" in result.stdout
    console_help = _console("--help").stdout
    assert all(command.name in console_help for command in ApiCommand)
    assert "--speedysvc shm://" in console_help


def test_console_with_a_bare_shm_address_reaches_example_ini_device_simulator(scope, tmp_path):
    """The console used to ask for a service named device_api in the default scope; the
    supervisor of example.ini runs device_simulator in a scope of its own."""
    ini = tmp_path / "device.ini"
    ini.write_text(f"[web monitor]\nenabled = false\n\n[supervisor]\nscope = {scope}\n\n"
                   f"[defaults]\nlog_dir = {tmp_path / 'logs'}\n\n"
                   # the section of example.ini
                   "[DeviceSimulatorService]\nimport_from = services.device_simulator\n"
                   "min_proc_num = 1\nmax_proc_num = 1\n")
    env = _env(XDG_RUNTIME_DIR=str(tmp_path / "run"), DEVICE_SIMULATOR_PUB_PORT=str(_free_port()),
               DEVICE_SIMULATOR_CMD_PORT=str(_free_port()), DEVICE_SIMULATOR_TRIAL_INTERVAL="0")
    (tmp_path / "run").mkdir()
    supervisor = subprocess.Popen([sys.executable, "-m", "speedysvc", str(ini)], cwd=REPO_ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        from services.device_api.speedysvc_discovery import running_device_services
        wait_until(lambda: running_device_services(scope) == ["device_simulator"] or supervisor.poll() is not None,
                   timeout=60, message="the supervisor to serve device_simulator")
        assert supervisor.poll() is None, supervisor.stderr.read()
        result = _console("--speedysvc", "shm://", "--send", "GET_CONFIGURATION", "--timeout", "20", env=env)
        assert result.returncode == 0, result.stderr
        assert "reply SUCCESS" in result.stdout and '"deviceId": "device-simulator"' in result.stdout
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()
        supervisor.stderr.close()
    assert supervisor.returncode == 0


def test_console_names_the_problem_when_no_device_service_runs(scope):
    result = _console("--speedysvc", f"shm://{scope}", "--send", "GET_STATUS", "--timeout", "1")
    assert result.returncode == 4
    assert "cannot reach the device" in result.stderr and "device_simulator" in result.stderr
