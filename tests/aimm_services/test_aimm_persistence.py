"""Models outlive the services: restart, a SIGKILLed supervisor, AIMM's own configuration."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from aimm_services.backends import SQLiteStore
from aimm_services.client import AIMM
from aimm_deployment import PASSWORD, USER, deploy, write_config
from speedysvc import naming

COUNTER = "test.Counter"
HERE = Path(__file__).resolve().parent


def test_model_created_before_a_restart_is_fitted_and_used_after_it(tmp_path, scope):
    config = write_config(tmp_path)
    with deploy(config, scope=scope) as first:
        with AIMM(first.shm_address) as client:
            client.login(USER, PASSWORD)
            model = client.create_instance(COUNTER, start=10)
            client.fit(model.instance_id, by=1)
            removed = client.create_instance(COUNTER)
            client.remove_instance(removed.instance_id)
    with deploy(config, scope=scope) as second:
        with AIMM(second.shm_address) as client:
            client.login(USER, PASSWORD)
            assert set(client.state["models"]) == {model.instance_id}
            assert client.fit(model.instance_id, by=2).version == 3
            assert client.predict(model.instance_id, x=1)["count"] == 13
            # ids are never reused, not even the removed newest one
            assert client.create_instance(COUNTER).instance_id == removed.instance_id + 1


SUPERVISOR_SCRIPT = """
import sys, time
from pathlib import Path
sys.path[:0] = [{here!r}, {repo!r}]
from aimm_deployment import deploy, USER, PASSWORD
from aimm_services.client import AIMM
with deploy(Path({config!r}), plugin_workers=1, scope={scope!r}) as running:
    client = AIMM(running.shm_address)
    client.login(USER, PASSWORD)
    model = client.create_instance("test.Counter", start=7)
    client.fit(model.instance_id, by=3)
    pids = running.plugins.worker_pids() + running.backend.worker_pids() \\
        + running.engine.worker_pids()
    print(model.instance_id, *pids, flush=True)
    time.sleep(600)
"""


def test_no_model_lost_when_the_supervisor_is_killed_after_a_call_returned(tmp_path, scope):
    config = write_config(tmp_path)
    script = SUPERVISOR_SCRIPT.format(here=str(HERE), repo=str(HERE.parent.parent),
                                      config=str(config), scope=scope)
    supervisor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  text=True, env={**os.environ, "AIMM_CONFIG": str(config)})
    try:
        line = supervisor.stdout.readline()
        assert line, "the supervisor script exited before creating a model"
        instance_id, *worker_pids = map(int, line.split())
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(30)
        deadline = time.monotonic() + 30
        while any(naming.pid_alive(p) for p in worker_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(naming.pid_alive(p) for p in worker_pids), "workers outlived SIGKILL"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        naming.sweep(scope)    # what the next supervisor start does after a crash
    store = SQLiteStore(tmp_path / "logs" / "aimm.db")
    (model,) = store.all()
    store.close()
    assert model.instance_id == instance_id and model.version == 2
    assert json.loads(model.instance)["count"] == 10


def test_an_existing_aimm_configuration_runs_unchanged(tmp_path, scope):
    # AIMM's examples/0001 layout: no name, a list of controls, an unsalted SHA-256 user
    aimm_yaml = {
        "log": {"disable_existing_loggers": False, "formatters": {"default": {}},
                "handlers": {"console": {"class": "logging.StreamHandler", "level": "INFO",
                                         "stream": "ext://sys.stdout"}},
                "root": {"handlers": ["console"], "level": "INFO"}, "version": 1},
        "engine": {"sigterm_timeout": 5, "max_children": 2, "check_children_period": 3},
        "backend": {"module": "aimm.server.backend.sqlite", "path": "./data/aimm.db"},
        "control": [{"module": "aimm.server.control.repl",
                     "server": {"host": "127.0.0.1", "port": 9999},
                     "users": [{"username": "user",
                                "password": hashlib.sha256(b"old secret").hexdigest()}]}],
        "plugins": {"names": ["aimm_test_plugins"]},
    }
    config = tmp_path / "aimm.yaml"
    config.write_text(yaml.safe_dump(aimm_yaml))
    with deploy(config, scope=scope) as running:
        with AIMM(running.shm_address) as client:
            client.login("user", "old secret")
            model = client.create_instance(COUNTER, start=1)
            assert client.predict(model.instance_id, x=2)["count"] == 1
    assert (tmp_path / "data" / "aimm.db").exists()


def test_services_leave_no_shared_memory_behind(tmp_path, scope):
    config = write_config(tmp_path, backend="memory")
    with deploy(config, scope=scope) as running:
        with AIMM(running.shm_address) as client:
            client.login(USER, PASSWORD)
            client.create_instance(COUNTER)
        scope = running.scope
    assert naming.list_objects(scope) == []
