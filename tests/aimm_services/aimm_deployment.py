"""Start the three AIMM services with speedysvc.serve() in one scope, as a supervisor would."""
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml
from speedysvc import serve
from speedysvc.serve import new_scope

from aimm_services.backend_service import BackendService
from aimm_services.engine_service import EngineService
from aimm_services.json_control_service import JSONControlService
from aimm_services.passwords import hash_password
from aimm_services.plugin_service import PluginService

USER, PASSWORD = "tester", "correct horse"
START_TIMEOUT = 30.0
_HASH = hash_password(PASSWORD)


def write_config(directory: Path, *, max_children: int = 2, backend: str = "sqlite",
                 plugins=("aimm_test_plugins",), engine_extra: Optional[dict] = None) -> Path:
    """An AIMM YAML for the tests (SQLite under directory/logs unless backend="memory")."""
    directory.mkdir(parents=True, exist_ok=True)
    backend_conf = ({"module": "aimm.server.backend.sqlite", "path": "logs/aimm.db"}
                    if backend == "sqlite" else {"module": "aimm.server.backend.dummy"})
    data = {
        "name": "test-aimm",
        "engine": {"max_children": max_children, "sigterm_timeout": 5,
                   "check_children_period": 3, **(engine_extra or {})},
        "backend": backend_conf,
        "control": [{"module": "aimm.server.control.repl",
                     "server": {"host": "127.0.0.1", "port": 0},
                     "users": [{"username": USER, "password": _HASH}]}],
        "plugins": {"names": list(plugins)},
        "log": {"version": 1},
    }
    path = directory / "aimm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Deployment:
    scope: str
    config: Path
    plugins: object
    backend: object
    engine: object
    json: Optional[object] = None

    @property
    def shm_address(self) -> str:
        return f"shm://{self.scope}"

    @property
    def tcp_address(self) -> Optional[str]:
        return self.engine.tcp_address


@contextlib.contextmanager
def deploy(config: Path, *, plugin_workers: int = 2, tcp: bool = False,
           scope: Optional[str] = None, json_control: bool = False):
    """The plugin pool, the backend and the engine, started in that order."""
    previous = os.environ.get("AIMM_CONFIG")
    os.environ["AIMM_CONFIG"] = str(config)     # the workers inherit it
    scope = scope or new_scope()
    try:
        with serve(PluginService, workers=plugin_workers, scope=scope,
                      start_timeout=START_TIMEOUT) as plugins, \
                serve(BackendService, workers=1, scope=scope,
                      start_timeout=START_TIMEOUT) as backend, \
                serve(EngineService, workers=1, scope=scope,
                      tcp="127.0.0.1:0" if tcp else None,
                      start_timeout=START_TIMEOUT) as engine:
            if not json_control:
                yield Deployment(scope, config, plugins, backend, engine)
                return
            with serve(JSONControlService, workers=2, scope=scope,
                       tcp="127.0.0.1:0" if tcp else None,
                       start_timeout=START_TIMEOUT) as json_service:
                yield Deployment(scope, config, plugins, backend, engine, json_service)
    finally:
        if previous is None:
            os.environ.pop("AIMM_CONFIG", None)
        else:
            os.environ["AIMM_CONFIG"] = previous
