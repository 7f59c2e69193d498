"""The REPL's documented example works: `DataAccess.of(...)["x"]` used to raise TypeError
(a NamedTuple indexed with a str); now it stands for item "x" of the data access result."""
import numpy
import pytest

from aimm_deployment import PASSWORD, USER, deploy, write_config
from aimm_services import repl
from aimm_services.client import AIMM, DataAccess

LINEAR = "aimm_services.example.linear_plugins.LinearRegression"


def test_item_of_a_data_access_is_a_data_access():
    data = DataAccess.of("example.synthetic", rows=200)
    item = data["x"]
    assert isinstance(item, DataAccess) and item.args == (data, "x")
    assert data[0] == "example.synthetic" and data.name == "example.synthetic"   # tuple indexes


def test_documented_repl_example_fits_and_predicts(tmp_path, scope):
    assert 'data["x"], data["y"]' in repl.__doc__
    config = write_config(tmp_path, plugins=("aimm_services.example.linear_plugins",))
    with deploy(config, scope=scope) as deployment:
        aimm = AIMM(deployment.shm_address)
        try:
            aimm.login(USER, PASSWORD)
            m = aimm.create_instance(LINEAR)
            data = DataAccess.of("example.synthetic", rows=200)
            aimm.fit(m.instance_id, data["x"], data["y"])
            h = aimm.predict(m.instance_id, numpy.ones((3, 2)), wait=False)
            # synthetic data: y = x @ [1, 2] + 0.5
            numpy.testing.assert_allclose(h.result(timeout=60), [3.5, 3.5, 3.5], atol=1e-9)
            with pytest.raises(Exception, match="has no item 'nope'"):
                aimm.fit(m.instance_id, data["nope"], data["y"])
        finally:
            aimm.close()
