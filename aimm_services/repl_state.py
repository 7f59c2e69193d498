"""The state AIMM's REPL clients see, built from the engine's events (seed 002, "State").

    {"models": {"<id>": {"instance_id", "model_type", "instance" (base64), "type", "id"}},
     "actions": {"<id>": action snapshot as plain JSON}}

Both spellings of a model are sent: the published `aimm` client reads instance_id and
model_type, seed 002's State section names type and id. Keys are always strings: hat-json's
diff cannot handle integer keys (the original server crashed on its first update with them).

Every change makes new top-level dicts and keeps the unchanged entries as they are, so a
juggler connection sees a new value to diff while nothing else is copied or re-encoded: a
model's base64 text is made once per stored version, never on a progress tick.
Not thread-safe: the asyncio loop of the REPL control owns it.
"""
from __future__ import annotations

import base64
from typing import Any, Callable, Optional

from .json_representation import to_plain_json

Listener = Callable[[dict], None]


class ReplState:
    def __init__(self) -> None:
        self._models: dict[str, dict] = {}
        self._model_revisions: dict[int, int] = {}
        self._model_versions: dict[int, tuple] = {}   # id -> (version, model_type)
        self._actions: dict[str, dict] = {}
        self._action_revisions: dict[int, int] = {}
        self._listeners: list[Listener] = []
        self._boot: Optional[str] = None
        self.data: dict = {"models": {}, "actions": {}}

    # ---- who hears about changes ----

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ---- what the control feeds in ----

    def apply_action(self, snapshot: dict) -> bool:
        """Take an action snapshot (event or read); older revisions are ignored."""
        self._check_boot(snapshot)
        snapshot = {k: v for k, v in snapshot.items() if k != "boot"}
        action_id, revision = snapshot["action_id"], snapshot.get("revision", 0)
        if revision <= self._action_revisions.get(action_id, -1):
            return False
        self._action_revisions[action_id] = revision
        self._actions = {**self._actions, str(action_id): to_plain_json(snapshot)}
        self._publish()
        return True

    def apply_model_event(self, event: dict) -> Optional[dict]:
        """Take a model event; returns the summary whose instance must now be fetched (None
        when the model was removed or the event is stale)."""
        self._check_boot(event)
        instance_id, revision = event["instance_id"], event["revision"]
        if revision <= self._model_revisions.get(instance_id, -1):
            return None
        self._model_revisions[instance_id] = revision
        if event["event"] == "removed":
            self._forget_model(instance_id)
            return None
        return event["model"]

    def replace_state(self, state: dict) -> list[dict]:
        """Take a full engine state ({revision, models, actions}); returns the model
        summaries whose instances must be fetched (those not already held at that version)."""
        self._check_boot(state)
        revision = state["revision"]
        wanted = []
        seen = set()
        for summary in state["models"].values():
            instance_id = summary["instance_id"]
            seen.add(instance_id)
            if self._model_revisions.get(instance_id, -1) > revision:
                continue     # an event newer than this read already brought it
            self._model_revisions[instance_id] = revision
            if self._model_versions.get(instance_id) != (summary["version"],
                                                         summary["model_type"]):
                wanted.append(summary)
        for instance_id in list(self._model_versions):
            if instance_id not in seen and self._model_revisions.get(instance_id, -1) <= revision:
                self._forget_model(instance_id)
        for snapshot in state["actions"].values():
            self.apply_action(snapshot)
        return wanted

    def set_instance(self, summary: dict, instance: bytes) -> None:
        """The serialized instance of a model at the version `summary` names."""
        instance_id = summary["instance_id"]
        known = self._model_versions.get(instance_id)
        if known is not None and known[0] > summary["version"]:
            return
        self._model_versions[instance_id] = (summary["version"], summary["model_type"])
        self._models = {**self._models, str(instance_id): model_json(
            instance_id, summary["model_type"], instance)}
        self._publish()

    def has_instance(self, summary: dict) -> bool:
        return self._model_versions.get(summary["instance_id"]) == (summary["version"],
                                                                    summary["model_type"])

    def model(self, instance_id: int) -> Optional[dict]:
        return self._models.get(str(instance_id))

    def action(self, action_id: int) -> Optional[dict]:
        return self._actions.get(str(action_id))

    # ---- internals ----

    def _check_boot(self, payload: dict) -> None:
        """A restarted engine numbers actions and revisions from the start again: forget
        the old engine's actions and revisions (models stay: they are stored)."""
        boot = payload.get("boot")
        if boot is None or boot == self._boot:
            return
        if self._boot is not None:
            self._actions = {}
            self._action_revisions.clear()
            self._model_revisions.clear()
            self._publish()
        self._boot = boot

    def _forget_model(self, instance_id: int) -> None:
        self._model_versions.pop(instance_id, None)
        if str(instance_id) in self._models:
            self._models = {k: v for k, v in self._models.items() if k != str(instance_id)}
            self._publish()

    def _publish(self) -> None:
        self.data = {"models": self._models, "actions": self._actions}
        for listener in list(self._listeners):
            listener(self.data)


def model_json(instance_id: int, model_type: str, instance: bytes) -> dict:
    """A model as the REPL control shows it (seed 002's Models schema and State spelling)."""
    encoded = base64.b64encode(instance).decode("ascii")
    return {"instance_id": instance_id, "model_type": model_type, "instance": encoded,
            "id": instance_id, "type": model_type}


def empty_state() -> Any:
    """What a connection that is not logged in sees."""
    return {}
