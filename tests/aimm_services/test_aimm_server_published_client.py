"""aimm-server driven by the published `aimm` 1.2 package's own REPL client, unchanged.

An AIMM user switches servers without touching the client: connect (login with the SHA-256
digest the client sends), the five actions with numpy, pandas and data access arguments, the
state the client keeps, and models that survive a restart of the whole server.
"""
import asyncio
import base64
import json

import numpy
import pandas
import pytest

import aimm.client.repl as aimm_repl   # the published client (test extra: aimm==1.2.dev1)

import aimm_style_plugins  # registers with the published aimm, for the client's serialize
from aimm_server_process import PASSWORD, USER, running_server, run_coroutine
from aimm_test_plugins import COUNTER

TIMEOUT = 60


def run(coroutine):
    return run_coroutine(coroutine, TIMEOUT)


@pytest.fixture
def credentials(monkeypatch):
    """What the user types at the client's prompts."""
    answers = {"user": USER, "password": PASSWORD}
    monkeypatch.setattr(aimm_repl, "input", lambda prompt="": answers["user"], raising=False)
    monkeypatch.setattr(aimm_repl, "getpass", lambda prompt="": answers["password"])
    return answers


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path) as server:
        yield server


async def connected(url):
    client = aimm_repl.AIMM()
    await client.connect(url)
    return client


def test_published_client_logs_in_and_sees_the_state_at_once(server, credentials):
    async def scenario():
        client = await connected(server.url)
        try:
            # the client reads state["models"] right after its login call returns
            assert client.state == {"models": {}, "actions": {}}
            model = await client.create_instance(COUNTER, start=2)
            await wait_for_state(client, lambda s: model._instance_id in s["models"])
            entry = client.state["models"][model._instance_id]
            assert repr(entry) == f"aimm.client.repl.Model<{COUNTER}>(instance_id=1)"
            actions = client.state["actions"]
            assert [a["operation"] for a in actions.values()] == ["create_instance"]
            assert all(isinstance(k, int) for k in actions)   # the client made them ints
        finally:
            await client.async_close()
    run(scenario())


def test_published_client_wrong_password_is_refused(server, credentials):
    credentials["password"] = "not the password"

    async def scenario():
        with pytest.raises(Exception, match="wrong username or password"):
            await connected(server.url)
    run(scenario())


def test_published_client_all_five_actions_with_numpy_pandas_and_data_access(server,
                                                                            credentials):
    async def scenario():
        client = await connected(server.url)
        try:
            # create_instance with a keyword argument
            counter = await client.create_instance(COUNTER, start=1)
            assert (counter._instance_id, counter._model_type) == (1, COUNTER)
            # fit with a numpy array and a data access argument: 1 + sum([1, 2]) + by
            by = aimm_repl.DataAccessArg("test.array", [3], {"dtype": "int64"})   # 0+1+2
            await client.fit(counter._instance_id, numpy.array([1.0, 2.0]), by=by)
            # predict: numpy in, numpy out (count 7 * x)
            out = await client.predict(counter._instance_id,
                                       x=numpy.array([1, 2], dtype="int32"))
            numpy.testing.assert_array_equal(out, [7, 14])
            # predict: pandas Series in, Series out
            out = await client.predict(counter._instance_id, x=pandas.Series([1.0, 2.0]))
            pandas.testing.assert_series_equal(out, pandas.Series([7.0, 14.0]))
            # predict: DataFrame in, DataFrame out
            frame = pandas.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
            out = await client.predict(counter._instance_id, x=frame)
            assert list(out.columns) == ["a", "b"]
            numpy.testing.assert_array_equal(out.to_numpy(), (frame * 7).to_numpy())

            # an AIMM-style plugin (from aimm import plugins), loaded unchanged by the server
            scaler = aimm_style_plugins.Scaler(factor=2.0)
            added = await client.add_instance(aimm_style_plugins.SCALER, scaler)
            result = await client.predict(added._instance_id, [1, 2, 3])
            assert result["n"] == 3
            assert result["scaled"]["type"] == "numpy_array"
            assert result["scaled"]["dtype"] == "float32"     # nested array keeps its tag
            assert result["scaled"]["data"] == [2.0, 4.0, 6.0]
            # fit from a data access returning a DataFrame, then update_instance
            source = aimm_repl.DataAccessArg("aimm_style.frame", [2], {"scale": 1})
            await client.fit(added._instance_id, [1.0, 2.0], [3.0, 6.0])
            result = await client.predict(added._instance_id, [1])
            assert result["scaled"]["data"] == [3.0]
            replaced = await client.update_instance(aimm_style_plugins.SCALER,
                                                    added._instance_id,
                                                    aimm_style_plugins.Scaler(factor=10.0))
            assert replaced._instance_id == added._instance_id
            result = await client.predict(added._instance_id, source)
            # the DataFrame from the data access goes to predict: len 2, x * 10
            assert result["n"] == 2
            await wait_for_state(client, lambda s: len(s["models"]) == 2)
            stored = client.state["models"]
            assert sorted(stored) == [1, 2]
        finally:
            await client.async_close()
    run(scenario())


def test_published_client_errors_come_back_with_the_message(server, credentials):
    async def scenario():
        client = await connected(server.url)
        try:
            with pytest.raises(Exception, match="no model with instance id 99"):
                await client.predict(99, 1)
            counter = await client.create_instance(COUNTER)
            with pytest.raises(Exception, match="cannot predict with x=5"):
                await client.predict(counter._instance_id, x=5, fail=True)
            with pytest.raises(Exception, match="model type 'no.Such'"):
                await client.create_instance("no.Such")
        finally:
            await client.async_close()
    run(scenario())


def test_models_survive_a_restart_of_the_server(tmp_path, credentials):
    with running_server(tmp_path, name="restart-me") as server:
        async def before():
            client = await connected(server.url)
            try:
                counter = await client.create_instance(COUNTER, start=5)
                await client.fit(counter._instance_id, by=1)
                return counter._instance_id
            finally:
                await client.async_close()
        instance_id = run(before())
        server.stop()
        server.start()

        async def after():
            client = await connected(server.url)
            try:
                assert list(client.state["models"]) == [instance_id]
                assert client.state["actions"] == {}     # actions do not survive a restart
                return await client.predict(instance_id, x=numpy.array([1.0]))
            finally:
                await client.async_close()
        numpy.testing.assert_array_equal(run(after()), [6.0])


async def wait_for_state(client, predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (client.state is not None and predicate(client.state)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"state never matched; last: {client.state}")
        await asyncio.sleep(0.02)


def test_instance_in_state_is_the_serialized_model(server, credentials):
    async def scenario():
        client = await connected(server.url)
        try:
            added = await client.add_instance(aimm_style_plugins.SCALER,
                                              aimm_style_plugins.Scaler(factor=3.0))
            await wait_for_state(client, lambda s: added._instance_id in s["models"])
            raw = client._connection.state.data["models"][str(added._instance_id)]
            assert json.loads(base64.b64decode(raw["instance"])) == {"factor": 3.0}
            assert raw["type"] == raw["model_type"] == aimm_style_plugins.SCALER
            assert raw["id"] == raw["instance_id"] == added._instance_id
        finally:
            await client.async_close()
    run(scenario())



def test_aimm_plain_sha256_user_entries_still_log_in_with_a_warning(tmp_path, credentials):
    from aimm_server_process import DIGEST
    with running_server(tmp_path, users=[{"username": USER, "password": DIGEST}]) as server:
        async def scenario():
            client = await connected(server.url)
            await client.async_close()
        run(scenario())
        logs = server.speedysvc("logs", "aimm_engine", "-n", "200")
        assert "unsalted SHA-256 password entry" in logs.stdout
