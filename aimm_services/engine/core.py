"""The engine: turns operations into actions and runs them.

Scheduling rules:
- each action runs in a thread of a pool (threads are reused, and so are the transport
  channels each thread owns); at most `max_parallel` plugin calls run at once (the
  plugin pool's size), handed out first come, first served;
- actions on one model form a line in submission order (fit, predict, update, remove), so a
  fit queued behind another fit works on the instance that fit produced, never a stale one;
  actions on different models do not wait for each other;
- DataAccess arguments are fetched in parallel, and while the action waits for its turn;
- cancel: a queued action is cancelled at once; a running one has its plugin worker killed
  (the pool replaces it) and ends as cancelled as soon as the call aborts;
- a per-action timeout cancels the action and ends it as failed with ActionTimeout.

The engine holds no transport code: plugin calls go through a PluginRunner and models
through a ModelStore, so the scheduling is tested without processes.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from .. import wire_values
from ..backends.base import ModelStore, StoredModel
from ..errors import ActionTimeout, UnknownModel, UnknownModelType
from .actions import Action, ActionStatus, ActionTable
from .runner import PluginCall, PluginRunner

log = logging.getLogger(__name__)

Publisher = Callable[[str, dict], None]


class _Stop(Exception):
    """Raised inside an action thread when the action was cancelled while waiting."""


class Engine:
    def __init__(self, runner: PluginRunner, store: ModelStore, *, max_parallel: int = 2,
                 action_history: int = 1000, default_timeout: Optional[float] = None,
                 publish: Optional[Publisher] = None, clock: Callable[[], float] = time.time):
        self._runner = runner
        self._store = store
        self._publish = publish or (lambda topic, payload: None)
        self._clock = clock
        self._default_timeout = default_timeout
        self._cond = threading.Condition()
        self._revision = 0
        self._actions = ActionTable(action_history, clock)
        self._models: dict[int, StoredModel] = {m.instance_id: m for m in store.all()}
        self._lines: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._free_slots = max(1, int(max_parallel))
        self._slot_queue: collections.deque = collections.deque()
        self._call_ids = itertools.count(1)
        self._registered: Optional[dict] = None
        # FIFO hand-out keeps this deadlock-free: an action only ever waits for actions
        # submitted before it, which got their threads first. The limit is generous
        # because actions waiting for their model's turn hold a thread.
        self._action_threads = ThreadPoolExecutor(max_workers=256,
                                                  thread_name_prefix="aimm-action")
        self._fetch_threads = ThreadPoolExecutor(max_workers=64,
                                                 thread_name_prefix="aimm-data-access")

    # ---- operations (each returns the new action's snapshot at once) ----

    def create_instance(self, model_type: str, args: list, kwargs: dict,
                        timeout: Optional[float] = None) -> dict:
        self._require_plugins(model_type, "instantiate", "serialize")
        return self._submit("create_instance", None, model_type, timeout,
                            lambda a: self._do_create(a, model_type, args, kwargs))

    def add_instance(self, model_type: str, instance: bytes,
                     timeout: Optional[float] = None) -> dict:
        self._require_plugins(model_type, "deserialize")
        return self._submit("add_instance", None, model_type, timeout,
                            lambda a: self._do_add(a, model_type, instance))

    def update_instance(self, instance_id: int, model_type: str, instance: bytes,
                        timeout: Optional[float] = None) -> dict:
        self._require_model(instance_id)
        self._require_plugins(model_type, "deserialize")
        return self._submit("update_instance", instance_id, model_type, timeout,
                            lambda a: self._do_update(a, model_type, instance))

    def fit(self, instance_id: int, args: list, kwargs: dict,
            timeout: Optional[float] = None) -> dict:
        model = self._require_model(instance_id)
        self._require_plugins(model.model_type, "fit", "serialize", "deserialize")
        return self._submit("fit", instance_id, model.model_type, timeout,
                            lambda a: self._do_fit_or_predict(a, "fit", args, kwargs))

    def predict(self, instance_id: int, args: list, kwargs: dict,
                timeout: Optional[float] = None) -> dict:
        model = self._require_model(instance_id)
        self._require_plugins(model.model_type, "predict", "deserialize")
        return self._submit("predict", instance_id, model.model_type, timeout,
                            lambda a: self._do_fit_or_predict(a, "predict", args, kwargs))

    def remove_instance(self, instance_id: int, timeout: Optional[float] = None) -> dict:
        model = self._require_model(instance_id)
        return self._submit("remove_instance", instance_id, model.model_type, timeout,
                            self._do_remove)

    def close(self) -> None:
        """Stop taking work (running actions are abandoned with the process)."""
        self._action_threads.shutdown(wait=False, cancel_futures=True)
        self._fetch_threads.shutdown(wait=False, cancel_futures=True)

    # ---- queries ----

    def models(self) -> list[dict]:
        with self._cond:
            return [m.summary() for _, m in sorted(self._models.items())]

    def model(self, instance_id: int) -> dict:
        """One model including its serialized instance."""
        return self._require_model(instance_id).as_dict()

    def actions(self) -> list[dict]:
        with self._cond:
            return [a.snapshot() for a in self._actions.all()]

    def action(self, action_id: int) -> dict:
        with self._cond:
            return self._actions.get(action_id).snapshot()

    def outcome(self, action_id: int) -> dict:
        """The action and, if it is done, its (wire-encoded) result."""
        with self._cond:
            action = self._actions.get(action_id)
            return {"action": action.snapshot(),
                    "result": action.result if action.status is ActionStatus.DONE else None}

    def state(self) -> dict:
        with self._cond:
            return {"revision": self._revision,
                    "models": {m.instance_id: m.summary() for m in self._models.values()},
                    "actions": {a.action_id: a.snapshot() for a in self._actions.all()}}

    def wait(self, action_id: int, timeout: Optional[float] = None) -> dict:
        """Block until the action ends (used in-process and by tests)."""
        with self._cond:
            action = self._actions.get(action_id)
        action.finished.wait(timeout)
        return self.action(action_id)

    # ---- cancel ----

    def cancel(self, action_id: int, reason: str = "cancelled") -> dict:
        """Cancel at once if queued; otherwise kill its plugin calls (in the background, so
        the caller is not held up) and let the action end when they abort."""
        with self._cond:
            action = self._actions.get(action_id)
            if action.is_terminal or action.cancel_requested.is_set():
                return action.snapshot()
            action.cancel_reason = reason
            action.cancel_requested.set()
            self._bump(action)
            to_kill = list(action.calls_in_flight)
            if action.status is ActionStatus.QUEUED and not to_kill:
                self._finish_locked(action, *self._cancel_outcome(action))
            self._cond.notify_all()
            snapshot = action.snapshot()
        self._emit_action(snapshot)
        if to_kill:
            threading.Thread(target=self._kill_calls, args=(to_kill,), daemon=True,
                             name=f"aimm-cancel-{action_id}").start()
        return snapshot

    def _kill_calls(self, call_ids: list) -> None:
        for call_id in call_ids:
            try:
                self._runner.kill(call_id)
            except Exception:
                log.exception("could not kill plugin call %s", call_id)

    # ---- submission and the action thread ----

    def _submit(self, operation: str, instance_id: Optional[int], model_type: Optional[str],
                timeout: Optional[float], work: Callable[[Action], Any]) -> dict:
        timeout = timeout if timeout is not None else self._default_timeout
        with self._cond:
            if instance_id is not None and instance_id not in self._models:
                raise UnknownModel(f"no model with instance id {instance_id}")
            self._revision += 1
            action = self._actions.create(operation, instance_id, model_type, timeout,
                                          self._revision)
            if instance_id is not None:
                self._lines[instance_id].append(action.action_id)
            snapshot = action.snapshot()
        self._emit_action(snapshot)
        if timeout:
            timer = threading.Timer(timeout, self.cancel, (action.action_id, "timeout"))
            timer.daemon = True
            with self._cond:
                action.timer = timer
            timer.start()
        self._action_threads.submit(self._run_action, action, work)
        return snapshot

    def _run_action(self, action: Action, work: Callable[[Action], Any]) -> None:
        try:
            result = work(action)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the action's error
            with self._cond:
                if action.is_terminal:
                    return   # cancelled while queued: already finished
                if action.cancel_requested.is_set():
                    self._finish_locked(action, *self._cancel_outcome(action))
                else:
                    self._finish_locked(action, ActionStatus.FAILED, error=_error_dict(exc))
                snapshot = action.snapshot()
            self._emit_action(snapshot)
            if not isinstance(exc, Exception):
                raise
            return
        with self._cond:
            if action.is_terminal:
                return
            if result is _NOT_APPLIED:
                self._finish_locked(action, *self._cancel_outcome(action))
            else:
                self._finish_locked(action, ActionStatus.DONE, result=result)
            snapshot = action.snapshot()
        self._emit_action(snapshot)

    def _cancel_outcome(self, action: Action) -> tuple:
        if action.cancel_reason == "timeout":
            return ActionStatus.FAILED, {
                "type": f"{ActionTimeout.__module__}.{ActionTimeout.__qualname__}",
                "message": f"action {action.action_id} ({action.operation}) did not finish "
                           f"within its timeout of {action.timeout} s and was stopped",
                "traceback": ""}
        return ActionStatus.CANCELLED, None

    def _finish_locked(self, action: Action, status: ActionStatus, error: Optional[dict] = None,
                       result: Any = None) -> None:
        action.status = status
        action.error = error
        action.result = result
        action.ended_at = self._clock()
        action.phase = status.value
        if action.timer is not None:
            action.timer.cancel()
        if action.instance_id is not None:
            line = self._lines.get(action.instance_id)
            if line is not None and action.action_id in line:
                line.remove(action.action_id)
                if not line:
                    del self._lines[action.instance_id]
        self._actions.finished(action)
        self._bump(action)
        action.finished.set()
        self._cond.notify_all()

    # ---- the work of each operation ----

    def _do_create(self, action: Action, model_type: str, args: list, kwargs: dict) -> dict:
        args, kwargs = self._resolve_data_access(action, args, kwargs)
        reply = self._call(action, PluginCall("instantiate", model_type, None, tuple(args),
                                              kwargs))
        stored = self._store.create(model_type, reply["instance"])
        self._model_changed("created", stored, action)
        return stored.summary()

    def _do_add(self, action: Action, model_type: str, instance: bytes) -> dict:
        self._call(action, PluginCall("check", model_type, instance))
        stored = self._store.create(model_type, instance)
        self._model_changed("created", stored, action)
        return stored.summary()

    def _do_update(self, action: Action, model_type: str, instance: bytes) -> dict:
        self._wait_turn(action)
        self._call(action, PluginCall("check", model_type, instance))
        stored = self._store.update(action.instance_id, instance, model_type)
        self._model_changed("updated", stored, action)
        return stored.summary()

    def _do_remove(self, action: Action) -> dict:
        self._wait_turn(action)
        self._set_running(action, "removing")
        self._store.remove(action.instance_id)
        with self._cond:
            model = self._models.pop(action.instance_id, None)
            self._revision += 1
            revision = self._revision
        self._publish_safe("model", {"event": "removed", "instance_id": action.instance_id,
                                     "model": model.summary() if model else None,
                                     "revision": revision, "action_id": action.action_id})
        return {"instance_id": action.instance_id, "removed": True}

    def _do_fit_or_predict(self, action: Action, kind: str, args: list, kwargs: dict) -> Any:
        args, kwargs = self._resolve_data_access(action, args, kwargs)
        self._wait_turn(action)
        model = self._current_model(action.instance_id)
        reply = self._call(action, PluginCall(kind, model.model_type, model.instance,
                                              tuple(args), kwargs))
        new_instance = reply.get("instance")
        if new_instance is not None and new_instance != model.instance:
            if action.cancel_requested.is_set():
                return _NOT_APPLIED
            stored = self._store.update(model.instance_id, new_instance)
            self._model_changed("updated", stored, action)
            model = stored
        return model.summary() if kind == "fit" else reply.get("result")

    # ---- helpers ----

    def _call(self, action: Action, call: PluginCall, slot_label: str = "executing",
              progress_key: Any = None) -> dict:
        """One plugin call for `action`: wait for a free plugin slot, run, release."""
        call_id = f"{action.action_id}.{next(self._call_ids)}"
        ticket = object()
        with self._cond:
            self._slot_queue.append(ticket)
            try:
                while True:
                    if action.cancel_requested.is_set():
                        raise _Stop()
                    if self._slot_queue[0] is ticket and self._free_slots > 0:
                        break
                    self._cond.wait()
            except BaseException:
                self._slot_queue.remove(ticket)
                self._cond.notify_all()   # the next ticket may now be first in line
                raise
            self._slot_queue.popleft()
            self._free_slots -= 1
            action.calls_in_flight.add(call_id)
            if progress_key is None:
                action.phase = slot_label
            if action.status is ActionStatus.QUEUED:
                action.status = ActionStatus.RUNNING
                action.started_at = self._clock()
            self._bump(action)
            snapshot = action.snapshot()
        self._emit_action(snapshot)
        try:
            return self._runner.run(call_id, call,
                                    lambda value: self._on_progress(action, progress_key, value))
        finally:
            with self._cond:
                action.calls_in_flight.discard(call_id)
                self._free_slots += 1
                self._cond.notify_all()

    def _resolve_data_access(self, action: Action, args: list, kwargs: dict) -> tuple:
        """Replace DataAccess arguments -- at any depth of lists, tuples and plain dicts of
        the positional and keyword arguments -- by their results, fetching them all in
        parallel."""
        root = {"args": list(args), "kwargs": dict(kwargs)}
        slots: list = []
        _find_data_access(root["args"], ("args",), slots)
        _find_data_access(root["kwargs"], ("kwargs",), slots)
        if not slots:
            return root["args"], root["kwargs"]
        with self._cond:
            action.phase = "accessing_data"
        results: dict = {}
        errors: list = []

        def fetch(path: tuple, marker: dict) -> None:
            try:
                # progress keys: "0", "name" for top-level arguments, "0/x/1" deeper
                key = "/".join(str(part) for part in path[1:])
                results[path] = self._fetch(action, key, marker)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the action thread
                errors.append(exc)

        futures = [self._fetch_threads.submit(fetch, path, marker) for path, marker in slots]
        for future in futures:
            future.result()
        if errors:
            raise errors[0]
        for path, value in results.items():
            parent = root
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = value
        return root["args"], root["kwargs"]

    def _fetch(self, action: Action, key: Any, marker: dict) -> Any:
        args, kwargs = self._resolve_data_access(action, list(marker["args"]),
                                                 dict(marker["kwargs"]))
        reply = self._call(action, PluginCall("data_access", marker["name"], None, tuple(args),
                                              kwargs), progress_key=str(key))
        return reply["result"]

    def _wait_turn(self, action: Action) -> None:
        with self._cond:
            line = self._lines.get(action.instance_id)
            while not (line and line[0] == action.action_id):
                if action.cancel_requested.is_set():
                    raise _Stop()
                if line is None or action.action_id not in line:
                    raise UnknownModel(f"model {action.instance_id} is gone")
                self._cond.wait()
                line = self._lines.get(action.instance_id)

    def _current_model(self, instance_id: int) -> StoredModel:
        with self._cond:
            model = self._models.get(instance_id)
        if model is None:
            raise UnknownModel(f"model {instance_id} was removed before this action's turn")
        return model

    def _set_running(self, action: Action, phase: str) -> None:
        with self._cond:
            if action.cancel_requested.is_set():
                raise _Stop()
            action.status = ActionStatus.RUNNING
            action.started_at = action.started_at or self._clock()
            action.phase = phase
            self._bump(action)
            snapshot = action.snapshot()
        self._emit_action(snapshot)

    def _on_progress(self, action: Action, key: Optional[str], value: Any) -> None:
        with self._cond:
            if action.is_terminal:
                return
            if key is None:
                action.progress = value
            else:
                action.data_access_progress[key] = value
            self._bump(action)
            snapshot = action.snapshot()
        self._emit_action(snapshot)

    def _model_changed(self, event: str, stored: StoredModel, action: Action) -> None:
        with self._cond:
            self._models[stored.instance_id] = stored
            self._revision += 1
            revision = self._revision
            if action.instance_id is None:
                action.instance_id = stored.instance_id
        self._publish_safe("model", {"event": event, "instance_id": stored.instance_id,
                                     "model": stored.summary(), "revision": revision,
                                     "action_id": action.action_id})

    def _require_model(self, instance_id: Any) -> StoredModel:
        with self._cond:
            model = self._models.get(instance_id) if isinstance(instance_id, int) else None
        if model is None:
            raise UnknownModel(f"no model with instance id {instance_id!r}; existing ids: "
                               f"{sorted(self._models)[:20] or 'none'}")
        return model

    def _require_plugins(self, model_type: str, *kinds: str) -> None:
        registered = self.registered_plugins()
        missing = [kind for kind in kinds if model_type not in registered.get(kind, ())]
        if missing:   # the plugin service may have been reloaded with new plugins
            registered = self.registered_plugins(refresh=True)
            missing = [kind for kind in kinds if model_type not in registered.get(kind, ())]
        if missing:
            known = sorted(set(registered.get("instantiate", ())) |
                           set(registered.get("fit", ())) | set(registered.get("predict", ())))
            raise UnknownModelType(
                f"model type {model_type!r} has no {'/'.join(missing)} plugin; known model "
                f"types: {known or 'none'} (is its module listed under plugins.names?)")

    def registered_plugins(self, refresh: bool = False) -> dict:
        if self._registered is None or refresh:
            self._registered = self._runner.registered()
        return self._registered

    def _bump(self, action: Action) -> None:
        self._revision += 1
        action.revision = self._revision

    def _emit_action(self, snapshot: dict) -> None:
        self._publish_safe("action", snapshot)

    def _publish_safe(self, topic: str, payload: dict) -> None:
        try:
            self._publish(topic, payload)
        except Exception:
            # clients also fetch state on demand; a lost event must not break an action
            log.exception("could not publish %s event", topic)


_NOT_APPLIED = object()


def _find_data_access(value: Any, path: tuple, found: list) -> None:
    """Collect (path, marker) of every wire-encoded DataAccess inside `value`."""
    if wire_values.is_data_access(value):
        found.append((path, value))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _find_data_access(item, path + (i,), found)
    elif isinstance(value, dict):
        tag = value.get(wire_values.TAG)
        if tag is None:
            for key, item in value.items():
                _find_data_access(item, path + (key,), found)
        elif tag == "tuple":
            _find_data_access(value["items"], path + ("items",), found)


def _error_dict(exc: BaseException) -> dict:
    cls = type(exc)
    remote = getattr(exc, "remote_traceback", "") or ""
    local = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    type_name = getattr(exc, "type_name", None) or f"{cls.__module__}.{cls.__qualname__}"
    message = getattr(exc, "message", None) if hasattr(exc, "type_name") else None
    return {"type": type_name, "message": message or str(exc),
            "traceback": remote or local}
