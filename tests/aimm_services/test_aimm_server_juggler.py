"""aimm-server's REPL control driven by a plain hat-juggler client, as any language would.

Wire behaviour checked here: {} before login; the state arrives before the login response;
string keys only; both /ws and /; login/wrong password/logout; seed 002's representations
of arguments and results at any depth; errors as unsuccessful responses with the message.
"""
import asyncio
import base64
import json

import aiohttp
import pytest
from hat import juggler

from aimm_server_process import DIGEST, USER, running_server, run_coroutine
from aimm_test_plugins import COUNTER
from waiting import wait_until

TIMEOUT = 60


def run(coroutine):
    return run_coroutine(coroutine, TIMEOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("juggler")) as server:
        yield server


async def wait_state(client, predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate(client.state.data):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"state never matched; last: {client.state.data}")
        await asyncio.sleep(0.02)
    return client.state.data


async def logged_in(url, **connect_options):
    client = await juggler.connect(url, **connect_options)
    assert await client.send("login", {"username": USER, "password": DIGEST}) == \
        {"success": True}
    return client


def all_keys(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from all_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_keys(item)


def test_state_is_empty_before_login_and_full_when_login_returns(server):
    async def scenario():
        client = await juggler.connect(server.url)
        try:
            assert await wait_state(client, lambda s: s is not None) == {}
            with pytest.raises(juggler.JugglerError) as refused:
                await client.send("predict", {"instance_id": 1, "args": [], "kwargs": {}})
            assert "not logged in" in refused.value.data
            await client.send("login", {"username": USER, "password": DIGEST})
            # no waiting: the logged-in state came before the response
            assert set(client.state.data) == {"models", "actions"}
        finally:
            await client.async_close()
    run(scenario())


def test_wrong_password_then_right_one_then_logout(server):
    async def scenario():
        client = await juggler.connect(server.url)
        try:
            with pytest.raises(juggler.JugglerError) as refused:
                await client.send("login", {"username": USER, "password": "0" * 64})
            assert refused.value.data == "wrong username or password"
            with pytest.raises(juggler.JugglerError):    # the plain password is not it
                await client.send("login", {"username": USER, "password": "correct horse"})
            assert await client.send("login", {"username": USER, "password": DIGEST}) == \
                {"success": True}
            model = await client.send("create_instance", {"model_type": COUNTER,
                                                          "args": [], "kwargs": {}})
            assert await client.send("logout", None) == {"success": True}
            assert client.state.data == {}               # state flushed before the response
            with pytest.raises(juggler.JugglerError, match="not logged in"):
                await client.send("fit", {"instance_id": model["instance_id"],
                                          "args": [], "kwargs": {}})
        finally:
            await client.async_close()
    run(scenario())


def test_root_path_serves_the_same_control(server):
    """The original AIMM 1.2 server listened on "/"; clients configured for it still work."""
    async def scenario():
        client = await logged_in(f"ws://127.0.0.1:{server.port}/")
        try:
            created = await client.send("create_instance", {"model_type": COUNTER,
                                                            "args": [3], "kwargs": {}})
            assert created["model_type"] == COUNTER
        finally:
            await client.async_close()
    run(scenario())


def test_state_follows_changes_with_string_keys_and_both_model_spellings(server):
    async def scenario():
        watcher = await logged_in(server.url)
        actor = await logged_in(server.url)
        try:
            created = await actor.send("create_instance", {"model_type": COUNTER,
                                                           "args": [], "kwargs": {"start": 4}})
            key = str(created["instance_id"])
            state = await wait_state(watcher, lambda s: key in s["models"])
            model = state["models"][key]
            assert model["instance_id"] == model["id"] == created["instance_id"]
            assert model["model_type"] == model["type"] == COUNTER
            assert json.loads(base64.b64decode(model["instance"]))["count"] == 4
            await actor.send("fit", {"instance_id": created["instance_id"], "args": [],
                                     "kwargs": {"by": 2}})
            state = await wait_state(watcher, lambda s: json.loads(base64.b64decode(
                s["models"][key]["instance"]))["count"] == 6)
            fits = [a for a in state["actions"].values() if a["operation"] == "fit"]
            assert fits and fits[-1]["status"] == "done"
            assert all(isinstance(k, str) for k in all_keys(state))
        finally:
            await watcher.async_close()
            await actor.async_close()
    run(scenario())


def test_nested_representations_in_arguments_and_results(server):
    async def scenario():
        client = await logged_in(server.url)
        try:
            created = await client.send("create_instance", {"model_type": COUNTER,
                                                            "args": [], "kwargs": {"start": 2}})
            # a tagged array inside a plain list argument is converted (the plugin multiplies
            # it, so it was an array), and comes back tagged inside the dict result
            tagged = {"type": "numpy_array", "data": [1, 2], "dtype": "int8"}
            result = await client.send("predict", {
                "instance_id": created["instance_id"], "args": [],
                "kwargs": {"x": {"values": [tagged], "label": "plain"}}})
            assert result["x"] == {"values": [{"type": "numpy_array", "dtype": "int8",
                                               "data": [1, 2]}], "label": "plain"}
            # a numpy array nested in a dict result keeps its tag and dtype
            added = await client.send("add_instance", {
                "model_type": "aimm_style_plugins.Scaler",
                "instance_b64": base64.b64encode(b'{"factor": 0.5}').decode()})
            result = await client.send("predict", {
                "instance_id": added["instance_id"],
                "args": [{"type": "pandas_series", "data": [2, 4]}], "kwargs": {}})
            assert result == {"scaled": {"type": "numpy_array", "dtype": "float32",
                                         "data": [1.0, 2.0]}, "n": 2}
            # a DataFrame argument and a data access argument nested in a list
            frame = {"type": "pandas_dataframe", "data": {"x": {"0": 1.0, "1": 3.0}}}
            await client.send("fit", {"instance_id": added["instance_id"],
                                      "args": [frame, [2.0, 6.0]], "kwargs": {}})
            access = {"type": "data_access", "name": "test.array", "args": [3],
                      "kwargs": {"dtype": "float64"}}
            result = await client.send("predict", {"instance_id": added["instance_id"],
                                                   "args": [access], "kwargs": {}})
            assert result["scaled"]["data"] == [0.0, 2.0, 4.0]
            result = await client.send("predict", {
                "instance_id": created["instance_id"], "args": [],
                "kwargs": {"x": [access, {"deeper": access}]}})
            nested = result["x"]
            assert nested[0]["type"] == "numpy_array" and nested[0]["data"] == [0.0, 1.0, 2.0]
            assert nested[1]["deeper"]["dtype"] == "float64"
        finally:
            await client.async_close()
    run(scenario())


def test_update_instance_and_errors_as_unsuccessful_responses(server):
    async def scenario():
        client = await logged_in(server.url)
        try:
            created = await client.send("create_instance", {"model_type": COUNTER,
                                                            "args": [], "kwargs": {}})
            instance = base64.b64encode(json.dumps(
                {"count": 40, "predictions": 0}).encode()).decode()
            updated = await client.send("update_instance", {
                "model_type": COUNTER, "instance_id": created["instance_id"],
                "instance_b64": instance})
            assert updated["instance"] == instance
            result = await client.send("predict", {"instance_id": created["instance_id"],
                                                   "args": [], "kwargs": {}})
            assert result["count"] == 40
            for request, data, message in (
                    ("predict", {"instance_id": 12345, "args": [], "kwargs": {}},
                     "no model with instance id 12345"),
                    ("add_instance", {"model_type": COUNTER, "instance_b64": "%%%"},
                     "not base64"),
                    ("add_instance", {"model_type": COUNTER,
                                      "instance_b64": base64.b64encode(b"{").decode()},
                     "could not be deserialized"),
                    ("fit", {"instance_id": created["instance_id"], "args": [],
                             "kwargs": {"x": {"type": "numpy_array", "data": [1]}}},
                     "numpy_array argument needs keys"),
                    ("cancel_everything", {}, "unknown request 'cancel_everything'")):
                with pytest.raises(juggler.JugglerError) as failed:
                    await client.send(request, data)
                assert message in failed.value.data, (request, failed.value.data)
        finally:
            await client.async_close()
    run(scenario())


def test_login_limits_per_source_and_per_user(server):
    """An attacker failing on a user from one address does not lock that user out of
    another; many usernames from one address lock that address out."""
    def from_address(address):
        return {"connector": aiohttp.TCPConnector(local_addr=(address, 0))}

    async def attempt(address, username, password):
        client = await juggler.connect(server.url, **from_address(address))
        try:
            return await client.send("login", {"username": username, "password": password})
        except juggler.JugglerError as exc:
            return exc.data
        finally:
            await client.async_close()

    async def scenario():
        for _ in range(5):
            assert await attempt("127.0.0.2", USER, "0" * 64) == "wrong username or password"
        assert "too many failed logins" in await attempt("127.0.0.2", USER, DIGEST)
        assert await attempt("127.0.0.3", USER, DIGEST) == {"success": True}
        results = [await attempt("127.0.0.4", f"user{i}", "0" * 64) for i in range(50)]
        assert "too many failed logins from remote:127.0.0.4" in results[-1]
        assert "too many failed logins" in await attempt("127.0.0.4", USER, DIGEST)
        assert await attempt("127.0.0.5", USER, DIGEST) == {"success": True}
        # an engine restart keeps them (they are in SQLite next to the models)
        done = server.speedysvc("restart", "aimm_engine")
        assert done.returncode == 0, done.stderr
        assert "too many failed logins" in await attempt("127.0.0.2", USER, DIGEST)
        assert "too many failed logins" in await attempt("127.0.0.4", USER, DIGEST)
        assert await attempt("127.0.0.3", USER, DIGEST) == {"success": True}
    run(scenario())


def test_engine_restart_ends_sessions_keeps_models_and_forgets_actions(tmp_path):
    """What the README says an engine restart loses: sessions and actions, never models."""
    with running_server(tmp_path) as server:
        async def scenario():
            client = await logged_in(server.url)
            try:
                created = await client.send("create_instance", {"model_type": COUNTER,
                                                                "args": [], "kwargs": {}})
                await client.send("fit", {"instance_id": created["instance_id"], "args": [],
                                          "kwargs": {"by": 5}})
                done = await asyncio.to_thread(server.speedysvc, "restart", "aimm_engine")
                assert done.returncode == 0, done.stderr
                with pytest.raises(juggler.JugglerError) as ended:
                    await client.send("predict", {"instance_id": created["instance_id"],
                                                  "args": [], "kwargs": {}})
                assert "log in again" in ended.value.data
                assert await wait_state(client, lambda s: s == {}) == {}
                await client.send("login", {"username": USER, "password": DIGEST})
                state = client.state.data
                assert list(state["models"]) == [str(created["instance_id"])]
                assert state["actions"] == {}
                result = await client.send("predict", {"instance_id": created["instance_id"],
                                                       "args": [], "kwargs": {}})
                assert result["count"] == 5
                state = await wait_state(client, lambda s: [a["status"] for a in
                                                            s["actions"].values()] == ["done"])
                assert list(state["actions"]) == ["1"]        # the new engine counts anew
            finally:
                await client.async_close()
        run(scenario())


def test_closed_connections_end_their_sessions(server):
    from speedysvc import connect

    control = connect("aimm_repl", f"shm://{server.scope}", timeout=30)
    try:
        baseline = control.status()
        assert baseline["address"] == server.url

        async def scenario():
            clients = [await logged_in(server.url) for _ in range(3)]
            anonymous = await juggler.connect(server.url)
            status = control.status()
            assert status["connections"] == baseline["connections"] + 4
            assert status["logged_in"] == baseline["logged_in"] + 3
            for client in [*clients, anonymous]:
                await client.async_close()
        run(scenario())
        wait_until(lambda: control.status() == baseline, timeout=10,
                   message="the closed connections' sessions to end")
    finally:
        control.close()
