"""Client-side mirror of the engine's state, kept current by the events the engine pushes.

Subscribes to the engine's "action" and "model" topics. Each action snapshot and model
event carries the engine's revision number, so events and full-state reads can arrive in
any order and the newest always wins. Waiting for an action is waiting for its terminal
event; re-reading the action (`fetch`) is only a safety net for a lost event.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Optional

from .errors import ActionNotFinished

log = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "cancelled")
RESYNC_AFTER_S = 5.0   # a waiter re-reads its action this often if no event came
LISTEN_POLL_S = 0.2    # how soon the event thread notices close()


class ActionTracker:
    def __init__(self, engine_client: Any,
                 on_missed: Optional[Callable[[], None]] = None):
        self._cond = threading.Condition()
        self._models: dict[int, dict] = {}
        self._model_revisions: dict[int, int] = {}
        self._actions: dict[int, dict] = {}
        self._on_missed = on_missed
        self._stopping = threading.Event()
        self._subscription = engine_client.subscribe(["action", "model"])
        self._missed = 0
        self._listener = threading.Thread(target=self._listen, daemon=True,
                                          name="aimm-events")
        self._listener.start()

    # ---- reading ----

    @property
    def models(self) -> dict:
        with self._cond:
            return {k: dict(v) for k, v in self._models.items()}

    @property
    def actions(self) -> dict:
        with self._cond:
            return {k: dict(v) for k, v in self._actions.items()}

    def action(self, action_id: int) -> Optional[dict]:
        with self._cond:
            snapshot = self._actions.get(action_id)
            return None if snapshot is None else dict(snapshot)

    def wait(self, action_id: int, timeout: Optional[float],
             fetch: Callable[[], dict]) -> dict:
        """Block until the action is terminal; `fetch` re-reads it from the engine."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_fetch = time.monotonic()
        while True:
            with self._cond:
                snapshot = self._actions.get(action_id)
                if snapshot is not None and snapshot["status"] in TERMINAL:
                    return dict(snapshot)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    status = snapshot["status"] if snapshot else "unknown"
                    raise ActionNotFinished(f"action {action_id} is still {status} after "
                                            f"{timeout:g} s")
                must_fetch = snapshot is None or now - last_fetch >= RESYNC_AFTER_S
                if not must_fetch:
                    limit = RESYNC_AFTER_S if deadline is None else min(RESYNC_AFTER_S,
                                                                        deadline - now)
                    self._cond.wait(max(0.0, limit))
                    continue
            self.apply_action(fetch())
            last_fetch = time.monotonic()

    # ---- updating ----

    def apply_action(self, snapshot: dict) -> None:
        with self._cond:
            current = self._actions.get(snapshot["action_id"])
            if current is None or snapshot["revision"] > current["revision"]:
                self._actions[snapshot["action_id"]] = snapshot
                self._cond.notify_all()

    def apply_model_event(self, event: dict) -> None:
        instance_id, revision = event["instance_id"], event["revision"]
        with self._cond:
            if revision <= self._model_revisions.get(instance_id, 0):
                return
            self._model_revisions[instance_id] = revision
            if event["event"] == "removed":
                self._models.pop(instance_id, None)
            else:
                self._models[instance_id] = event["model"]
            self._cond.notify_all()

    def replace_state(self, state: dict) -> None:
        """Take a full state read from the engine ({revision, models, actions})."""
        revision = state["revision"]
        with self._cond:
            models = {int(k): v for k, v in state["models"].items()}
            # keep models an event already brought in newer than this read
            for instance_id, seen in self._model_revisions.items():
                if seen > revision and instance_id in self._models:
                    models[instance_id] = self._models[instance_id]
                elif seen > revision:
                    models.pop(instance_id, None)
            self._models = models
            for instance_id in models:
                self._model_revisions[instance_id] = max(
                    self._model_revisions.get(instance_id, 0), revision)
        for snapshot in state["actions"].values():
            self.apply_action(snapshot)

    # ---- events ----

    def _listen(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    event = self._subscription.get(timeout=LISTEN_POLL_S)
                except queue.Empty:
                    continue
                except Exception:
                    log.exception("event subscription failed")
                    self._stopping.wait(0.5)
                    continue
                try:
                    if event.topic == "action":
                        self.apply_action(event.payload)
                    elif event.topic == "model":
                        self.apply_model_event(event.payload)
                    if self._subscription.missed != self._missed:
                        self._missed = self._subscription.missed
                        if self._on_missed is not None:
                            self._on_missed()     # events were lost: read everything again
                except Exception:
                    log.exception("could not apply a %s event", event.topic)
        finally:
            # closed by the thread that polls it: speedysvc's Subscription.close() from
            # another thread while get() waits on its semaphore crashes the process
            self._subscription.close()

    def close(self) -> None:
        self._stopping.set()
        if threading.current_thread() is not self._listener:
            self._listener.join(timeout=LISTEN_POLL_S + 5)
