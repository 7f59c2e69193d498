"""AIMM's REPL control (seed 002) over hat-juggler: what AIMM's own clients connect to.

A websocket server at ws://HOST:PORT/ws (and at /, where the original AIMM 1.2 server
listened) speaking the hat-juggler protocol. Requests: login {username, password (SHA-256
hex, as AIMM's client sends it)}, logout, create_instance {model_type, args, kwargs},
add_instance {model_type, instance_b64}, update_instance {model_type, instance_id,
instance_b64}, fit and predict {instance_id, args, kwargs}. Arguments take seed 002's
object_arg forms at any depth; results come back in its JSON representations. Errors are
unsuccessful juggler responses carrying the message.

State: {} before login; after it {"models", "actions"} (see repl_state), on the connection
before the login response, kept current from the engine's events.

Everything here runs on one asyncio loop; calls into the engine (blocking speedysvc calls)
run in a thread pool. The loop is driven by ReplControlService (repl_control_service).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import aiohttp.web
from hat import juggler

from . import json_representation, wire_values
from .client import raise_for_outcome
from .errors import NotLoggedIn, WireFormatError
from .repl_state import ReplState, empty_state, model_json

log = logging.getLogger(__name__)

REQUESTS = ("login", "logout", "create_instance", "add_instance", "update_instance", "fit",
            "predict")
TERMINAL = ("done", "failed", "cancelled")
RECHECK_S = 5.0          # a waiting request re-reads its action this often without events
AUTOFLUSH_S = 0.2        # state changes reach clients at most this late (juggler's default)


class ReplControl:
    """The juggler server and its sessions, on the running asyncio loop."""

    def __init__(self, engine: Any, host: str, port: int, *,
                 ssl_ctx: Optional[ssl.SSLContext] = None, engine_threads: int = 16):
        self._engine = engine
        self._host, self._port = host, port
        self._ssl_ctx = ssl_ctx
        self._executor = ThreadPoolExecutor(max_workers=engine_threads,
                                            thread_name_prefix="aimm-repl-engine")
        self.state = ReplState()
        self._sessions: dict = {}          # juggler connection -> Session
        self._background: set = set()
        self._loaded = False
        self._load_lock: Optional[asyncio.Lock] = None
        self._action_waiters: dict[int, list[asyncio.Future]] = {}
        self._server: Any = None
        self._peers: dict = {}

    # ---- lifecycle ----

    async def start(self) -> None:
        self._load_lock = asyncio.Lock()
        holder: dict = {}

        async def serve_ws(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            # the peer address of the socket, never X-Forwarded-For / Forwarded headers
            # (juggler's Connection.remote trusts them; the login limits must not)
            peer = request.transport.get_extra_info("peername") if request.transport else None
            connection = await holder["server"].create_connection(request)
            self._peers[connection] = str(peer[0]) if peer else "unknown"
            try:
                await connection.wait_closed()
            finally:
                self._peers.pop(connection, None)
            return connection.ws

        # /ws as seed 002 documents; / where the original AIMM 1.2 server listened
        self._server = await juggler.listen(
            self._host, self._port, connection_cb=self._on_connection,
            request_cb=self._on_request, ws_path=None, index_path=None,
            additional_routes=[aiohttp.web.get("/ws", serve_ws),
                               aiohttp.web.get("/", serve_ws)],
            ssl_ctx=self._ssl_ctx, autoflush_delay=AUTOFLUSH_S, parallel_requests=True)
        holder["server"] = self._server
        log.info("AIMM REPL control listening on %s://%s:%s/ws",
                 "wss" if self._ssl_ctx else "ws", self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.async_close()
        for session in list(self._sessions.values()):
            await session.end()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- engine events (delivered on the loop by the service's listener thread) ----

    def on_engine_event(self, topic: str, payload: dict) -> None:
        if topic == "action":
            if self.state.apply_action(payload):
                self._wake(payload["action_id"])
        elif topic == "model":
            summary = self.state.apply_model_event(payload)
            if summary is not None and self._loaded:
                self.in_background(self._fetch_instances([summary]), "fetching a model")

    def on_events_missed(self) -> None:
        """Events were lost (the subscriber fell behind): read everything again."""
        if self._loaded:
            self.in_background(self._load_state(force=True), "re-reading the state")

    def in_background(self, coroutine: Any, what: str) -> None:
        """Run `coroutine` on the loop, logging (not losing) its failure."""
        async def guarded() -> None:
            try:
                await coroutine
            except Exception:
                log.warning("REPL control: %s failed", what, exc_info=True)
        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def sessions(self) -> list:
        """The sessions of the open connections."""
        return list(self._sessions.values())

    def _wake(self, action_id: int) -> None:
        for future in self._action_waiters.pop(action_id, []):
            if not future.done():
                future.set_result(None)

    # ---- juggler callbacks ----

    def _on_connection(self, connection: juggler.Connection) -> None:
        session = Session(self, connection)
        self._sessions[connection] = session
        connection.state.set([], empty_state())
        connection.async_group.spawn(session.watch)

    async def _on_request(self, connection: juggler.Connection, name: str, data: Any) -> Any:
        session = self._sessions.get(connection)
        if session is None:
            raise ConnectionError("connection closed")
        return await session.handle(name, data)

    # ---- helpers for sessions ----

    async def call(self, function: Callable, *args: Any) -> Any:
        """Run a blocking engine call in the thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function,
                                                                 *args)

    def peer(self, connection: juggler.Connection) -> str:
        """The client's address as the socket sees it."""
        return self._peers.get(connection, "unknown")

    def any_token(self) -> Optional[str]:
        for session in self._sessions.values():
            if session.token is not None:
                return session.token
        return None

    async def reload(self, token: str) -> None:
        """Read the engine's state again (at each login: the engine may have restarted since;
        instances already held at their version are not fetched again)."""
        await self._load_state(force=True, token=token)

    async def _load_state(self, force: bool = False, token: Optional[str] = None) -> None:
        async with self._load_lock:
            if self._loaded and not force:
                return
            token = token or self.any_token()
            if token is None:
                return
            state = await self.call(self._engine.state, token)
            wanted = self.state.replace_state(state)
            await self._fetch_instances(wanted, token)
            self._loaded = True

    async def _fetch_instances(self, summaries: list, token: Optional[str] = None) -> None:
        for summary in summaries:
            if self.state.has_instance(summary):
                continue
            current = token or self.any_token()
            if current is None:
                self._loaded = False      # nobody logged in: read it all at the next login
                return
            try:
                model = await self.call(self._engine.model, current, summary["instance_id"])
            except KeyError:
                continue                  # removed meanwhile; its event follows
            except NotLoggedIn:
                self._loaded = False
                return
            self.state.set_instance(model, model["instance"])

    async def wait_action(self, token: str, snapshot: dict) -> dict:
        """The action's terminal snapshot, from events (re-read now and then to be safe)."""
        action_id = snapshot["action_id"]
        self.state.apply_action(snapshot)
        while True:
            current = self.state.action(action_id)
            if current is not None and current["status"] in TERMINAL:
                return current
            future = asyncio.get_running_loop().create_future()
            waiters = self._action_waiters.setdefault(action_id, [])
            waiters.append(future)
            try:
                await asyncio.wait_for(future, RECHECK_S)
            except asyncio.TimeoutError:
                if future in waiters:
                    waiters.remove(future)
                if not waiters and self._action_waiters.get(action_id) is waiters:
                    del self._action_waiters[action_id]
                fetched = await self.call(self._engine.action, token, action_id)
                self.state.apply_action(fetched)
                if fetched["status"] in TERMINAL:
                    return fetched

    def forget(self, session: "Session") -> None:
        self._sessions.pop(session.connection, None)


class Session:
    """One juggler connection: its login and its requests."""

    def __init__(self, control: ReplControl, connection: juggler.Connection):
        self.control = control
        self.connection = connection
        self.token: Optional[str] = None
        self.username: Optional[str] = None
        self._listener = lambda data: self.connection.state.set([], data)

    async def watch(self) -> None:
        try:
            await self.connection.wait_closing()
        finally:
            # not in this task: the connection's group cancels it while it closes, and the
            # engine logout must still happen
            self.control.in_background(self.end(), "ending a session")

    async def end(self) -> None:
        self.control.forget(self)
        await self._drop_login()

    async def handle(self, name: str, data: Any) -> Any:
        if name not in REQUESTS:
            raise ValueError(f"unknown request {name!r}; expected one of {', '.join(REQUESTS)}")
        if not isinstance(data, dict):
            data = {} if data is None else data
        if not isinstance(data, dict):
            raise ValueError(f"{name}: the request data must be an object, found "
                             f"{type(data).__name__}")
        if name == "login":
            return await self._login(data)
        if name == "logout":
            await self._drop_login()
            self.connection.state.set([], empty_state())
            await self.connection.flush()
            return {"success": True}
        if self.token is None:
            raise PermissionError(f"{name}: not logged in; send login first")
        try:
            return await getattr(self, f"_{name}")(data)
        except NotLoggedIn:
            # the engine restarted (sessions are not kept) or the session expired
            self.control.state.remove_listener(self._listener)
            self.token = None
            self.connection.state.set([], empty_state())
            raise PermissionError(f"{name}: the session ended (the engine restarted or the "
                                  f"session expired); log in again") from None

    # ---- login ----

    async def _login(self, data: dict) -> dict:
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ValueError("login needs username and password (strings)")
        token = await self.control.call(self.control._engine.login_digest, username,
                                        password, self.control.peer(self.connection))
        await self._drop_login()
        self.token, self.username = token, username
        await self.control.reload(token)
        self.control.state.add_listener(self._listener)
        self.connection.state.set([], self.control.state.data)
        # AIMM's client reads state["models"] as soon as login returns: the state goes first
        await self.connection.flush()
        return {"success": True}

    async def _drop_login(self) -> None:
        self.control.state.remove_listener(self._listener)
        token, self.token = self.token, None
        if token is not None:
            try:
                await self.control.call(self.control._engine.logout, token)
            except Exception:   # the engine may be restarting; its sessions go with it
                log.debug("logout of a REPL session failed", exc_info=True)

    # ---- actions ----

    async def _create_instance(self, data: dict) -> dict:
        args, kwargs = _arguments(data)
        snapshot = await self._engine(lambda e, t: e.create_instance(
            t, _str(data, "model_type"), args, kwargs, None))
        return await self._model_result(snapshot)

    async def _add_instance(self, data: dict) -> dict:
        instance = _instance(data)
        snapshot = await self._engine(lambda e, t: e.add_instance(
            t, _str(data, "model_type"), instance, None))
        return await self._model_result(snapshot)

    async def _update_instance(self, data: dict) -> dict:
        instance = _instance(data)
        instance_id = _int(data, "instance_id")
        snapshot = await self._engine(lambda e, t: e.update_instance(
            t, instance_id, _str(data, "model_type"), instance, None))
        return await self._model_result(snapshot)

    async def _fit(self, data: dict) -> dict:
        args, kwargs = _arguments(data)
        instance_id = _int(data, "instance_id")
        snapshot = await self._engine(lambda e, t: e.fit(t, instance_id, args, kwargs, None))
        return await self._model_result(snapshot)

    async def _predict(self, data: dict) -> Any:
        args, kwargs = _arguments(data)
        instance_id = _int(data, "instance_id")
        snapshot = await self._engine(lambda e, t: e.predict(t, instance_id, args, kwargs,
                                                             None))
        result = await self._outcome(snapshot)
        return json_representation.result_to_json(wire_values.decode(result))

    # ---- helpers ----

    async def _engine(self, call: Callable[[Any, str], Any]) -> Any:
        token = self.token
        return await self.control.call(call, self.control._engine, token)

    async def _outcome(self, snapshot: dict) -> Any:
        final = await self.control.wait_action(self.token, snapshot)
        raise_for_outcome(final)
        outcome = await self.control.call(self.control._engine.outcome, self.token,
                                          snapshot["action_id"])
        return outcome["result"]

    async def _model_result(self, snapshot: dict) -> dict:
        result = await self._outcome(snapshot)
        model = await self.control.call(self.control._engine.model, self.token,
                                        result["instance_id"])
        return model_json(model["instance_id"], model["model_type"], model["instance"])


def _arguments(data: dict) -> tuple[list, dict]:
    """Seed 002 JSON arguments -> Python values -> the engine's wire encoding."""
    args = data.get("args") or []
    kwargs = data.get("kwargs") or {}
    values, named = json_representation.args_from_json(list(args) if isinstance(
        args, (list, tuple)) else args, kwargs)
    return [wire_values.encode(v) for v in values], \
        {k: wire_values.encode(v) for k, v in named.items()}


def _instance(data: dict) -> bytes:
    # AIMM's client sends instance_b64; seed 002 calls the field instance
    text = data.get("instance_b64", data.get("instance"))
    if not isinstance(text, str):
        raise WireFormatError("instance_b64 (base64 text of the serialized instance) is "
                              "required")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireFormatError(f"instance_b64 is not base64: {exc}") from exc


def _str(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} (a non-empty string) is required, found {value!r}")
    return value


def _int(data: dict, key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.isdigit():
            return int(value)      # state keys are strings; accept them back
        raise ValueError(f"{key} (an integer) is required, found {value!r}")
    return value
