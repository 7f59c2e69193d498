"""Remote console: shows a device's events live and sends it any ApiCommand, as a 0.12
management service would (SUB to the event port, REQ to the command port), or through
speedysvc.

With example.ini (`python -m speedysvc example.ini` runs DeviceSimulatorService, a device
bound to 127.0.0.1 PUB 5556 / REP 5557 and served as the speedysvc service device_simulator):

    python -m services.device_api.console                          # interactive, ZeroMQ 5556/5557
    python -m services.device_api.console --speedysvc shm://       # the same device through speedysvc
    python -m services.device_api.console --send GET_STATUS        # one command, print the reply
    python -m services.device_api.console --send START_ACQUISITION --wait-result
    python -m services.device_api.console --send SET_APPLICATION_MODE --data '{"mode": 300}'
    python -m services.device_api.console --listen 10              # print events for 10 s

Next to example.ini, the interactive device application on other ports:

    python -m services.device_api.client_application --pub-port 5566 --cmd-port 5567
    python -m services.device_api.console --pub-port 5566 --cmd-port 5567

`--speedysvc shm://` finds the scope (SPEEDYSVC_SCOPE, else the running supervisor's) and
the device service in it (device_simulator, else device_api); shm://SCOPE, tcp://HOST:PORT
and --service-name say it explicitly.

Interactive input (COMMAND: a name, a unique name prefix or a number, any case):
  COMMAND [ARG]          send it; ARG is JSON data, or for the mode commands a mode name
                         (SET_APPLICATION_MODE IN_TRAINING) and for SET_*_ENABLED on/off
  cmd COMMAND [ARG]      the same
  status, config, estop, resume, animals    GET_STATUS, GET_CONFIGURATION, EMERGENCY_STOP,
                         EMERGENCY_RESUME, GET_ANIMALS
  commands               every ApiCommand with the data it takes
  snapshot               the device's last heartbeat, status and emergency (extension)
  result NONCE           the result of an asynchronous command, by nonce (extension)
  help, quit
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any, Optional, Protocol, TextIO, Tuple

from .application_modes import ApiApplicationMode, ApiTrainingMode
from .commands import ApiCommand, ApiCommandRequestResult
from .enum_resolution import resolve_enum
from .events import ApiEventKind
from .remote_client import ClientCurveKeys, CommandTimeout, ReceivedMessage, ZmqDeviceClient
from .topics import ApiTopic

_SHORTCUTS = {
    "status": ApiCommand.GET_STATUS,
    "config": ApiCommand.GET_CONFIGURATION,
    "estop": ApiCommand.EMERGENCY_STOP,
    "resume": ApiCommand.EMERGENCY_RESUME,
    "animals": ApiCommand.GET_ANIMALS,
}

# The request data each command takes (0.12's ApiCommand documentation).
_MODE_COMMANDS = {ApiCommand.SET_APPLICATION_MODE: ApiApplicationMode, ApiCommand.SET_TRAINING_MODE: ApiTrainingMode}
_ON, _OFF = ("on", "true", "yes", "1", "enable"), ("off", "false", "no", "0", "disable")


def data_help(command: ApiCommand) -> str:
    if command in _MODE_COMMANDS:
        names = "|".join(m.name for m in _MODE_COMMANDS[command])
        return f'{{"mode": N}} or {names}'
    if 1000 <= command < 1100:
        return '{"enabled": true|false} or on|off'
    if command == ApiCommand.USER_DEFINED:
        return "any JSON (and --custom-command N)"
    return "no data"


def command_data(command: int, text: str) -> Any:
    """The request data of `command` from what was typed: JSON, a mode name, on/off."""
    text = text.strip()
    if not text:
        return None
    if command in _MODE_COMMANDS and not text.startswith("{"):
        return {"mode": int(resolve_enum(_MODE_COMMANDS[ApiCommand(command)], text))}
    if 1000 <= command < 1100 and text.lower() in _ON + _OFF:
        return {"enabled": text.lower() in _ON}
    return json.loads(text)


class DeviceConnection(Protocol):
    def receive(self, timeout: Optional[float] = None) -> Optional[ReceivedMessage]: ...

    def send_command(self, command: int, data: Any = None, custom_command: int = -1,
                     nonce: Optional[int] = None, timeout: Optional[float] = None) -> dict: ...

    def next_nonce(self) -> int: ...

    def snapshot(self, timeout: Optional[float] = None) -> dict: ...

    def command_result(self, nonce: int, timeout: Optional[float] = None) -> dict: ...

    def close(self) -> None: ...


class UnknownCommand(ValueError):
    """The command is neither an ApiCommand name nor a number."""


def parse_command(text: str) -> int:
    """An ApiCommand by name (any case) or unique name prefix, or any command number."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return resolve_enum(ApiCommand, text.upper())
    except ValueError:
        names = ", ".join(c.name for c in ApiCommand)
        raise UnknownCommand(f"unknown command {text!r}; use a number or one of: {names}") from None


def describe(message: ReceivedMessage) -> str:
    try:
        topic = ApiTopic(message.topic).name
    except ValueError:
        topic = str(message.topic)
    label = f"{topic}"
    if isinstance(message.body, dict) and "kind" in message.body:
        try:
            label += f" {ApiEventKind(message.body['kind']).name}"
        except ValueError:
            label += f" kind={message.body['kind']}"
    if message.seq is not None:
        label += f" #{message.seq}"
    return f"[{label}] {json.dumps(message.body)}"


def describe_reply(reply: dict) -> str:
    try:
        result = ApiCommandRequestResult(reply.get("result")).name
    except ValueError:
        result = str(reply.get("result"))
    return f"reply {result}: {json.dumps(reply)}"


class Console:
    def __init__(self, connection: DeviceConnection, out: TextIO, timeout: float) -> None:
        self._connection = connection
        self._out = out
        self._timeout = timeout
        self._print_lock = threading.Lock()
        self._stop = threading.Event()

    def print(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self._out, flush=True)

    def listen(self, duration: Optional[float], count: Optional[int]) -> int:
        """Print events until `duration` passes or `count` arrived; 0 if any arrived."""
        deadline = None if duration is None else time.monotonic() + duration
        received = 0
        while not self._stop.is_set() and (count is None or received < count):
            wait = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if wait <= 0:
                break
            message = self._connection.receive(wait)
            if message is not None:
                received += 1
                self.print(describe(message))
        return 0 if received else 1

    def wait_until_connected(self) -> bool:
        """A SUB socket misses what is published before it joins: wait for the first message."""
        message = self._connection.receive(self._timeout)
        if message is not None:
            self.print(describe(message))
        return message is not None

    def send(self, command: int, data: Any, custom_command: int, wait_result: bool) -> int:
        nonce = self._connection.next_nonce()
        reply = self._connection.send_command(command, data, custom_command, nonce=nonce, timeout=self._timeout)
        self.print(describe_reply(reply))
        if reply.get("result") != ApiCommandRequestResult.PENDING_WITH_NOTIFICATION or not wait_result:
            return 0 if reply.get("result") in (ApiCommandRequestResult.SUCCESS, ApiCommandRequestResult.PENDING,
                                                 ApiCommandRequestResult.PENDING_WITH_NOTIFICATION) else 2
        return self._wait_for_result(nonce)

    def _wait_for_result(self, nonce: int) -> int:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            message = self._connection.receive(min(0.25, max(0.0, deadline - time.monotonic())))
            if message is None:
                continue
            if message.topic == ApiTopic.COMMAND_RESULT and message.body.get("nonce") == nonce:
                self.print("result " + describe(message))
                return 0 if message.body.get("result") == ApiCommandRequestResult.SUCCESS else 2
        # Missed the event (or the device publishes it later than our timeout): ask by nonce.
        self.print("result by nonce: " + json.dumps(self._connection.command_result(nonce, self._timeout)))
        return 3

    def interactive(self, lines: TextIO) -> int:
        listener = threading.Thread(target=self.listen, args=(None, None), name="console-events", daemon=True)
        listener.start()
        self.print("commands: status, config, estop, resume, cmd NAME|NUMBER [JSON], snapshot, result NONCE, quit")
        try:
            for line in lines:
                words = line.strip().split(maxsplit=2)
                if not words:
                    continue
                if words[0] in ("quit", "exit"):
                    break
                try:
                    self._run_line(words)
                except (UnknownCommand, ValueError, CommandTimeout) as exc:
                    self.print(f"error: {exc}")
        finally:
            self._stop.set()
            listener.join()
        return 0

    def _run_line(self, words: list) -> None:
        head = words[0]
        if head == "help":
            self.print(__doc__)
        elif head in _SHORTCUTS:
            self.send(_SHORTCUTS[head], None, -1, wait_result=False)
        elif head == "commands":
            self.print("\n".join(f"{c.value:>6} {c.name}: {data_help(c)}" for c in ApiCommand))
        elif head == "cmd" and len(words) >= 2:
            command = parse_command(words[1])
            self.send(command, command_data(command, words[2] if len(words) > 2 else ""), -1, wait_result=False)
        elif head == "snapshot":
            self.print(json.dumps(self._connection.snapshot(self._timeout)))
        elif head == "result" and len(words) >= 2:
            self.print(json.dumps(self._connection.command_result(int(words[1]), self._timeout)))
        elif _is_command_name(head):
            command = parse_command(head)
            rest = " ".join(words[1:])
            self.send(command, command_data(command, rest), -1, wait_result=False)
        else:
            self.print(f"unknown input {' '.join(words)!r}; type help")


def _is_command_name(word: str) -> bool:
    """A whole ApiCommand name or number typed as the first word (prefixes need `cmd`)."""
    return word.isdigit() or word.upper() in ApiCommand.__members__


def _speedysvc_target(address: str, service_name: Optional[str]) -> Tuple[str, str]:
    """(address, service name) with a bare shm:// and a missing name resolved (see speedysvc_discovery)."""
    from .speedysvc_discovery import DEVICE_SERVICE_NAMES, resolve_scope, resolve_service_name

    if address.startswith("shm://"):
        scope = resolve_scope(address[len("shm://"):].strip("/") or None)
        return f"shm://{scope}", resolve_service_name(scope, service_name)
    return address, service_name or DEVICE_SERVICE_NAMES[0]


def _connect(args: argparse.Namespace) -> DeviceConnection:
    if args.speedysvc:
        from .speedysvc_client import SpeedysvcDeviceClient

        address, service_name = _speedysvc_target(args.speedysvc, args.service_name)
        return SpeedysvcDeviceClient(address, service_name=service_name, timeout=args.timeout)
    curve = None
    if args.curve_server_key:
        import zmq.auth

        public, secret = zmq.auth.load_certificate(args.curve_client_certificate)
        curve = ClientCurveKeys(args.curve_server_key, public.decode("ascii"), secret.decode("ascii"))
    return ZmqDeviceClient(args.host, args.pub_port, args.cmd_port, curve=curve, timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {c.value:>6} {c.name}: {data_help(c)}" for c in ApiCommand)
    parser = argparse.ArgumentParser(prog="python -m services.device_api.console", description=__doc__,
                                     epilog="Every ApiCommand (for --send, cmd, or typed as is) and its data:\n"
                                            f"{commands}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pub-port", type=int, default=5556, help="the device's event (PUB) port")
    parser.add_argument("--cmd-port", type=int, default=5557, help="the device's command (REP) port")
    parser.add_argument("--speedysvc", metavar="ADDRESS", help="connect through speedysvc (shm://SCOPE or tcp://HOST:PORT)")
    parser.add_argument("--service-name", help="speedysvc service name (default: the device service running in "
                        "the scope: device_simulator as in example.ini, or device_api)")
    parser.add_argument("--curve-server-key",
                        help="the device's CURVE public key (Z85; as --curve-server-key=KEY: it may start with -)")
    parser.add_argument("--curve-client-certificate", help="this client's certificate file with its secret key")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for replies and first event")
    parser.add_argument("--send", metavar="COMMAND", help="send one command (name or number) and exit")
    parser.add_argument("--data", help="data of the command sent with --send: JSON, or a mode name, or on|off")
    parser.add_argument("--custom-command", type=int, default=-1)
    parser.add_argument("--wait-result", action="store_true", help="with --send: wait for an asynchronous result")
    parser.add_argument("--listen", type=float, metavar="SECONDS", help="print events for SECONDS and exit")
    parser.add_argument("--count", type=int, help="with --listen: exit after COUNT events")
    return parser


def main(argv: Optional[list] = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    try:
        command = parse_command(args.send) if args.send else None
        data = command_data(command, args.data) if args.data and command is not None else None
    except (UnknownCommand, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 64
    try:
        connection = _connect(args)
    except Exception as exc:  # noqa: BLE001 - whatever stops us reaching the device, say so plainly
        print(f"error: cannot reach the device: {exc}", file=sys.stderr)
        return 4
    console = Console(connection, stdout, args.timeout)
    try:
        if command is not None:
            if args.wait_result and not console.wait_until_connected():
                print("error: heard nothing from the device; is it running?", file=sys.stderr)
                return 4
            return console.send(command, data, args.custom_command, args.wait_result)
        if args.listen is not None:
            return console.listen(args.listen, args.count)
        return console.interactive(stdin)
    except CommandTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:
        return 130
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
