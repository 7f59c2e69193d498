"""The JSON control: seed 002's actions and JSON representations, over TCP."""
import base64
import json

import pytest

from aimm_deployment import PASSWORD, USER, deploy, write_config
from aimm_services.errors import NotLoggedIn
from speedysvc import connect

COUNTER = "test.Counter"


@pytest.fixture(scope="module")
def json_client(tmp_path_factory):
    from speedysvc.serve import new_scope
    config = write_config(tmp_path_factory.mktemp("aimm_json"))
    with deploy(config, tcp=True, json_control=True, scope=new_scope()) as running:
        client = connect("aimm_json", running.json.tcp_address)
        yield client
        client.close()


def as_json(value):
    """What a JSON client would see (and proves the value is plain JSON)."""
    return json.loads(json.dumps(value))


def test_seed_002_workflow_with_json_representations(json_client):
    token = json_client.login(USER, PASSWORD)["token"]
    model = as_json(json_client.create_instance(token, COUNTER, [], {"start": 2}))
    assert set(model) == {"instance_id", "model_type", "instance"}
    assert json.loads(base64.b64decode(model["instance"]))["count"] == 2
    fitted = json_client.fit(token, model["instance_id"], [
        {"type": "data_access", "name": "test.array", "args": [3], "kwargs": {}}],
        {"by": {"type": "numpy_array", "data": [1, 1], "dtype": "int8"}})
    assert json.loads(base64.b64decode(fitted["instance"]))["count"] == 7   # 2 + 2 + 0+1+2
    prediction = as_json(json_client.predict(token, model["instance_id"], [], {
        "x": {"type": "numpy_array", "data": [[1, 2]], "dtype": "int16"}}))
    assert prediction == {"type": "numpy_array", "dtype": "int16", "data": [[7, 14]]}
    frame = as_json(json_client.predict(token, model["instance_id"], [], {
        "x": {"type": "pandas_dataframe", "data": {"a": {"r": 1.5}}}}))
    assert frame == {"type": "pandas_dataframe", "data": {"a": {"r": 10.5}}}
    series = as_json(json_client.predict(token, model["instance_id"], [], {
        "x": {"type": "pandas_series", "data": [1, 2]}}))
    assert series == {"type": "pandas_series", "data": [7, 14]}
    state = as_json(json_client.state(token))
    entry = state["models"][str(model["instance_id"])]
    assert entry["type"] == COUNTER and entry["id"] == model["instance_id"]
    assert base64.b64decode(entry["instance"])
    assert any(a["operation"] == "predict" for a in state["actions"].values())


def test_add_instance_from_base64_and_start_without_waiting(json_client):
    token = json_client.login(USER, PASSWORD)["token"]
    instance = base64.b64encode(b'{"count": 3, "predictions": 0}').decode()
    model = json_client.add_instance(token, COUNTER, instance)
    started = json_client.predict(token, model["instance_id"], [], {"x": 1}, wait=False)
    result = json_client.result(token, started["action_id"], 30)
    assert result == {"count": 3, "x": 1, "predictions": 1}


def test_json_control_requires_login(json_client):
    with pytest.raises(NotLoggedIn):
        json_client.state("no-such-token")
    token = json_client.login(USER, PASSWORD)["token"]
    json_client.logout(token)
    with pytest.raises(NotLoggedIn):
        json_client.create_instance(token, COUNTER, [], {})
