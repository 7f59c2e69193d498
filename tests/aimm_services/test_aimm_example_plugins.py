"""The example plugins (numpy linear regression, optional scikit-learn) and their YAML."""
import importlib
import sys
from pathlib import Path

import numpy
import pandas

from aimm_services import plugin_execution, plugins, wire_values
from aimm_services.config import load_config

LINEAR = "aimm_services.example.linear_plugins.LinearRegression"


def fresh(module_name):
    sys.modules.pop(module_name, None)
    return importlib.import_module(module_name)


def run(kind, key, instance=None, *args, **kwargs):
    return plugin_execution.execute(kind, key, instance, [wire_values.encode(a) for a in args],
                                    {k: wire_values.encode(v) for k, v in kwargs.items()},
                                    lambda state: None)


def test_linear_regression_fits_predicts_and_survives_serialization(clean_registry):
    fresh("aimm_services.example.linear_plugins")
    x = numpy.random.default_rng(0).normal(size=(40, 2))
    y = x @ numpy.array([3.0, -2.0]) + 1.0
    created = run("instantiate", LINEAR)
    fitted = run("fit", LINEAR, created["instance"], x, y)
    frame = pandas.DataFrame([[1.0, 1.0], [0.0, 0.0]], index=["a", "b"])
    reply = run("predict", LINEAR, fitted["instance"], frame)
    prediction = wire_values.decode(reply["result"])
    assert list(prediction.index) == ["a", "b"]
    numpy.testing.assert_allclose(prediction.to_numpy(), [2.0, 1.0], atol=1e-9)
    assert reply["instance"] is not None      # the prediction counter changed and is kept


def test_synthetic_data_access(clean_registry):
    fresh("aimm_services.example.linear_plugins")
    data = plugins.exec_data_access("example.synthetic", None, rows=5, features=3)
    assert data["x"].shape == (5, 3) and data["y"].shape == (5,)


def test_example_configuration_is_valid():
    import aimm_services.example.services as services
    config = load_config(services.EXAMPLE_CONFIG)
    assert config.plugin_modules == ("aimm_services.example.linear_plugins",)
    # the SQLite file lives under example.ini's log_dir
    assert config.backend.kind == "sqlite" and str(config.backend.path).startswith("/tmp/speedysvc_example_logs/")
    assert Path(services.EXAMPLE_CONFIG).exists()


def test_sklearn_wrappers(clean_registry):
    import sklearn  # noqa: F401 - in the test extra: this test runs, it does not skip
    fresh("aimm_services.example.sklearn_plugins")
    model_type = "sklearn.linear_model.Ridge"
    created = run("instantiate", model_type, None, alpha=0.0)
    x = numpy.arange(10.0).reshape(-1, 1)
    fitted = run("fit", model_type, created["instance"], x, 2 * x.ravel())
    reply = run("predict", model_type, fitted["instance"], numpy.array([[20.0]]))
    numpy.testing.assert_allclose(wire_values.decode(reply["result"]), [40.0])
