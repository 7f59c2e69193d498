"""An interactive device application on the device API (0.12's scripts/client_application.py):
it sends heartbeats, publishes any event kind you type, answers every ApiCommand, and sends
the results of asynchronous commands when you say so. For trying remote peers and tools
without the real acquisition application.

    python -m services.device_api.client_application                 # PUB 5556, REP 5557
    python -m services.device_api.client_application --pub-port 5566 --cmd-port 5567

example.ini's simulator (python -m speedysvc example.ini) already binds 5556/5557, so run
this one next to it on other ports and point the console at them:

    python -m services.device_api.console --pub-port 5566 --cmd-port 5567

Input (one per line; KIND, COMMAND and RESULT are names, numbers or unique name prefixes):
  event KIND [JSON]          publish an event of any ApiEventKind, JSON being its context
  status                     publish a systemStatus event with the current status
  hold COMMAND               answer COMMAND with PENDING_WITH_NOTIFICATION from now on
  release COMMAND            answer COMMAND synchronously again
  pending                    list commands waiting for their result
  result NONCE [RESULT] [JSON]   publish the result of a pending command (default SUCCESS)
  kinds | commands           list the event kinds | the commands and how they are answered
  help | quit

Commands are answered as 0.12 documents them: GET_STATUS, GET_CONFIGURATION, GET_ANIMALS,
SET_APPLICATION_MODE/SET_TRAINING_MODE {mode}, EMERGENCY_STOP/RESUME (publishing their
events), the SET_*_ENABLED settings {enabled}, NONE (SUCCESS), the obsolete
START/STOP_ACQUISITION (UNRECOGNIZED) and USER_DEFINED (held: its result comes from
`result NONCE`). Every command received is printed with its nonce.
"""
from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, TextIO

from . import (
    ApiAlarmKind,
    ApiAlarmStatus,
    ApiApplicationMode,
    ApiBehaviorStatus,
    ApiCommand,
    ApiCommandRequest,
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    ApiDetectorKind,
    ApiDetectorStatus,
    ApiEmergencyResumeReason,
    ApiEmergencyStopReason,
    ApiEventKind,
    ApiOptions,
    ApiPelletDeviceStatus,
    ApiProjectStatus,
    ApiReachStatus,
    ApiSystemConfiguration,
    ApiSystemStatus,
    ApiTrainingMode,
    ApiTunnelDeviceStatus,
    RpcOptions,
    ZmqGatewayOptions,
    build_event,
    create_api_service,
    resolve_enum,
)

VERSION = "client-application-1"

# SET_*_ENABLED command -> (the status field it sets, the event it publishes when it changes).
_SETTINGS: Dict[ApiCommand, tuple] = {
    ApiCommand.SET_LIVE_ANALYSIS_ENABLED: ("is_live_analysis_enabled", None),
    ApiCommand.SET_PELLET_DELIVERY_ENABLED: ("is_pellet_delivery_enabled", None),
    ApiCommand.SET_PELLET_COVER_ENABLED: ("is_pellet_cover_enabled", None),
    ApiCommand.SET_INTERTRIAL_PELLET_SHIFT_ENABLED: ("is_intertrial_pellet_shift_enabled", None),
    ApiCommand.SET_HOME_ON_EXCESSIVE_DRIFT_ENABLED: ("is_home_on_excessive_drift_enabled", None),
    ApiCommand.SET_TRIANGLE_PELLET_DISTANCE_DETECTION_ENABLED: ("is_triangle_pellet_distance_detection_enabled", None),
    ApiCommand.SET_AUTO_CLOSE_GATE_ON_INTERTRIAL_ENABLED: ("is_auto_close_gate_on_intertrial_enabled", None),
    ApiCommand.SET_AUTO_CLAMP_ENABLED: ("is_auto_clamp_enabled", ApiEventKind.autoClampEnabledChanged),
    ApiCommand.SET_TUNNEL_SWEEP_ENABLED: ("is_tunnel_sweep_enabled", None),
    ApiCommand.SET_BATCH_TRIALS_ENABLED: ("is_batch_trials_enabled", None),
}
_PELLET_DEVICE_SETTINGS = {"is_home_on_excessive_drift_enabled", "is_tunnel_sweep_enabled"}


class InputError(ValueError):
    """A line of input the application cannot act on; the message says why."""


@dataclass
class DeviceState:
    application_mode: ApiApplicationMode = ApiApplicationMode.IDLE
    training_mode: ApiTrainingMode = ApiTrainingMode.UNDEFINED
    emergency_stopped: bool = False
    settings: Dict[str, bool] = field(default_factory=lambda: {name: False for name, _ in _SETTINGS.values()})

    def status(self, identifier: str) -> ApiSystemStatus:
        pellet = {k: v for k, v in self.settings.items() if k in _PELLET_DEVICE_SETTINGS}
        behavior = {k: v for k, v in self.settings.items() if k not in _PELLET_DEVICE_SETTINGS}
        return ApiSystemStatus(
            application_mode=self.application_mode,
            training_mode=self.training_mode,
            animal=None,
            project=ApiProjectStatus(day_path=f"/data/{identifier}/today", trial_id=0, session_id=""),
            alarms=[ApiAlarmStatus(alarm_id=ApiAlarmKind.externalDoors, is_active=False, is_enabled=True)],
            detectors=[ApiDetectorStatus(detector_id=ApiDetectorKind.frontDoor, is_active=False, is_enabled=True)],
            pellet_device=ApiPelletDeviceStatus(dcs_send_x=0.0, dcs_send_y=0.0, dcs_send_z=0.0, **pellet),
            tunnel_device=ApiTunnelDeviceStatus(magnet_intensity=0.0),
            behavior=ApiBehaviorStatus(baseline_magnet_intensity=0.0, reaches=ApiReachStatus(), **behavior),
        )


class ClientApplication:
    def __init__(self, service: Any, out: TextIO) -> None:
        self._service = service
        self._out = out
        self._lock = threading.Lock()
        self._state = DeviceState()
        self._held = {ApiCommand.USER_DEFINED}
        self._pending: Dict[int, ApiCommandRequest] = {}
        service.command_request_delegate = self.handle_command

    def print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    # -- commands from remote peers (on the service's handler threads) ---------------------------

    def handle_command(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        with self._lock:
            response = self._answer(request)
        name = getattr(request.command, "name", str(request.command))
        self.print(f"command {name} nonce {request.nonce} data {json.dumps(request.data)} -> "
                   f"{ApiCommandRequestResult(response.result).name}")
        return response

    def _answer(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        command, data = request.command, request.data
        if command in self._held:
            self._pending[request.nonce] = request
            return _response(ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)
        if command == ApiCommand.NONE:
            return _response(ApiCommandRequestResult.SUCCESS)
        if command == ApiCommand.GET_STATUS:
            return _response(ApiCommandRequestResult.SUCCESS, self._state.status(self._service.identifier))
        if command == ApiCommand.GET_CONFIGURATION:
            identifier = self._service.identifier
            return _response(ApiCommandRequestResult.SUCCESS, ApiSystemConfiguration(
                application_version=VERSION, device_id=identifier, configuration_location=f"/etc/{identifier}",
                data_location=f"/data/{identifier}", animal_location=f"/data/{identifier}/animals",
                log_location=f"/var/log/{identifier}", inference_model="none"))
        if command == ApiCommand.GET_ANIMALS:
            return _response(ApiCommandRequestResult.SUCCESS, [])
        if command in (ApiCommand.SET_APPLICATION_MODE, ApiCommand.SET_TRAINING_MODE):
            return self._set_mode(command, data)
        if command == ApiCommand.EMERGENCY_STOP:
            self._state.emergency_stopped = True
            self.publish(ApiEventKind.emergencyStop, {"reason": "remote command", "reason_code":
                          ApiEmergencyStopReason.rpc_service, "active_alarms": []})
            return _response(ApiCommandRequestResult.SUCCESS)
        if command == ApiCommand.EMERGENCY_RESUME:
            if not self._state.emergency_stopped:
                return _response(ApiCommandRequestResult.FAILED)
            self._state.emergency_stopped = False
            self.publish(ApiEventKind.emergencyResume, {"reason": "remote command", "reason_code":
                          ApiEmergencyResumeReason.rpc_service, "resumed_alarms": []})
            return _response(ApiCommandRequestResult.SUCCESS)
        if command in _SETTINGS:
            return self._set_setting(command, data)
        # START/STOP_ACQUISITION are obsolete; anything else is not known here.
        return _response(ApiCommandRequestResult.UNRECOGNIZED)

    def _set_mode(self, command: ApiCommand, data: Any) -> ApiCommandRequestResponse:
        training = command == ApiCommand.SET_TRAINING_MODE
        enum_type, attribute = ((ApiTrainingMode, "training_mode") if training
                                else (ApiApplicationMode, "application_mode"))
        current = getattr(self._state, attribute)
        try:
            mode = resolve_enum(enum_type, str((data or {})["mode"]))
        except (KeyError, TypeError, ValueError):
            return _response(ApiCommandRequestResult.FAILED, {"mode": current})
        if mode != current:
            setattr(self._state, attribute, mode)
            if training:
                self.publish(ApiEventKind.trainingModeChanged, {"training_mode": mode})
            else:
                self.publish(ApiEventKind.applicationModeChanged, {"mode": mode})
        return _response(ApiCommandRequestResult.SUCCESS, {"mode": mode})

    def _set_setting(self, command: ApiCommand, data: Any) -> ApiCommandRequestResponse:
        attribute, event_kind = _SETTINGS[command]
        enabled = (data or {}).get("enabled") if isinstance(data, dict) else None
        if not isinstance(enabled, bool):
            return _response(ApiCommandRequestResult.FAILED, {"enabled": self._state.settings[attribute]})
        if enabled != self._state.settings[attribute]:
            self._state.settings[attribute] = enabled
            if event_kind is not None:
                self.publish(event_kind, {"is_enabled": enabled})
        return _response(ApiCommandRequestResult.SUCCESS, {"enabled": enabled})

    def publish(self, kind: Any, context: Any) -> None:
        self._service.send_event_dict(build_event(kind, context))

    # -- what the user types -----------------------------------------------------------------------

    def run_line(self, line: str) -> bool:
        """Act on one line; False when the user asked to quit."""
        words = line.strip().split(maxsplit=1)
        if not words:
            return True
        head, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
        if head in ("quit", "exit"):
            return False
        if head == "help":
            self.print(__doc__)
        elif head == "event":
            self._event_line(rest)
        elif head == "status":
            with self._lock:
                status = self._state.status(self._service.identifier)
            self.publish(ApiEventKind.systemStatus, status)
            self.print("published systemStatus")
        elif head in ("hold", "release"):
            command = _resolve(ApiCommand, rest)
            with self._lock:
                (self._held.add if head == "hold" else self._held.discard)(command)
            when = 'later (PENDING_WITH_NOTIFICATION)' if head == 'hold' else 'at once'
            self.print(f"{command.name} is answered {when}")
        elif head == "pending":
            with self._lock:
                pending = sorted(self._pending.items())
            self.print("\n".join(f"nonce {n}: {getattr(r.command, 'name', r.command)} data {json.dumps(r.data)}"
                                 for n, r in pending) or "no command is pending")
        elif head == "result":
            self._result_line(rest)
        elif head == "kinds":
            self.print("\n".join(f"{k.value:>7} {k.name}" for k in ApiEventKind))
        elif head == "commands":
            with self._lock:
                held = set(self._held)
            self.print("\n".join(f"{c.value:>6} {c.name}{'  (held)' if c in held else ''}" for c in ApiCommand))
        else:
            raise InputError(f"unknown input {head!r}; type help")
        return True

    def _event_line(self, rest: str) -> None:
        kind_text, _, context_text = rest.partition(" ")
        kind = _resolve(ApiEventKind, kind_text)
        context = _json(context_text) if context_text.strip() else None
        self.publish(kind, context)
        self.print(f"published {kind.name}")

    def _result_line(self, rest: str) -> None:
        words = rest.split(maxsplit=2)
        if not words or not words[0].lstrip("-").isdigit():
            raise InputError("usage: result NONCE [RESULT] [JSON data]")
        nonce = int(words[0])
        result, data = ApiCommandRequestResult.SUCCESS, None
        if len(words) > 1:
            if words[1][:1] in "{[\"" or words[1] in ("null", "true", "false"):
                data = _json(" ".join(words[1:]))
            else:
                result = _resolve(ApiCommandRequestResult, words[1])
                data = _json(words[2]) if len(words) > 2 else None
        with self._lock:
            request = self._pending.pop(nonce, None)
        if request is None:
            raise InputError(f"no command with nonce {nonce} is pending; type pending")
        self._service.send_command_result(ApiCommandRequestResponse(
            result=result, data=data, command=request.command, nonce=nonce))
        self.print(f"published the result of {getattr(request.command, 'name', request.command)} "
                   f"nonce {nonce}: {result.name}")


def _response(result: ApiCommandRequestResult, data: Any = None) -> ApiCommandRequestResponse:
    return ApiCommandRequestResponse(result=result, data=data)


def _resolve(enum_type: Any, text: str) -> Any:
    if not text.strip():
        raise InputError(f"name a {enum_type.__name__} (a name, number or unique name prefix)")
    try:
        return resolve_enum(enum_type, text.strip())
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"not JSON: {text!r} ({exc})") from None


def _lines(stream: TextIO) -> "queue.Queue[Optional[str]]":
    """Lines of `stream` read on a thread (None at the end), so the input loop can also
    notice a SIGTERM while nothing is typed."""
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def read() -> None:
        try:
            for line in stream:
                lines.put(line)
        finally:
            lines.put(None)

    threading.Thread(target=read, name="client-application-input", daemon=True).start()
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.device_api.client_application", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pub-port", type=int, default=5556, help="event (PUB) port; 0 picks a free one")
    parser.add_argument("--cmd-port", type=int, default=5557, help="command (REP) port; 0 picks a free one")
    parser.add_argument("--bind-host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("--identifier", default="client-application", help="identifier sent in heartbeats")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds between heartbeats")
    return parser


def main(argv: Optional[list] = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    service = create_api_service(ApiOptions(rpc=RpcOptions(
        identifier=args.identifier, heartbeat_interval=args.heartbeat_interval, subscriber_port=args.pub_port,
        command_port=args.cmd_port, zmq=ZmqGatewayOptions(bind_host=args.bind_host))))
    application = ClientApplication(service, stdout)
    stop = threading.Event()
    # The handler only records the signal; the input loop below acts on it.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        service.start()
    except OSError as exc:  # TransportBindError: the port is taken (example.ini's simulator?)
        print(f"error: {exc}; choose other ports with --pub-port/--cmd-port", file=sys.stderr)
        return 3
    print(json.dumps({"ready": True, "identifier": service.identifier, "subscriber_port": service.subscriber_port,
                      "command_port": service.command_port}), file=stdout, flush=True)
    application.publish(ApiEventKind.applicationLaunched, {"version": VERSION})
    lines = _lines(stdin)
    try:
        while not stop.is_set():
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                continue
            if line is None:
                break  # end of input
            try:
                if not application.run_line(line):
                    break
            except InputError as exc:
                application.print(f"error: {exc}")
    except KeyboardInterrupt:
        pass
    finally:
        application.publish(ApiEventKind.applicationTerminating, {"reason": "quit"})
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
