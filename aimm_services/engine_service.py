"""EngineService: the model manager's API for clients (login, operations, actions, state).

It runs as ONE worker process (max_proc_num=1). Actions are threads of that process and
their state lives in its memory, like AIMM's engine; one process keeps "cancel this action"
and the per-model ordering exact without a database round trip per progress update. That
is cheap because every engine method only records an action and returns: the slow work
happens in the plugin service's pool. Models are durable in the backend; actions are not
(after an engine restart, old action ids are unknown).

Every method but login takes the session token that login returned. Plugin arguments and
results are wire-encoded (see wire_values). Events: topic "action" carries an action's
snapshot whenever it changes (status, progress), topic "model" carries model changes.

With a `hat` section (aimm_services.hat.runtime) this process holds the server's Hat
connection: the engine exists only while the server is the active one of its Hat group,
with the Hat-aware backend and controls running here too; meanwhile every method raises
HatNotActive saying what the server waits for, and `hat()` tells the connection state.
"""
from __future__ import annotations

import logging
import secrets
from typing import Any, Optional

from speedysvc import ServerMethodsBase, msgpack_method

from .auth import Authenticator
from .engine.core import Engine
from .engine.service_runner import ServicePluginRunner
from .engine.service_store import ServiceModelStore
from .config import AimmConfig
from .errors import HatNotActive
from .service_config import load_service_config, running_scope

log = logging.getLogger(__name__)


class EngineService(ServerMethodsBase):
    name = "aimm_engine"
    port = 5310
    aimm_config: Optional[str] = None
    plugin_service = "aimm_plugins"
    backend_service = "aimm_backend"

    def __init__(self, logger_client: Any = None):
        super().__init__(logger_client)
        self.config = load_service_config(self)
        # a new value at every start: event and state readers see that the engine restarted
        # (action ids and revisions start again) and drop what they knew of the old one
        self.boot = secrets.token_hex(8)
        self.auth = Authenticator(self.config.users,
                                  limiter_path=login_records_path(self.config))
        self._engine: Optional[Engine] = None
        self._runner: Optional[ServicePluginRunner] = None
        self._store: Optional[ServiceModelStore] = None
        self._hat: Any = None            # HatRuntime with a `hat` section
        self._note: Any = None

    @property
    def engine(self) -> Engine:
        """The engine; with Hat, only while this server is the active one."""
        engine = self._engine
        if engine is None:
            status = self._hat.status["text"] if self._hat is not None else "starting"
            raise HatNotActive(f"AIMM server {self.config.name!r} does not serve now: {status}")
        return engine

    def on_start(self) -> None:
        self._address = f"shm://{running_scope(self)}"
        self._runner = ServicePluginRunner(self.plugin_service, self._address)
        if self.config.hat is None:
            self._make_engine(None)
            return
        from .hat.runtime import HatRuntime
        from .hat.status_note import SupervisorNote
        self._note = SupervisorNote(running_scope(self))
        self._hat = HatRuntime(self.config, self._make_engine, self._drop_engine,
                               lambda status: self._note.show(f"hat: {status['text']}"))
        self._note.show(f"hat: {self._hat.status['text']}")
        self._hat.start()

    def _make_engine(self, store: Any) -> Engine:
        """The engine over `store` (None: the backend service). Hat calls it on activation."""
        if store is None:
            store = self._store = ServiceModelStore(self.backend_service, self._address)
        # a new engine numbers actions from 1 again: readers must see a new boot
        self.boot = secrets.token_hex(8)
        engine = Engine(self._runner, store,
                        max_parallel=self.config.engine.max_children,
                        action_history=self.config.engine.action_history,
                        default_timeout=self.config.engine.default_action_timeout,
                        publish=self._publish_event)
        self._engine = engine
        log.info("AIMM engine %r started: %d models, %d plugin calls at once",
                 self.config.name, len(engine.models()), self.config.engine.max_children)
        return engine

    def _drop_engine(self) -> None:
        """No longer the active server: stop serving (actions in flight are abandoned; the
        models are stored)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
            log.info("AIMM engine %r stopped serving", self.config.name)
        if self._store is not None:
            self._store.close()
            self._store = None

    def on_stop(self) -> None:
        self.auth.close()
        if self._hat is not None:
            self._hat.stop()
            self._note.close(None)
        self._drop_engine()
        if self._runner is not None:
            self._runner.close()

    def _publish_event(self, topic: str, payload: dict) -> None:
        if self._hat is not None:
            self._hat.on_engine_event(topic, payload)
        payload = {**payload, "boot": self.boot}
        try:
            self.publish(topic, payload)
        except Exception:
            if topic != "action":
                raise
            # events are bounded in size; a huge progress value is left for action() to fetch
            self.publish(topic, {**payload, "progress": {"too_large_for_event": True},
                                 "data_access_progress": {}})

    # ---- session ----

    @msgpack_method
    def hat(self) -> dict:
        """{state, connected, text} of the Hat connection; state "off" without `hat`."""
        if self._hat is None:
            return {"state": "off", "connected": False, "text": "no hat section"}
        return self._hat.status

    @msgpack_method
    def login(self, username: str, password: str) -> str:
        """A session token for the other methods."""
        _ = self.engine   # a standby server takes no logins: its clients should go elsewhere
        return self.auth.login(username, password)

    @msgpack_method
    def login_digest(self, username: str, digest: str, source: str) -> str:
        """A session token for a login with the SHA-256 hex of the password (AIMM's REPL
        client sends that); `source` is the client's address, for the failed-login limits."""
        _ = self.engine
        return self.auth.login_digest(username, digest, f"remote:{source}")

    @msgpack_method
    def logout(self, token: str) -> None:
        self.auth.logout(token)

    @msgpack_method
    def whoami(self, token: str) -> str:
        return self.auth.require(token)

    # ---- operations: each returns the new action's snapshot ----

    @msgpack_method
    def create_instance(self, token: str, model_type: str, args: list, kwargs: dict,
                        timeout: Optional[float] = None) -> dict:
        self.auth.require(token)
        return self.engine.create_instance(model_type, args, kwargs, timeout)

    @msgpack_method
    def add_instance(self, token: str, model_type: str, instance: bytes,
                     timeout: Optional[float] = None) -> dict:
        self.auth.require(token)
        return self.engine.add_instance(model_type, instance, timeout)

    @msgpack_method
    def update_instance(self, token: str, instance_id: int, model_type: str, instance: bytes,
                        timeout: Optional[float] = None) -> dict:
        self.auth.require(token)
        return self.engine.update_instance(instance_id, model_type, instance, timeout)

    @msgpack_method
    def fit(self, token: str, instance_id: int, args: list, kwargs: dict,
            timeout: Optional[float] = None) -> dict:
        self.auth.require(token)
        return self.engine.fit(instance_id, args, kwargs, timeout)

    @msgpack_method
    def predict(self, token: str, instance_id: int, args: list, kwargs: dict,
                timeout: Optional[float] = None) -> dict:
        self.auth.require(token)
        return self.engine.predict(instance_id, args, kwargs, timeout)

    @msgpack_method
    def remove_instance(self, token: str, instance_id: int,
                        timeout: Optional[float] = None) -> dict:
        self.auth.require(token)
        return self.engine.remove_instance(instance_id, timeout)

    # ---- actions ----

    @msgpack_method
    def cancel(self, token: str, action_id: int) -> dict:
        self.auth.require(token)
        return self.engine.cancel(action_id)

    @msgpack_method
    def action(self, token: str, action_id: int) -> dict:
        self.auth.require(token)
        return self.engine.action(action_id)

    @msgpack_method
    def outcome(self, token: str, action_id: int) -> dict:
        """{action, result}: result is the wire-encoded result once the action is done."""
        self.auth.require(token)
        return self.engine.outcome(action_id)

    @msgpack_method
    def actions(self, token: str) -> list:
        self.auth.require(token)
        return self.engine.actions()

    # ---- models and state ----

    @msgpack_method
    def models(self, token: str) -> list:
        self.auth.require(token)
        return self.engine.models()

    @msgpack_method
    def model(self, token: str, instance_id: int) -> dict:
        """One model with its serialized instance bytes."""
        self.auth.require(token)
        return self.engine.model(instance_id)

    @msgpack_method
    def state(self, token: str) -> dict:
        """{revision, models, actions}; events with a higher revision update it."""
        self.auth.require(token)
        state = self.engine.state()
        # msgpack maps with int keys are fine, but JSON-minded clients expect strings
        return {"revision": state["revision"], "boot": self.boot,
                "models": {str(k): v for k, v in state["models"].items()},
                "actions": {str(k): v for k, v in state["actions"].items()}}

    @msgpack_method
    def plugins(self, token: str) -> dict:
        """Registered plugin keys per kind (model types, data access names)."""
        self.auth.require(token)
        return self.engine.registered_plugins(refresh=True)


def login_records_path(config: AimmConfig) -> str:
    """Where failed logins are kept: next to the SQLite model store (so they survive an
    engine restart), or nowhere (memory) with the memory backend."""
    if config.backend.kind == "sqlite" and config.backend.path is not None:
        path = config.backend.path
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path.with_name(path.name + ".logins"))
    return ":memory:"
