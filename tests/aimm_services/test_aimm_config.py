"""The AIMM YAML configuration: AIMM's own files load; mistakes are reported precisely."""
import textwrap

import pytest

from aimm_services.config import load_config
from aimm_services.errors import ConfigError
from aimm_services.passwords import hash_password

# examples/0001/aimm.yaml of the published AIMM (no 'name', list of controls, sha256 user)
AIMM_EXAMPLE = """\
---
log:
    disable_existing_loggers: false
    formatters:
        default: {}
    handlers:
        console:
            class : logging.StreamHandler
            level   : INFO
            stream  : ext://sys.stdout
    root:
        handlers:
        - console
        level: INFO
    version: 1
engine:
    sigterm_timeout: 5
    max_children: 5
    check_children_period: 3
backend:
    module: aimm.server.backend.sqlite
    path: ./data/aimm.db
control:
  - module: aimm.server.control.repl
    server:
        host: 127.0.0.1
        port: 9999
    users:
        - username: user
          password: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
plugins:
    names:
        - 'plugins.sklearn'
...
"""


def write(tmp_path, text, name="aimm.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_existing_aimm_configuration_loads(tmp_path):
    config = load_config(write(tmp_path, AIMM_EXAMPLE))
    assert config.name == "aimm"
    assert config.engine.max_children == 5
    assert config.backend.kind == "sqlite"
    assert config.backend.path == (tmp_path / "data" / "aimm.db").resolve()
    assert config.controls[0].host == "127.0.0.1" and config.controls[0].port == 9999
    assert set(config.users) == {"user"}
    assert config.plugin_modules == ("plugins.sklearn",)


def test_dummy_backend_is_the_memory_store(tmp_path):
    text = AIMM_EXAMPLE.replace("module: aimm.server.backend.sqlite",
                                "module: aimm.server.backend.dummy")
    assert load_config(write(tmp_path, text)).backend.kind == "memory"


def test_config_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("AIMM_CONFIG", str(write(tmp_path, AIMM_EXAMPLE)))
    assert load_config().engine.max_children == 5


def test_all_problems_reported_with_file_path_expected_and_found(tmp_path):
    path = write(tmp_path, """\
        name: x
        engine: {max_children: many, sigterm_timeout: 5, check_children_period: 3, poll: 1}
        backend: {module: aimm.server.backend.sqlite}
        control:
          - module: aimm.server.control.event
          - module: aimm.server.control.repl
            server: {host: 127.0.0.1, port: 99999}
            users: [{username: u, password: plaintext-secret}]
        plugin: {names: [a]}
        log: {}
        """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    for expected in (
            f"{path}: engine.max_children: expected a number >= 1, found str 'many'",
            f"{path}: engine.poll: unknown key",
            f"{path}: backend.path: expected a file path for the SQLite database, found nothing",
            # the event control needs the hat section
            f"{path}: control[0].module: expected a module that needs no Hat connection",
            f"{path}: control[1].server.port: expected a port number 0-65535, found int 99999",
            f"{path}: control[1].users[0].password: expected 'scrypt-sha256$...'",
            f"{path}: plugin: unknown key (did you mean 'plugins'?)",
            f"{path}: plugins: expected a mapping"):
        assert expected in message, (expected, message)
    assert "plaintext-secret" not in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "engine: [\n"))


def test_no_configuration_given(monkeypatch):
    monkeypatch.delenv("AIMM_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="AIMM_CONFIG"):
        load_config()


def test_salted_hash_accepted(tmp_path):
    text = AIMM_EXAMPLE.replace(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        f'"{hash_password("pw")}"')
    assert load_config(write(tmp_path, text)).users["user"].startswith("scrypt-sha256$")
