"""The `hat` section and the Hat-aware backend/control entries of the AIMM YAML: what is
accepted, what is refused (naming the key), and the processes aimm-server runs for them."""
import textwrap
from pathlib import Path

import pytest

from aimm_services.config import load_config
from aimm_services.errors import ConfigError
from aimm_services.server import supervisor_ini

BASE = """\
    name: h
    engine: {max_children: 1}
    plugins: {names: []}
    log: {}
"""
EVENT_BACKEND = "backend: {module: aimm.server.backend.event, model_prefix: [aimm, model]}\n"
EVENT_CONTROL = """\
control:
  - module: aimm.server.control.event
    event_prefixes: {create_instance: [aimm, create], fit: [aimm, fit]}
    state_event_type: [aimm, state]
    action_state_event_type: [aimm, action_state]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aimm.yaml"
    path.write_text(textwrap.dedent(BASE) + text)
    return path


def test_monitor_component_with_event_backend_and_control(tmp_path):
    config = load_config(write(tmp_path, EVENT_BACKEND + EVENT_CONTROL + """\
hat: {monitor_component: {host: 127.0.0.1, port: 23010, group: aimm,
                          event_server_group: event}}
"""))
    assert config.hat.describe() == \
        "monitor 127.0.0.1:23010 group 'aimm', event server group 'event'"
    assert config.backend.kind == "hat" and config.controls == ()
    assert [c.module for c in config.hat_controls] == ["aimm.server.control.event"]
    ini = supervisor_ini(config, "scope", tmp_path, None)
    assert "[BackendService]" not in ini and "[EngineService]" in ini


def test_eventer_server_and_a_custom_module_with_get_subscriptions(tmp_path):
    config = load_config(write(tmp_path, """\
backend: {module: aimm.server.backend.dummy}
control: [{module: aimm_hat_custom_control}]
hat: {eventer_server: {host: 127.0.0.1, port: 23012}}
"""))
    assert config.hat.describe() == "event server 127.0.0.1:23012"
    assert config.hat_controls[0].module == "aimm_hat_custom_control"


def test_problems_name_the_key(tmp_path):
    path = write(tmp_path, """\
backend: {module: aimm.server.backend.event}
control:
  - module: aimm.server.control.event
    event_prefixes: {create_instance: aimm, train: [aimm, train]}
    state_event_type: [aimm, state]
hat: {monitor_component: {port: 99999, event_server_group: 7}}
""")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    for expected in (
            f"{path}: backend.model_prefix: expected a list of strings",
            f"{path}: control[0].event_prefixes.create_instance: expected a list of strings",
            f"{path}: control[0].event_prefixes.train: expected one of create_instance",
            f"{path}: control[0].action_state_event_type: expected an event type",
            f"{path}: hat.monitor_component.port: expected a port number 1-65535",
            f"{path}: hat.monitor_component.group: expected the monitor group name",
            f"{path}: hat.monitor_component.event_server_group: expected the monitor group"):
        assert expected in message, (expected, message)


def test_hat_modules_without_a_hat_section_are_refused(tmp_path):
    path = write(tmp_path, EVENT_BACKEND + EVENT_CONTROL)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{path}: backend.module: expected a module that needs no Hat connection" in message
    assert f"{path}: control[0].module: expected a module that needs no Hat connection" in message
    assert "add a 'hat' section" in message


def test_hat_section_needs_one_known_entry(tmp_path):
    path = write(tmp_path, "backend: {module: aimm.server.backend.dummy}\ncontrol: []\n"
                           "hat: {monitor: {host: x}}\n")
    with pytest.raises(ConfigError, match="hat: expected a mapping with exactly one of "
                                          "monitor_component"):
        load_config(path)


def test_custom_modules_next_to_the_yaml_and_their_import_errors(tmp_path):
    (tmp_path / "my_hat_control.py").write_text(
        "def get_subscriptions(conf):\n    return [('x', '*')]\n"
        "def create(conf, engine, event_client):\n    return None\n")
    (tmp_path / "my_broken_control.py").write_text("import no_such_dependency_here\n")
    hat = "hat: {eventer_server: {port: 23012}}\n"
    config = load_config(write(tmp_path, "backend: {module: aimm.server.backend.dummy}\n"
                                         "control: [{module: my_hat_control}]\n" + hat))
    assert [c.module for c in config.hat_controls] == ["my_hat_control"]
    path = write(tmp_path, "backend: {module: aimm.server.backend.dummy}\n"
                           "control: [{module: my_broken_control}]\n" + hat)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (f"{path}: control[0].module: expected an importable module (my_broken_control "
            f"fails to import), found str \"No module named 'no_such_dependency_here'\"") \
        in str(caught.value)
