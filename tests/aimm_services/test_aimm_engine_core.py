"""The engine's scheduling, actions, cancel and timeouts, with plugins run in threads."""

import numpy
import pytest

from aimm_services import wire_values
from aimm_services.backends import MemoryStore
from aimm_services.data_access import DataAccess
from aimm_services.engine.core import Engine
from aimm_services.errors import UnknownAction, UnknownModel, UnknownModelType
from aimm_fake_runner import ThreadRunner
import waiting

COUNTER = "test.Counter"



def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message=None):
    """waiting.wait_until with this suite's default deadline."""
    return waiting.wait_until(predicate, timeout, interval, message)

@pytest.fixture
def engine_parts(test_plugins):
    events = []
    runner = ThreadRunner(test_plugins and __import__("aimm_services").plugins.default_registry)
    store = MemoryStore()
    engine = Engine(runner, store, max_parallel=2, publish=lambda t, p: events.append((t, p)))
    return engine, runner, store, events


def finished(engine, snapshot, timeout=10):
    return engine.wait(snapshot["action_id"], timeout)


def enc(*args, **kwargs):
    return [wire_values.encode(a) for a in args], {k: wire_values.encode(v)
                                                   for k, v in kwargs.items()}


def create_counter(engine, start=0):
    action = finished(engine, engine.create_instance(COUNTER, [], {"start": start}))
    assert action["status"] == "done", action
    return engine.outcome(action["action_id"])["result"]["instance_id"]


def test_create_fit_predict_workflow(engine_parts):
    engine, _runner, store, events = engine_parts
    model_id = create_counter(engine, start=1)
    fit = finished(engine, engine.fit(model_id, *enc(10, by=2)))
    assert fit["status"] == "done" and fit["progress"] is None
    predict = finished(engine, engine.predict(model_id, *enc(x=3)))
    result = wire_values.decode(engine.outcome(predict["action_id"])["result"])
    assert result == {"count": 13.0, "x": 3, "predictions": 1}
    assert store.get(model_id).version == 3          # created, fitted, changed by predict
    assert [t for t, _ in events].count("model") == 3
    statuses = [p["status"] for t, p in events if t == "action" and p["action_id"] == 1]
    assert statuses[0] == "queued" and statuses[-1] == "done" and "running" in statuses


def test_unknown_model_and_model_type_are_refused_at_once(engine_parts):
    engine = engine_parts[0]
    with pytest.raises(UnknownModelType, match="'no.Such'.*known model types"):
        engine.create_instance("no.Such", [], {})
    with pytest.raises(UnknownModel, match="no model with instance id 42"):
        engine.fit(42, [], {})
    with pytest.raises(UnknownAction):
        engine.cancel(999)


def test_failed_action_carries_type_message_and_traceback(engine_parts):
    engine = engine_parts[0]
    model_id = create_counter(engine)
    action = finished(engine, engine.predict(model_id, *enc(x="bad", fail=True)))
    assert action["status"] == "failed"
    assert action["error"]["type"] == "builtins.ValueError"
    assert action["error"]["message"] == "cannot predict with x='bad'"
    assert "predict_counter" in action["error"]["traceback"]


def test_actions_on_one_model_run_in_submission_order(engine_parts):
    engine = engine_parts[0]
    model_id = create_counter(engine)
    slow_fit = engine.fit(model_id, *enc(delay=0.3, by=5))
    predict = engine.predict(model_id, *enc(x=1))
    result = finished(engine, predict)
    assert result["status"] == "done"
    assert engine.action(slow_fit["action_id"])["status"] == "done"
    # the predict saw the instance the queued fit produced, not the stale one
    assert wire_values.decode(engine.outcome(predict["action_id"])["result"])["count"] == 5


def test_data_access_positional_and_keyword_fetched_in_parallel(engine_parts):
    engine, runner, _store, _events = engine_parts
    model_id = create_counter(engine)
    action = finished(engine, engine.fit(
        model_id, *enc(DataAccess("test.array", (3,), {"delay": 0.4}),
                       by=DataAccess.of("test.array", 1, delay=0.4, dtype="int8"))))
    assert action["status"] == "done", action
    assert action["data_access_progress"] == {"0": {"fetching": 3}, "by": {"fetching": 1}}
    # fit adds by (=array([0]) -> 0) and sum(arange(3)) = 3
    assert engine.model(model_id)["version"] == 2
    assert runner.max_concurrent == 2    # both fetches ran side by side, not one after another


def test_parallel_predicts_on_different_models(engine_parts):
    engine, runner, _store, _events = engine_parts
    ids = [create_counter(engine) for _ in range(2)]
    actions = [engine.predict(i, *enc(delay=0.3)) for i in ids]
    for action in actions:
        assert finished(engine, action)["status"] == "done"
    assert runner.max_concurrent == 2


def test_cancel_queued_action_is_immediate(engine_parts):
    engine = engine_parts[0]
    model_id = create_counter(engine)
    running = engine.fit(model_id, *enc(delay=0.5))
    queued = engine.predict(model_id, *enc())
    snapshot = engine.cancel(queued["action_id"])
    assert snapshot["status"] == "cancelled"
    assert finished(engine, running)["status"] == "done"
    assert engine.action(queued["action_id"])["status"] == "cancelled"


def test_cancel_running_action_kills_its_call_and_keeps_the_model(engine_parts, tmp_path):
    engine, _runner, store, _events = engine_parts
    model_id = create_counter(engine)
    gate = tmp_path / "never"
    action = engine.fit(model_id, *enc(gate=str(gate)))
    wait_until(lambda: engine.action(action["action_id"])["progress"] is not None,
               message="fit progress")
    engine.cancel(action["action_id"])
    assert finished(engine, action, timeout=2)["status"] == "cancelled"
    assert store.get(model_id).version == 1
    # the model is free again for the next action
    assert finished(engine, engine.predict(model_id, *enc()))["status"] == "done"


def test_progress_is_visible_while_running(engine_parts, tmp_path):
    engine = engine_parts[0]
    model_id = create_counter(engine)
    gate = tmp_path / "gate"
    action = engine.fit(model_id, *enc(gate=str(gate)))
    wait_until(lambda: (engine.action(action["action_id"])["progress"] or {}).get("step", 0) >= 3,
               message="three progress steps")
    assert engine.action(action["action_id"])["status"] == "running"
    gate.touch()
    assert finished(engine, action)["status"] == "done"


def test_timeout_fails_the_action_with_action_timeout(engine_parts):
    engine = engine_parts[0]
    model_id = create_counter(engine)
    action = finished(engine, engine.predict(model_id, *enc(delay=5), timeout=0.2), timeout=3)
    assert action["status"] == "failed"
    assert action["error"]["type"].endswith("ActionTimeout")


def test_remove_instance_waits_its_turn_and_later_actions_fail(engine_parts):
    engine, _runner, store, _events = engine_parts
    model_id = create_counter(engine)
    fit = engine.fit(model_id, *enc(delay=0.2))
    remove = engine.remove_instance(model_id)
    assert finished(engine, fit)["status"] == "done"
    assert finished(engine, remove)["status"] == "done"
    with pytest.raises(UnknownModel):
        store.get(model_id)
    with pytest.raises(UnknownModel):
        engine.predict(model_id, [], {})


def test_add_and_update_instance_validate_bytes(engine_parts):
    engine = engine_parts[0]
    added = finished(engine, engine.add_instance(COUNTER, b'{"count": 4, "predictions": 0}'))
    model_id = engine.outcome(added["action_id"])["result"]["instance_id"]
    bad = finished(engine, engine.update_instance(model_id, COUNTER, b"garbage"))
    assert bad["status"] == "failed" and bad["error"]["type"].endswith("InvalidInstance")
    good = finished(engine, engine.update_instance(model_id, COUNTER,
                                                   b'{"count": 9, "predictions": 0}'))
    assert good["status"] == "done"
    result = finished(engine, engine.predict(model_id, *enc(x=numpy.arange(2))))
    numpy.testing.assert_array_equal(
        wire_values.decode(engine.outcome(result["action_id"])["result"]), [0, 9])


def test_models_survive_an_engine_restart_on_the_same_store(engine_parts, test_plugins):
    engine, runner, store, _events = engine_parts
    model_id = create_counter(engine, start=2)
    engine2 = Engine(runner, store, max_parallel=2)
    assert [m["instance_id"] for m in engine2.models()] == [model_id]
    assert finished(engine2, engine2.fit(model_id, *enc(by=1)))["status"] == "done"
