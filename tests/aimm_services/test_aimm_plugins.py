"""The plugin decorators, the Model class decorator, registration clashes, plugin execution."""
import pytest

from aimm_services import plugin_execution, plugins, wire_values
from aimm_services.errors import (DuplicatePluginError, InvalidInstance, PluginContractError,
                                  PluginLoadError, UnknownDataAccess, UnknownModelType)


def test_instantiate_passes_state_callback_under_its_name(clean_registry):
    seen = []

    @plugins.instantiate("t.A", state_cb_arg_name="progress")
    def create(size, progress, scale=1):
        progress({"created": size})
        return {"size": size * scale}

    assert plugins.exec_instantiate("t.A", seen.append, 3, scale=2) == {"size": 6}
    assert seen == [{"created": 3}]


def test_decorators_return_the_function_unchanged(clean_registry):
    def f(x):
        return x
    assert plugins.data_access("d")(f) is f
    assert plugins.fit(["t"])(f) is f


def test_data_access_positional_and_keyword(clean_registry):
    @plugins.data_access("numbers", state_cb_arg_name="cb")
    def numbers(start, stop, cb, step=1):
        cb("reading")
        return list(range(start, stop, step))

    states = []
    assert plugins.exec_data_access("numbers", states.append, 0, 6, step=2) == [0, 2, 4]
    assert states == ["reading"]


def test_fit_instance_first_positional_by_default(clean_registry):
    @plugins.fit(["t.A", "t.B"])
    def fit(instance, amount):
        return instance + amount

    assert plugins.exec_fit("t.A", 10, None, 5) == 15
    assert plugins.exec_fit("t.B", 1, None, amount=1) == 2


def test_fit_and_predict_instance_arg_name(clean_registry):
    @plugins.fit(["t.A"], instance_arg_name="model", state_cb_arg_name="cb")
    def fit(data, model, cb):
        cb(len(data))
        return model + sum(data)

    @plugins.predict(["t.A"], instance_arg_name="model")
    def predict(x, model):
        return model * x

    states = []
    assert plugins.exec_fit("t.A", 1, states.append, [1, 2]) == 4
    assert states == [2]
    assert plugins.exec_predict("t.A", 4, None, 3) == 12


def test_fit_returning_none_is_a_clear_error(clean_registry):
    @plugins.fit("t.A")
    def fit(instance):
        instance.append(1)

    with pytest.raises(PluginContractError, match="returned None"):
        plugins.exec_fit("t.A", [])


def test_serialize_must_return_bytes(clean_registry):
    @plugins.serialize(["t.A"])
    def ser(instance):
        return "text"

    @plugins.deserialize(["t.A"])
    def de(data):
        return data.decode()

    with pytest.raises(PluginContractError, match="must return bytes"):
        plugins.exec_serialize("t.A", "x")
    assert plugins.exec_deserialize("t.A", b"abc") == "abc"


def test_model_class_registers_all_kinds_under_module_and_class_name(test_plugins):
    model_type = test_plugins.SLEEPER
    assert model_type == "aimm_test_plugins.Sleeper"
    keys = plugins.default_registry.keys()
    for kind in ("instantiate", "fit", "predict", "serialize", "deserialize"):
        assert model_type in keys[kind]
    instance = plugins.exec_instantiate(model_type, None, fits=2)
    fitted = plugins.exec_fit(model_type, instance)
    assert fitted is instance and fitted.fits == 3     # fit returning None keeps self
    data = plugins.exec_serialize(model_type, fitted)
    assert plugins.exec_deserialize(model_type, data).fits == 3


def test_same_key_twice_names_both_places(clean_registry):
    @plugins.predict(["t.A"])
    def first(instance):
        return 1

    with pytest.raises(DuplicatePluginError) as caught:
        @plugins.predict(["t.A"])
        def second(instance):
            return 2
    message = str(caught.value)
    assert "first" in message and "second" in message and "test_aimm_plugins.py" in message
    assert "'t.A'" in message


def test_unknown_keys_give_clear_errors(clean_registry):
    with pytest.raises(UnknownModelType, match="no fit plugin for model type 'nope'"):
        plugins.exec_fit("nope", None)
    with pytest.raises(UnknownDataAccess, match="no data access plugin named 'x'"):
        plugins.exec_data_access("x")


def test_load_plugins_by_module_name(clean_registry):
    import sys
    sys.modules.pop("aimm_test_plugins", None)
    plugins.load_plugins(["aimm_test_plugins"])
    assert "test.Counter" in plugins.default_registry.keys()["instantiate"]
    with pytest.raises(PluginLoadError, match="no_such_plugin_module"):
        plugins.load_plugins(["no_such_plugin_module"])


def test_execute_predict_reports_changed_instance(test_plugins):
    created = plugin_execution.execute("instantiate", "test.Counter", None, [], {"start": 2},
                                       lambda s: None)
    reply = plugin_execution.execute("predict", "test.Counter", created["instance"],
                                     [wire_values.encode(5)], {}, lambda s: None)
    assert wire_values.decode(reply["result"]) == {"count": 2, "x": 5, "predictions": 1}
    assert reply["instance"] is not None and reply["instance"] != created["instance"]


def test_execute_check_rejects_bad_instance(test_plugins):
    with pytest.raises(InvalidInstance, match="could not be deserialized"):
        plugin_execution.execute("check", "test.Counter", b"not json", [], {}, lambda s: None)
