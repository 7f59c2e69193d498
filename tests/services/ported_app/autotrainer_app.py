"""A small device application written against auto-trainer-api 0.12, the way its users
write them: one import of `autotrainer.api`, then only names from it.

test_device_api_ported_app runs this file as it is (on the published package) and with
that one import changed to `services.device_api`, and drives both with the same remote
peer. Usage: python autotrainer_app.py PUB_PORT CMD_PORT; stdin lines are event kinds to
publish, `quit` stops.
"""
import sys
import threading
from dataclasses import replace

from autotrainer.api import (ApiAlarmKind, ApiApplicationMode, ApiCommand, ApiCommandRequestResponse,
                             ApiCommandRequestResult, ApiEmergencyStopReason, ApiEvent, ApiEventKind, ApiOptions,
                             ApiSystemConfiguration, build_event, create_api_service, create_default_api_options,
                             resolve_enum)


def main() -> int:
    defaults = create_default_api_options()
    options = ApiOptions(rpc=replace(defaults.rpc, identifier="ported-app", heartbeat_interval=0.2,
                                     subscriber_port=int(sys.argv[1]), command_port=int(sys.argv[2])),
                         telemetry=defaults.telemetry)
    service = create_api_service(options)
    mode = {"current": ApiApplicationMode.IDLE}

    def finish_later(request):
        # The slow part of an asynchronous command, then its result with the request's command and nonce.
        service.send_command_result(ApiCommandRequestResponse(
            result=ApiCommandRequestResult.SUCCESS, data={"custom_command": request.custom_command,
                                                          "frames_written": 3},
            command=request.command, nonce=request.nonce))

    def handle(request):
        if request.command == ApiCommand.GET_CONFIGURATION:
            return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS, data=ApiSystemConfiguration(
                application_version="1.0", device_id="Rig_7", configuration_location="/etc/rig",
                data_location="/data", animal_location="/data/animals", log_location="/var/log/rig",
                inference_model="Model_A"))
        if request.command == ApiCommand.SET_APPLICATION_MODE:
            new_mode = resolve_enum(ApiApplicationMode, str(request.data["mode"]))
            if new_mode != mode["current"]:
                mode["current"] = new_mode
                service.send_event_dict(build_event(ApiEventKind.applicationModeChanged, {"mode": new_mode}))
            return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS, data={"mode": new_mode})
        if request.command == ApiCommand.EMERGENCY_STOP:
            service.send_event(ApiEvent(**build_event(ApiEventKind.emergencyStop, {
                "reason": "remote request", "reason_code": ApiEmergencyStopReason.rpc_service,
                "active_alarms": [ApiAlarmKind.externalDoors]})))
            return ApiCommandRequestResponse(result=ApiCommandRequestResult.SUCCESS)
        if request.command == ApiCommand.USER_DEFINED:
            threading.Thread(target=finish_later, args=(request,)).start()
            return ApiCommandRequestResponse(result=ApiCommandRequestResult.PENDING_WITH_NOTIFICATION)
        if request.command == ApiCommand.SET_AUTO_CLAMP_ENABLED:
            return ApiCommandRequestResponse(result=ApiCommandRequestResult.UNAVAILABLE, error_code=12,
                                             error_message="not while a session runs")
        return ApiCommandRequestResponse(result=ApiCommandRequestResult.UNRECOGNIZED)

    service.command_request_delegate = handle
    service.start()
    print("ready", flush=True)
    for line in sys.stdin:
        text = line.strip()
        if text == "quit":
            break
        service.send_event_dict(build_event(resolve_enum(ApiEventKind, text), {"typed_text": text}))
    service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
