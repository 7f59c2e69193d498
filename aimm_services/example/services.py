"""The AIMM services bound to example/aimm.yaml, for the example .ini:

    [PluginService]
    import_from=aimm_services.example.services

Bind your own deployment the same way: subclass the three services in a module of yours and
set `aimm_config` to your YAML file (or leave it unset and export AIMM_CONFIG).
"""
from pathlib import Path

from aimm_services.backend_service import BackendService as _BackendService
from aimm_services.engine_service import EngineService as _EngineService
from aimm_services.plugin_service import PluginService as _PluginService

EXAMPLE_CONFIG = str(Path(__file__).with_name("aimm.yaml"))


class PluginService(_PluginService):
    aimm_config = EXAMPLE_CONFIG


class BackendService(_BackendService):
    aimm_config = EXAMPLE_CONFIG


class EngineService(_EngineService):
    aimm_config = EXAMPLE_CONFIG
