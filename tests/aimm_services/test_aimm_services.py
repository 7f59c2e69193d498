"""The AIMM services on real speedysvc worker processes, real shared memory, real TCP and a
real SQLite file, driven through the Python client."""

import numpy
import pandas
import pytest

from aimm_services.client import AIMM, ModelRef
from aimm_services.data_access import DataAccess
from aimm_services.errors import (ActionCancelled, ActionFailed, ActionTimeout, LoginFailed,
                                  NotLoggedIn, UnknownModel, UnknownModelType)
from speedysvc import naming
from speedysvc.serve import new_scope
from aimm_deployment import PASSWORD, USER, deploy, write_config
import waiting

COUNTER = "test.Counter"
SLEEPER = "aimm_test_plugins.Sleeper"
LINEAR = "aimm_services.example.linear_plugins.LinearRegression"
PLUGIN_WORKERS = 4



def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message=None):
    """waiting.wait_until with this suite's default deadline."""
    return waiting.wait_until(predicate, timeout, interval, message)

@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("aimm"), max_children=PLUGIN_WORKERS,
                          plugins=("aimm_test_plugins", "aimm_services.example.linear_plugins"))
    scope = new_scope()
    with deploy(config, plugin_workers=PLUGIN_WORKERS, tcp=True, scope=scope) as running:
        yield running
    wait_until(lambda: not naming.list_objects(scope), timeout=5,
               message="the services' shared memory to be removed")


@pytest.fixture
def aimm(deployment):
    client = AIMM(deployment.shm_address)
    client.login(USER, PASSWORD)
    yield client
    client.close()


def workflow(client):
    """create -> fit -> predict with the example linear regression."""
    rng = numpy.random.default_rng(1)
    x = rng.normal(size=(50, 2))
    y = x @ numpy.array([2.0, -1.0]) + 0.5
    model = client.create_instance(LINEAR)
    assert isinstance(model, ModelRef) and model.model_type == LINEAR
    fitted = client.fit(model.instance_id, x, y)
    assert fitted.instance_id == model.instance_id and fitted.version == 2
    prediction = client.predict(model.instance_id, numpy.array([[1.0, 1.0], [0.0, 0.0]]))
    numpy.testing.assert_allclose(prediction, [1.5, 0.5], atol=1e-9)
    return model


def test_create_fit_predict_over_shared_memory(aimm):
    workflow(aimm)


def test_create_fit_predict_over_tcp(deployment):
    with AIMM(deployment.tcp_address) as client:
        client.login(USER, PASSWORD)
        model = workflow(client)
        assert wait_until(lambda: model.instance_id in client.state["models"],
                          message="model pushed to the TCP client")


def test_every_decorator_through_the_services(aimm, tmp_path):
    # instantiate with a state callback, fit with instance_arg_name and a state callback,
    # data access with a state callback, predict changing the instance, serialize/deserialize
    handle = aimm.create_instance(COUNTER, start=1, wait=False)
    model = handle.result(timeout=30)
    assert handle.progress == {"step": "instantiating"}
    fit = aimm.fit(model.instance_id, DataAccess.of("test.array", 4), by=2, wait=False)
    fit.result(timeout=30)
    assert fit.snapshot["data_access_progress"] == {"0": {"fetching": 4}}
    assert aimm.predict(model.instance_id, x=2) == {"count": 9.0, "x": 2, "predictions": 1}
    assert aimm.predict(model.instance_id, x=2)["predictions"] == 2   # the change was kept
    # the @model class: fit returning None keeps the instance fitted in place
    sleeper = aimm.create_instance(SLEEPER)
    aimm.fit(sleeper.instance_id)
    assert aimm.predict(sleeper.instance_id)["fits"] == 1


def test_progress_is_pushed_live_while_a_plugin_runs(aimm, tmp_path):
    model = aimm.create_instance(COUNTER)
    gate = tmp_path / "gate"
    handle = aimm.fit(model.instance_id, gate=str(gate), wait=False)
    wait_until(lambda: (handle.progress or {}).get("step", 0) >= 3, message="progress steps")
    assert handle.status == "running"
    gate.touch()
    assert handle.result(timeout=30).version == 2
    assert handle.status == "done"


def test_state_is_pushed_to_subscribed_clients(deployment, aimm):
    with AIMM(deployment.shm_address) as watcher:
        watcher.login(USER, PASSWORD)
        model = aimm.create_instance(COUNTER)
        wait_until(lambda: model.instance_id in watcher.state["models"],
                   message="model in the other client's state")
        handle = aimm.predict(model.instance_id, x=1, wait=False)
        handle.wait(30)
        wait_until(lambda: watcher.actions.get(handle.id, {}).get("status") == "done",
                   message="action status pushed")
        aimm.remove_instance(model.instance_id)
        wait_until(lambda: model.instance_id not in watcher.state["models"],
                   message="removal pushed")


def test_four_predicts_run_in_parallel(aimm, tmp_path):
    models = [aimm.create_instance(SLEEPER) for _ in range(PLUGIN_WORKERS)]
    # each predict waits inside the plugin until all four are there: only predicts that run
    # at the same time can meet (how long four 1 s predicts take: benchmarks/timing_checks.py)
    handles = [aimm.predict(m.instance_id, meet=str(tmp_path), parties=PLUGIN_WORKERS, wait=False)
               for m in models]
    results = [h.result(timeout=60) for h in handles]
    assert all(r["met"] for r in results), results
    assert len({r["pid"] for r in results}) == PLUGIN_WORKERS


def test_calls_on_one_model_are_serialised_in_order(aimm):
    model = aimm.create_instance(COUNTER)
    slow_fit = aimm.fit(model.instance_id, by=5, delay=0.5, wait=False)
    prediction = aimm.predict(model.instance_id, x=1)
    assert slow_fit.status == "done"
    assert prediction["count"] == 5        # the queued predict saw the fitted instance


def test_cancel_running_action_kills_the_worker(deployment, aimm, tmp_path):
    model = aimm.create_instance(COUNTER)
    # the fit waits for a file that never appears: only the cancel can end it (how soon after
    # the cancel: benchmarks/timing_checks.py)
    handle = aimm.fit(model.instance_id, gate=str(tmp_path / "never"), wait=False)
    wait_until(lambda: handle.progress, message="the fit to run")
    pids_before = set(deployment.plugins.worker_pids())
    handle.cancel()
    with pytest.raises(ActionCancelled):
        handle.result(timeout=30)
    assert handle.status == "cancelled"
    # the killed worker is replaced, and the model was left as it was
    assert deployment.plugins.wait_for_workers(PLUGIN_WORKERS, timeout=30)
    assert set(deployment.plugins.worker_pids()) != pids_before
    assert aimm.model(model.instance_id)["version"] == 1
    assert aimm.predict(model.instance_id, x=1)["count"] == 0


def test_cancel_queued_action_is_immediate(aimm):
    model = aimm.create_instance(SLEEPER)
    running = aimm.predict(model.instance_id, seconds=1.0, wait=False)
    queued = aimm.predict(model.instance_id, seconds=0.0, wait=False)
    snapshot = queued.cancel()
    assert snapshot["status"] == "cancelled"
    with pytest.raises(ActionCancelled):
        queued.result(timeout=5)
    assert running.result(timeout=30)["fits"] == 0


def test_action_timeout_fails_the_action(aimm):
    model = aimm.create_instance(SLEEPER)
    with pytest.raises(ActionTimeout, match="timeout"):
        aimm.predict(model.instance_id, seconds=10.0, action_timeout=0.5)


def test_failed_action_carries_type_message_and_remote_traceback(aimm):
    model = aimm.create_instance(COUNTER)
    with pytest.raises(ActionFailed) as caught:
        aimm.predict(model.instance_id, x="bad", fail=True)
    assert caught.value.error_type == "builtins.ValueError"
    assert "cannot predict with x='bad'" in str(caught.value)
    assert "predict_counter" in caught.value.remote_traceback
    failed = [a for a in aimm.actions.values() if a["status"] == "failed"]
    assert failed and failed[-1]["error"]["message"] == "cannot predict with x='bad'"


def test_unknown_model_id_and_model_type_are_clear_errors(aimm):
    with pytest.raises(UnknownModel, match="no model with instance id 999999"):
        aimm.predict(999999, x=1)
    with pytest.raises(UnknownModelType, match="'no.such.Type'.*known model types"):
        aimm.create_instance("no.such.Type")


def test_data_access_as_keyword_and_positional_argument(aimm):
    model = aimm.create_instance(COUNTER)
    fitted = aimm.fit(model.instance_id, DataAccess.of("test.array", 3),
                      by=DataAccess("test.array", (2,), {"dtype": "int8"}))
    assert fitted.version == 2
    # count = 0 + sum(arange(2)) + sum(arange(3)) = 4; predict with a fetched frame
    frame = aimm.predict(model.instance_id, x=DataAccess.of("test.frame", 3))
    assert list(frame.index) == ["i0", "i1", "i2"] and frame.index.name == "key"
    assert list(frame["a"]) == [0, 4, 8]


def test_numpy_and_pandas_round_trip_with_dtype_and_index(aimm):
    model = aimm.create_instance(COUNTER, start=2)
    array = numpy.arange(6, dtype="int16").reshape(2, 3)
    result = aimm.predict(model.instance_id, x=array)
    assert result.dtype == numpy.int16 and result.shape == (2, 3)
    numpy.testing.assert_array_equal(result, array * 2)
    series = pandas.Series([1.5, 2.5], index=pandas.Index(["a", "b"], name="k"), name="s",
                           dtype="float32")
    pandas.testing.assert_series_equal(aimm.predict(model.instance_id, x=series), series * 2)
    frame = pandas.DataFrame({"v": numpy.array([1, 2], dtype="uint8")},
                             index=pandas.date_range("2024-01-01", periods=2, name="day"))
    pandas.testing.assert_frame_equal(aimm.predict(model.instance_id, x=frame), frame * 2,
                                      check_freq=False)


def test_login_required_wrong_password_refused_and_logout(deployment):
    with AIMM(deployment.shm_address) as client:
        with pytest.raises(NotLoggedIn):
            client.create_instance(COUNTER)
        with pytest.raises(NotLoggedIn):
            client._client.models("forged-token")
        with pytest.raises(LoginFailed):
            client.login(USER, "wrong password")
        client.login(USER, PASSWORD)
        token = client.token
        assert client.models() is not None
        client.logout()
        with pytest.raises(NotLoggedIn):
            client._client.models(token)      # the old token is dead on the server


def test_add_update_and_remove_instance(aimm):
    import aimm_test_plugins
    added = aimm.add_instance(SLEEPER, aimm_test_plugins.Sleeper(fits=5))
    assert aimm.predict(added.instance_id)["fits"] == 5
    updated = aimm.update_instance(SLEEPER, added.instance_id, aimm_test_plugins.Sleeper(fits=7))
    assert updated.version == 2 and aimm.predict(added.instance_id)["fits"] == 7
    with pytest.raises(ActionFailed, match="InvalidInstance"):
        aimm.update_instance(SLEEPER, added.instance_id, b"not a pickle")
    aimm.remove_instance(added.instance_id)
    with pytest.raises(UnknownModel):
        aimm.predict(added.instance_id)
    assert aimm.create_instance(SLEEPER).instance_id > added.instance_id


def test_repl_logs_in_and_runs_commands(deployment):
    import subprocess
    import sys
    script = "\n".join([
        PASSWORD,
        "m = aimm.create_instance('test.Counter', start=5)",
        "print('RESULT', aimm.predict(m.instance_id, x=1)['count'])",
        "print('MODELS', m.instance_id in aimm.state['models'])",
    ]) + "\n"
    done = subprocess.run([sys.executable, "-m", "aimm_services.repl", deployment.shm_address,
                           "--user", USER], input=script, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "RESULT 5" in done.stdout and "MODELS True" in done.stdout


def test_repl_refuses_a_wrong_password(deployment):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "aimm_services.repl", deployment.shm_address,
                           "--user", USER], input="wrong\n", capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "login failed" in done.stderr
