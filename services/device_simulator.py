"""A simulated device application using the device API, for trying remote peers
without hardware. Run it on its own:

    python -m services.device_simulator [--pub-port 5556 --cmd-port 5557] [--speedysvc-scope SCOPE]

or under the supervisor, which serves DeviceSimulatorService (one worker: the device
binds the ZeroMQ ports once) and runs the simulated device inside it:

    [DeviceSimulatorService]
    import_from = services.device_simulator
    min_proc_num = 1
    max_proc_num = 1

The worker reads DEVICE_SIMULATOR_* environment variables (see options_from_environment).

It publishes heartbeats, a system status, trial events on a timer, and answers
GET_CONFIGURATION, GET_STATUS, EMERGENCY_STOP, EMERGENCY_RESUME, STOP_ACQUISITION and
START_ACQUISITION, the slow one: it replies PENDING_WITH_NOTIFICATION and publishes
its result on COMMAND_RESULT when the (simulated) hardware is ready. Once bound it
prints one JSON line `{"ready": true, ...}` with the real ports, then runs until
SIGTERM/SIGINT (or --run-seconds).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from enum import IntEnum
from typing import Any, Optional

from services.device_api import (
    ApiCommand,
    ApiCommandRequest,
    ApiCommandRequestResponse,
    ApiCommandRequestResult,
    ApiEventKind,
    ApiOptions,
    RpcOptions,
    RpcService,
    SpeedysvcOptions,
    ZmqGatewayOptions,
    create_api_service,
)
from services.device_api.speedysvc_adapter import AttachedSpeedysvcTransport, DeviceApiMethods

log = logging.getLogger("device_simulator")

SLOW_COMMAND = ApiCommand.START_ACQUISITION
ERROR_EMERGENCY_STOPPED = 10


class SimulatedEventKind(IntEnum):
    """The simulator's own event kinds (an application adds kinds this way)."""

    tunnelEnter = 1101
    tunnelExit = 1102
    trialStarted = 1301
    trialEnded = 1311


class SimulatedDevice:
    def __init__(self, service: RpcService, slow_command_seconds: float) -> None:
        self._service = service
        self._slow_command_seconds = slow_command_seconds
        self._lock = threading.Lock()
        self._emergency_stopped = False
        self._acquiring = False
        self._trial_id = 0
        self._index = 0
        self._timers: list = []
        service.command_request_delegate = self.handle_command

    # -- commands ------------------------------------------------------------------------------

    def handle_command(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        handlers = {
            ApiCommand.GET_CONFIGURATION: self._get_configuration,
            ApiCommand.GET_STATUS: self._get_status,
            ApiCommand.EMERGENCY_STOP: self._emergency_stop,
            ApiCommand.EMERGENCY_RESUME: self._emergency_resume,
            ApiCommand.STOP_ACQUISITION: self._stop_acquisition,
            SLOW_COMMAND: self._start_acquisition,
        }
        handler = handlers.get(request.command)
        if handler is None:
            return ApiCommandRequestResponse(result=ApiCommandRequestResult.UNRECOGNIZED)
        return handler(request)

    def _get_configuration(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        return _success({
            "application_version": "simulator-1.0",
            "device_id": self._service.identifier,
            "configuration_location": "/var/lib/device-simulator/config",
            "data_location": "/var/lib/device-simulator/data",
            "animal_location": "/var/lib/device-simulator/animals",
            "log_location": "/var/log/device-simulator",
            "inference_model": "none",
        })

    def _get_status(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        return _success(self.status())

    def _emergency_stop(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        with self._lock:
            self._emergency_stopped = True
            self._acquiring = False
        self._publish(ApiEventKind.emergencyStop, {"reason": "rpc_service"})
        self.publish_status()
        return _success(None)

    def _emergency_resume(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        with self._lock:
            self._emergency_stopped = False
        self._publish(ApiEventKind.emergencyResume, {"reason": "rpc_service"})
        self.publish_status()
        return _success(None)

    def _stop_acquisition(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        with self._lock:
            self._acquiring = False
        self.publish_status()
        return _success(None)

    def _start_acquisition(self, request: ApiCommandRequest) -> ApiCommandRequestResponse:
        with self._lock:
            if self._emergency_stopped:
                return ApiCommandRequestResponse(result=ApiCommandRequestResult.FAILED,
                                                 error_code=ERROR_EMERGENCY_STOPPED,
                                                 error_message="emergency stop is active; resume first")
            timer = threading.Timer(self._slow_command_seconds, self._finish_acquisition_start,
                                    args=(request.command, request.nonce))
            timer.daemon = True
            self._timers.append(timer)
        timer.start()
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)

    def _finish_acquisition_start(self, command: int, nonce: int) -> None:
        with self._lock:
            stopped = self._emergency_stopped
            self._acquiring = not stopped
        if stopped:
            response = ApiCommandRequestResponse(result=ApiCommandRequestResult.FAILED,
                                                 error_code=ERROR_EMERGENCY_STOPPED,
                                                 error_message="emergency stop during start-up",
                                                 command=command, nonce=nonce)
        else:
            response = ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS,
                                                 data={"acquisition_started_at": time.time()},
                                                 command=command, nonce=nonce)
        self._service.send_command_result(response)
        self.publish_status()

    # -- events --------------------------------------------------------------------------------

    def status(self) -> dict:
        with self._lock:
            return {
                "application_mode": 100 if self._acquiring else 0,
                "emergency_stopped": self._emergency_stopped,
                "acquiring": self._acquiring,
                "trial_id": self._trial_id,
            }

    def publish_status(self) -> None:
        self._publish(ApiEventKind.systemStatus, self.status())

    def run_trial(self) -> None:
        """One simulated trial: the animal enters, a trial runs, the animal leaves."""
        with self._lock:
            if self._emergency_stopped:
                return
            self._trial_id += 1
            trial_id = self._trial_id
        for kind in (SimulatedEventKind.tunnelEnter, SimulatedEventKind.trialStarted,
                     SimulatedEventKind.trialEnded, SimulatedEventKind.tunnelExit):
            self._publish(kind, {"trial_id": trial_id})

    def _publish(self, kind: int, context: Optional[dict]) -> None:
        with self._lock:
            self._index += 1
            index = self._index
        self._service.send_event_dict({"kind": kind, "when": datetime.now(timezone.utc),
                                       "index": index, "context": context})

    def launched(self) -> None:
        self._publish(ApiEventKind.applicationLaunched, {"identifier": self._service.identifier})
        self.publish_status()

    def terminating(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._publish(ApiEventKind.applicationTerminating, None)


def _success(data: Any) -> ApiCommandRequestResponse:
    return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS, data=data)


def build_options(args: argparse.Namespace) -> ApiOptions:
    return ApiOptions(rpc=RpcOptions(
        identifier=args.identifier,
        heartbeat_interval=args.heartbeat_interval,
        subscriber_port=args.pub_port,
        command_port=args.cmd_port,
        zmq=ZmqGatewayOptions(enable=not args.no_zmq, bind_host=args.bind_host, sequence_frame=args.sequence_frame),
        speedysvc=SpeedysvcOptions(enable=bool(args.speedysvc_scope), service_name=args.service_name,
                                   scope=args.speedysvc_scope, tcp=args.speedysvc_tcp),
    ))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.device_simulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identifier", default="device-simulator")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--bind-host", default="127.0.0.1")
    parser.add_argument("--pub-port", type=int, default=5556, help="0 picks a free port")
    parser.add_argument("--cmd-port", type=int, default=5557, help="0 picks a free port")
    parser.add_argument("--no-zmq", action="store_true", help="no ZeroMQ gateway (speedysvc only)")
    parser.add_argument("--sequence-frame", action="store_true", help="add a sequence-number frame to ZeroMQ messages")
    parser.add_argument("--speedysvc-scope", help="also serve through speedysvc under this scope")
    parser.add_argument("--speedysvc-tcp", help="speedysvc TCP bind HOST:PORT (with --speedysvc-scope)")
    parser.add_argument("--service-name", default="device_api")
    parser.add_argument("--slow-command-seconds", type=float, default=2.0,
                        help="how long START_ACQUISITION takes before its result is published")
    parser.add_argument("--trial-interval", type=float, default=3.0, help="seconds between simulated trials (0: none)")
    parser.add_argument("--run-seconds", type=float, help="exit after this long (default: until SIGTERM/SIGINT)")
    return parser


def run_device(device: SimulatedDevice, trial_interval: float, stop: threading.Event,
               run_seconds: Optional[float] = None) -> None:
    """Run trials every `trial_interval` seconds until `stop` is set (or run_seconds pass)."""
    deadline = None if run_seconds is None else time.monotonic() + run_seconds
    next_trial = time.monotonic() + trial_interval
    while not stop.is_set():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        if trial_interval > 0 and now >= next_trial:
            device.run_trial()
            next_trial = now + trial_interval
        wake_times = [now + 1.0, deadline, next_trial if trial_interval > 0 else None]
        stop.wait(max(0.0, min(t for t in wake_times if t is not None) - now))


def main(argv: Optional[list] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = create_api_service(build_options(args))
    device = SimulatedDevice(service, args.slow_command_seconds)
    stop_requested = threading.Event()
    # Handlers only record the signal; the loop acts on it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    service.start()
    speedysvc = service.transport("speedysvc")
    print(json.dumps({
        "ready": True,
        "identifier": service.identifier,
        "subscriber_port": service.subscriber_port,
        "command_port": service.command_port,
        "speedysvc_shm": getattr(speedysvc, "shm_address", None),
        "speedysvc_tcp": getattr(speedysvc, "tcp_address", None),
    }), flush=True)
    device.launched()
    try:
        run_device(device, args.trial_interval, stop_requested, args.run_seconds)
    finally:
        device.terminating()
        service.stop()
    return 0


def options_from_environment(environ: Optional[dict] = None) -> tuple:
    """(ApiOptions, slow_command_seconds, trial_interval) for the supervisor-hosted simulator.

    DEVICE_SIMULATOR_IDENTIFIER, _HEARTBEAT_INTERVAL (5), _ZMQ (1; 0 = no gateway),
    _BIND_HOST (127.0.0.1), _PUB_PORT (5556), _CMD_PORT (5557),
    _SLOW_COMMAND_SECONDS (2), _TRIAL_INTERVAL (3).
    """
    env = os.environ if environ is None else environ

    def get(key: str, default: str) -> str:
        return env.get(f"DEVICE_SIMULATOR_{key}", default)

    args = build_parser().parse_args([
        "--identifier", get("IDENTIFIER", "device-simulator"),
        "--heartbeat-interval", get("HEARTBEAT_INTERVAL", "5"),
        "--bind-host", get("BIND_HOST", "127.0.0.1"),
        "--pub-port", get("PUB_PORT", "5556"),
        "--cmd-port", get("CMD_PORT", "5557"),
        *([] if get("ZMQ", "1") not in ("0", "false", "no") else ["--no-zmq"]),
    ])
    return build_options(args), float(get("SLOW_COMMAND_SECONDS", "2")), float(get("TRIAL_INTERVAL", "3"))


class DeviceSimulatorService(DeviceApiMethods):
    """The simulator as a speedysvc service: the worker runs the device; speedysvc clients
    call the device API methods and subscribe to its events, ZeroMQ peers use the gateway."""

    name = "device_simulator"
    port = 5558

    def on_start(self) -> None:
        options, slow_seconds, trial_interval = options_from_environment()
        self._service = create_api_service(options, extra_transports=[AttachedSpeedysvcTransport(self)])
        self._device = SimulatedDevice(self._service, slow_seconds)
        self._stop = threading.Event()
        self._service.start()
        self._device.launched()
        self._runner = threading.Thread(target=run_device, args=(self._device, trial_interval, self._stop),
                                        name="device-simulator-trials", daemon=True)
        self._runner.start()

    def on_stop(self) -> None:
        self._stop.set()
        self._runner.join()
        self._device.terminating()
        self._service.stop()


if __name__ == "__main__":
    sys.exit(main())
