"""JSONControlService: AIMM's REPL control actions (seed 002) for clients that speak JSON.

Every method is a speedysvc json_method, so any language with a speedysvc TCP client can
call it. Arguments use seed 002's object_arg forms (data_access, numpy_array,
pandas_dataframe, pandas_series); results use its JSON representations:

    login(username, password)                      -> {"token": ...}
    logout(token)
    state(token)                                   -> {"models": {id: {type, id, instance,
                                                        instance_id, model_type}}, "actions": {...}}
    create_instance(token, model_type, args, kwargs)           -> model
    add_instance(token, model_type, instance)                  -> model (instance: base64)
    update_instance(token, model_type, instance_id, instance)  -> model
    fit(token, instance_id, args, kwargs)                      -> model
    predict(token, instance_id, args, kwargs)                  -> prediction
    remove_instance(token, instance_id)
    action(token, action_id), cancel(token, action_id)         -> action
    result(token, action_id, timeout=None)                     -> what the action returned

model = {"instance_id", "model_type", "instance": base64 of the serialized instance}.
Operations wait for their action unless called with wait=false, which returns
{"action_id": ...} at once (fetch the outcome later with result()). It forwards to the engine
service, so logins and rate limits are the engine's; its workers only wait, so size its pool
for the number of JSON calls that may wait at the same time.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

from speedysvc import ServerMethodsBase, connect, json_method

from . import json_representation, wire_values
from .action_tracker import ActionTracker
from .client import raise_for_outcome
from .errors import WireFormatError
from .service_config import running_scope


class JSONControlService(ServerMethodsBase):
    name = "aimm_json"
    port = 5313
    engine_service = "aimm_engine"

    def __init__(self, logger_client: Any = None):
        super().__init__(logger_client)
        self._engine: Any = None
        self._tracker: Optional[ActionTracker] = None

    def on_start(self) -> None:
        self._engine = connect(self.engine_service, f"shm://{running_scope(self)}",
                               timeout=120.0, connect_timeout=30.0)
        self._tracker = ActionTracker(self._engine)

    def on_stop(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
        if self._engine is not None:
            self._engine.close()

    # ---- session ----

    @json_method
    def login(self, username: str, password: str) -> dict:
        return {"token": self._engine.login(username, password)}

    @json_method
    def logout(self, token: str) -> None:
        self._engine.logout(token)

    @json_method
    def state(self, token: str) -> dict:
        """Seed 002's state: models with base64 instances, and the actions."""
        state = self._engine.state(token)
        models = {}
        for key in state["models"]:
            model = self._model_json(token, int(key))
            models[key] = {"type": model["model_type"], "id": model["instance_id"], **model}
        return {"models": models,
                "actions": json_representation.to_plain_json(state["actions"])}

    # ---- operations ----

    @json_method
    def create_instance(self, token: str, model_type: str, args: Optional[list] = None,
                        kwargs: Optional[dict] = None, wait: bool = True,
                        timeout: Optional[float] = None) -> dict:
        encoded_args, encoded_kwargs = _args(args, kwargs)
        snapshot = self._engine.create_instance(token, model_type, encoded_args,
                                                encoded_kwargs, timeout)
        return self._finish(token, snapshot, wait)

    @json_method
    def add_instance(self, token: str, model_type: str, instance: str, wait: bool = True,
                     timeout: Optional[float] = None) -> dict:
        snapshot = self._engine.add_instance(token, model_type, _b64(instance), timeout)
        return self._finish(token, snapshot, wait)

    @json_method
    def update_instance(self, token: str, model_type: str, instance_id: int, instance: str,
                        wait: bool = True, timeout: Optional[float] = None) -> dict:
        snapshot = self._engine.update_instance(token, instance_id, model_type,
                                                _b64(instance), timeout)
        return self._finish(token, snapshot, wait)

    @json_method
    def fit(self, token: str, instance_id: int, args: Optional[list] = None,
            kwargs: Optional[dict] = None, wait: bool = True,
            timeout: Optional[float] = None) -> dict:
        encoded_args, encoded_kwargs = _args(args, kwargs)
        snapshot = self._engine.fit(token, instance_id, encoded_args, encoded_kwargs, timeout)
        return self._finish(token, snapshot, wait)

    @json_method
    def predict(self, token: str, instance_id: int, args: Optional[list] = None,
                kwargs: Optional[dict] = None, wait: bool = True,
                timeout: Optional[float] = None) -> Any:
        encoded_args, encoded_kwargs = _args(args, kwargs)
        snapshot = self._engine.predict(token, instance_id, encoded_args, encoded_kwargs,
                                        timeout)
        return self._finish(token, snapshot, wait)

    @json_method
    def remove_instance(self, token: str, instance_id: int, wait: bool = True) -> Any:
        return self._finish(token, self._engine.remove_instance(token, instance_id, None), wait)

    # ---- actions ----

    @json_method
    def action(self, token: str, action_id: int) -> dict:
        return json_representation.to_plain_json(self._engine.action(token, action_id))

    @json_method
    def cancel(self, token: str, action_id: int) -> dict:
        return json_representation.to_plain_json(self._engine.cancel(token, action_id))

    @json_method
    def result(self, token: str, action_id: int, timeout: Optional[float] = None) -> Any:
        """Wait for an action started with wait=false and return its result."""
        snapshot = self._engine.action(token, action_id)
        return self._finish(token, snapshot, True, timeout)

    # ---- helpers ----

    def _finish(self, token: str, snapshot: dict, wait: bool,
                timeout: Optional[float] = None) -> Any:
        if not wait:
            return {"action_id": snapshot["action_id"]}
        action_id = snapshot["action_id"]
        self._tracker.apply_action(snapshot)
        final = self._tracker.wait(action_id, timeout,
                                   lambda: self._engine.action(token, action_id))
        raise_for_outcome(final)
        result = self._engine.outcome(token, action_id)["result"]
        operation = final["operation"]
        if operation == "predict":
            return json_representation.result_to_json(wire_values.decode(result))
        if operation == "remove_instance":
            return None
        return self._model_json(token, result["instance_id"])

    def _model_json(self, token: str, instance_id: int) -> dict:
        model = self._engine.model(token, instance_id)
        return {"instance_id": model["instance_id"], "model_type": model["model_type"],
                "instance": base64.b64encode(model["instance"]).decode("ascii")}


def _args(args: Optional[list], kwargs: Optional[dict]) -> tuple[list, dict]:
    """Seed 002 JSON arguments -> Python values -> the engine's wire encoding."""
    values, named = json_representation.args_from_json(list(args or []), dict(kwargs or {}))
    return [wire_values.encode(v) for v in values], \
        {k: wire_values.encode(v) for k, v in named.items()}


def _b64(instance: str) -> bytes:
    try:
        return base64.b64decode(instance, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise WireFormatError(f"instance must be base64 text of the serialized instance: "
                              f"{exc}") from exc
