"""aimm-server inside Hat, against real hat-monitor and hat-event servers (subprocesses of
their packages, see hat_servers.py): models stored as Hat events and restored after a
restart, actions requested by registering events with results and progress seen as events,
a custom Hat-aware control, waiting for an event server started late (and following it
through its restart), and a second server of the group staying on standby.

Select with `-m hat`.
"""
import asyncio
import base64
import contextlib
import json
import re
import secrets
import urllib.request
from pathlib import Path

import pytest
import yaml
from hat import juggler

from aimm_server_process import (DIGEST, PASSWORD, PLUGINS, USER, AimmServer, free_port)
from aimm_services.client import AIMM
from aimm_services.passwords import hash_password
from hat_servers import EventClient
from speedysvc import naming
from waiting import wait_until

pytestmark = pytest.mark.hat

COUNTER = "test.Counter"
PREFIXES = {action: ["aimm", action] for action in
            ("create_instance", "add_instance", "update_instance", "fit", "predict", "cancel")}
STATE, ACTION_STATE, MODEL = ["aimm", "state"], ["aimm", "action_state"], ["aimm", "model"]


def readme_example():
    """The YAML of the README's "Inside Hat" section: the tests run that very example."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Inside Hat"):]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


def write_hat_config(directory, hat_servers, *, group, event_server_group="event",
                     name=None, custom_control=False):
    """The README's example with the test's monitor, group, plugins and a REPL control
    added; returns (path, REPL port)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data = readme_example()
    assert data["control"][0]["event_prefixes"] == PREFIXES
    assert data["backend"]["model_prefix"] == MODEL
    data["control"].append(
        {"module": "aimm.server.control.repl", "server": {"host": "127.0.0.1", "port": port},
         "users": [{"username": USER, "password": hash_password(PASSWORD)}]})
    if custom_control:
        data["control"].append({"module": "aimm_hat_custom_control"})
    data["name"] = name or f"h{secrets.token_hex(4)}"
    data["engine"]["max_children"] = 1
    data["plugins"]["names"] = list(PLUGINS)
    data["hat"]["monitor_component"].update(port=hat_servers.monitor_port, group=group,
                                            event_server_group=event_server_group)
    path = directory / "aimm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, port


@contextlib.contextmanager
def aimm_server(conf, port, log_dir, *extra):
    server = AimmServer(conf, log_dir, port, extra)
    try:
        yield server.start()
    finally:
        stop_and_check(server)


def stop_and_check(server):
    server.stop()
    leftover = server.children_alive()
    for child in leftover:
        child.kill()
    try:
        wait_until(lambda: not naming.list_objects(server.scope), timeout=10,
                   message=f"shared memory of scope {server.scope} to be removed")
    finally:
        naming.sweep(server.scope)
    assert not leftover, f"worker processes left behind: {leftover}"


def notes(server):
    """{service: note} as `speedysvc status --json` shows them."""
    done = server.speedysvc("status", "--json")
    if done.returncode != 0:
        return {}
    return {s["name"]: s.get("note") or "" for s in json.loads(done.stdout)["services"]}


def wait_note(server, text, timeout=60):
    """Wait until every AIMM service of the server shows a Hat note containing `text`."""
    def shown():
        found = notes(server)
        return found if found and all(text in n for n in found.values()) else None
    return wait_until(shown, timeout=timeout, interval=0.3,
                      message=f"the Hat note {text!r} on every service of {server.name}")


def repl_login(server):
    async def scenario():
        client = await juggler.connect(server.url)
        try:
            return await client.send("login", {"username": USER, "password": DIGEST})
        except juggler.JugglerError as exc:       # an unsuccessful response
            return {"error": str(exc)}
        finally:
            await client.async_close()
    return asyncio.run(asyncio.wait_for(scenario(), 60))


def request(events, action, payload, instance_id=None, timeout=60):
    """Register a request of the event control; return its final action state payload."""
    request_id = payload["request_id"]
    event_type = PREFIXES[action] + ([str(instance_id)] if instance_id is not None else [])
    events.register(event_type, payload)
    started = events.wait_for(lambda t, d: list(t) == ACTION_STATE and d["request_id"] ==
                              request_id, timeout=timeout, message=f"{request_id} accepted")
    if started["status"] != "IN_PROGRESS":
        return started
    return events.wait_for(lambda t, d: list(t) == ACTION_STATE and d["request_id"] ==
                           request_id and d["status"] != "IN_PROGRESS", timeout=timeout,
                           message=f"{request_id} to end")


def latest_state(events, action_id, progress):
    """The latest state event if it shows action `action_id` at `progress`."""
    latest = events.latest(STATE)
    data = latest[0].payload.data if latest else None
    if data and data["actions"].get(action_id, {}).get("progress") == progress:
        return data
    return None


def latest_progress(events, action_id):
    """The plugin's own progress of a running action, from the latest state event."""
    latest = events.latest(STATE)
    action = latest[0].payload.data["actions"].get(action_id, {}) if latest else {}
    return action.get("action") if action.get("progress") == "executing" else None


def counter_b64(count):
    """A serialized test.Counter, as aimm_test_plugins serializes it, in base64."""
    raw = json.dumps({"count": count, "predictions": 0}, sort_keys=True).encode()
    return base64.b64encode(raw).decode()


def stored_model(events, instance_id):
    latest = events.latest(MODEL + [str(instance_id)])
    if not latest or latest[0].payload is None:
        return None
    data = latest[0].payload.data
    return data["type"], json.loads(base64.b64decode(data["instance"]))


def test_models_are_hat_events_and_actions_are_requested_by_events(hat_servers, tmp_path):
    events = EventClient(hat_servers.events.port, [["aimm", "*"], ["test", "*"]])
    conf, port = write_hat_config(tmp_path, hat_servers, group="aimm_main",
                                  custom_control=True)
    try:
        with aimm_server(conf, port, tmp_path / "logs") as server:
            found = wait_note(server, "hat: active: connected to the Hat event server")
            assert set(found) == {"aimm_plugins", "aimm_engine", "aimm_repl"}, found
            assert "aimm_backend" not in found      # the event backend is in the engine
            text = server.speedysvc("status").stdout
            assert "aimm_engine: hat: active" in text, text

            # an action requested by registering an event; results come back as events
            done = request(events, "create_instance", {"request_id": "r1",
                           "model_type": COUNTER, "args": [], "kwargs": {"start": 5}})
            assert done == {"request_id": "r1", "status": "DONE", "result": 1}
            assert stored_model(events, 1) == (COUNTER, {"count": 5, "predictions": 0})
            done = request(events, "fit", {"request_id": "r2", "args": [],
                                           "kwargs": {"by": 2}}, instance_id=1)
            assert done["status"] == "DONE", done
            done = request(events, "predict", {"request_id": "r3", "args": [],
                                               "kwargs": {"x": 3}}, instance_id=1)
            assert done["result"] == {"count": 7.0, "x": 3, "predictions": 1}, done
            assert stored_model(events, 1) == (COUNTER, {"count": 7.0, "predictions": 1})
            # progress and models in the state event, as AIMM's state
            state = wait_until(lambda: latest_state(events, "3", "complete"), timeout=30,
                               message="the state event with the finished predict")
            assert state["models"] == {"1": COUNTER}
            assert state["actions"]["2"]["meta"]["call"] == "fit"
            assert state["actions"]["1"]["action"] == {"step": "instantiating"}
            # progress of a running fit in the state, then cancel it by an event
            gate = str(tmp_path / "never")
            events.register(PREFIXES["fit"] + ["1"], {"request_id": "slow", "args": [],
                                                      "kwargs": {"gate": gate}})
            wait_until(lambda: latest_progress(events, "4"), timeout=30,
                       message="the slow fit's progress in the state event")
            events.register(PREFIXES["cancel"], "slow")
            cancelled = events.wait_for(lambda t, d: list(t) == ACTION_STATE and
                                        d["request_id"] == "slow" and d["status"] != "IN_PROGRESS",
                                        message="the slow fit to end")
            assert cancelled == {"request_id": "slow", "status": "CANCELLED", "result": None}
            failed = request(events, "predict", {"request_id": "r4", "args": [],
                                                 "kwargs": {"fail": True}}, instance_id=1)
            assert failed["status"] == "FAILED" and "cannot predict" in \
                failed["error"]["message"], failed
            unknown = request(events, "fit", {"request_id": "r5", "args": [], "kwargs": {}},
                              instance_id=99)
            assert unknown["status"] == "FAILED" and "99" in unknown["error"]["message"]

            # a custom control with get_subscriptions and create(conf, engine, client)
            events.register(["test", "ping"], {"request_id": "p1", "model_type": COUNTER})
            pong = events.wait_for(lambda t, d: list(t) == ["test", "pong"],
                                   message="the custom control's answer")
            assert pong == {"request_id": "p1", "instance_id": 2, "models": [1, 2]}

            with AIMM(f"shm://{server.scope}") as client:     # remove: not in AIMM's API
                client.login(USER, PASSWORD)
                client.remove_instance(2)
            assert stored_model(events, 2) is None
            added = request(events, "add_instance", {"request_id": "r9", "model_type": COUNTER,
                                                     "instance": counter_b64(1)})
            assert added == {"request_id": "r9", "status": "DONE", "result": 3}, added
            updated = request(events, "update_instance", {"request_id": "r10", "model_type":
                                                          COUNTER, "instance": counter_b64(10)},
                              instance_id=3)
            assert updated == {"request_id": "r10", "status": "DONE", "result": None}, updated
            assert stored_model(events, 3) == (COUNTER, {"count": 10, "predictions": 0})
            before = events.latest(MODEL + ["*"])

        # the event server kept running; a new aimm-server finds the models there
        with aimm_server(conf, port, tmp_path / "logs") as server:
            wait_note(server, "hat: active")
            done = request(events, "predict", {"request_id": "r6", "args": [],
                                               "kwargs": {}}, instance_id=1)
            assert done["result"] == {"count": 7.0, "x": 1, "predictions": 2}, done
            gone = request(events, "fit", {"request_id": "r7", "args": [], "kwargs": {}},
                           instance_id=2)
            assert gone["status"] == "FAILED", gone
            done = request(events, "predict", {"request_id": "r11", "args": [],
                                               "kwargs": {}}, instance_id=3)
            assert done["result"]["count"] == 10, done
            done = request(events, "create_instance", {"request_id": "r8",
                           "model_type": COUNTER, "args": [], "kwargs": {}})
            assert done["result"] == 4, done        # ids are never reused
            assert repl_login(server) == {"success": True}
        assert len(before) == 3                     # 1, 2 (removed: no payload) and 3
    finally:
        events.close()


def test_waits_for_an_event_server_started_late_and_follows_its_restart(hat_servers,
                                                                        tmp_path):
    late = hat_servers.event_server("event_late")
    conf, port = write_hat_config(tmp_path, hat_servers, group="aimm_late",
                                  event_server_group="event_late")
    web_port = free_port()
    with aimm_server(conf, port, tmp_path / "logs", "--web-monitor",
                     f"127.0.0.1:{web_port}") as server:
        wait_note(server, "waiting for an event server of group 'event_late'")
        # the web monitor shows it next to each service
        page = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=30).read()
        assert b"waiting for an event server of group &#39;event_late&#39;" in page or \
            b"waiting for an event server of group 'event_late'" in page
        refused = repl_login(server)
        assert refused.get("success") is not True and "does not serve now" in str(refused)
        logs = server.speedysvc("logs", "aimm_engine", "-n", "200").stdout
        assert "waiting for an event server of group 'event_late'" in logs, logs

        late.start()
        wait_note(server, "hat: active")
        events = EventClient(late.port, [["aimm", "*"]])
        try:
            done = request(events, "create_instance", {"request_id": "a", "model_type":
                                                       COUNTER, "args": [], "kwargs": {}})
            assert done["status"] == "DONE", done
            late.stop()
            wait_note(server, "event_late")         # waiting again, and says for what
            late.start()
        finally:
            events.close()
        wait_note(server, "hat: active")
        events = EventClient(late.port, [["aimm", "*"]])
        try:
            done = request(events, "predict", {"request_id": "b", "args": [], "kwargs": {}},
                           instance_id=1)
            assert done["status"] == "DONE", done
        finally:
            events.close()
    late.stop()


def test_second_server_of_the_group_stays_on_standby(hat_servers, tmp_path):
    """Also: a custom backend module (get_subscriptions, create(conf, event_client)) runs
    only in the active server."""
    label = secrets.token_hex(4)
    first_conf, first_port = write_hat_config(tmp_path / "a", hat_servers, group="aimm_pair",
                                              name=f"first{secrets.token_hex(3)}")
    data = yaml.safe_load(first_conf.read_text())
    data["backend"] = {"module": "aimm_hat_custom_backend", "label": label}
    first_conf.write_text(yaml.safe_dump(data))
    second_conf, second_port = write_hat_config(tmp_path / "b", hat_servers,
                                                group="aimm_pair",
                                                name=f"second{secrets.token_hex(3)}")
    with aimm_server(first_conf, first_port, tmp_path / "a" / "logs") as first:
        wait_note(first, "hat: active")
        with contextlib.closing(EventClient(hat_servers.events.port,
                                            [["test", "store", "*"]])) as events:
            # registered before this client subscribed: read the latest event of its type
            wait_until(lambda: [e for e in events.latest(["test", "store", "opened"])
                                if e.payload.data == {"label": label}], timeout=30,
                       message="the custom backend's event")
        second = AimmServer(second_conf, tmp_path / "b" / "logs", second_port)
        try:
            second.start()
            wait_note(second, f"standby: {first.name} is the active AIMM server")
            refused = repl_login(second)
            assert refused.get("success") is not True and "standby" in str(refused)
            assert repl_login(first) == {"success": True}
            assert "active" in notes(first)["aimm_engine"]
            stop_and_check(first)
            wait_note(second, "hat: active")     # the monitor blesses the one left
            assert repl_login(second) == {"success": True}
        finally:
            stop_and_check(second)


def test_monitor_only_server_reconnects_when_the_monitor_restarts(tmp_path):
    """A `hat` section without event_server_group: registration with the monitor only (the
    models stay in SQLite). This test runs a monitor of its own, which it restarts."""
    from hat_servers import HatServers
    own = HatServers(tmp_path / "hat")
    own.directory.mkdir()
    try:
        monitor = own.start_monitor()
        conf, port = write_hat_config(tmp_path, own, group="aimm_alone")
        data = yaml.safe_load(conf.read_text())
        del data["hat"]["monitor_component"]["event_server_group"]
        data["backend"] = {"module": "aimm.server.backend.sqlite", "path": "aimm.db"}
        data["control"] = data["control"][1:2]         # the REPL control only
        conf.write_text(yaml.safe_dump(data))
        with aimm_server(conf, port, tmp_path / "logs") as server:
            found = wait_note(server, "hat: active: blessed by the Hat monitor")
            assert "aimm_backend" in found            # SQLite: the backend service runs
            assert repl_login(server) == {"success": True}
            monitor.stop()
            wait_note(server, f"waiting for the Hat monitor server at 127.0.0.1:"
                              f"{own.monitor_port}")
            assert "does not serve now" in str(repl_login(server))
            monitor.start()
            wait_note(server, "hat: active")
            assert repl_login(server) == {"success": True}
    finally:
        own.stop()
