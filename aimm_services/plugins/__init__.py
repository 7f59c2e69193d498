"""AIMM-compatible plugin API: decorators, the Model base class, and plugin execution.

    from aimm_services import plugins

    @plugins.instantiate("my.Type")
    def create(): ...
"""
from ..data_access import DataAccess
from .decorators import data_access, deserialize, fit, instantiate, predict, serialize
from .execute import (StateCallback, exec_data_access, exec_deserialize, exec_fit,
                      exec_instantiate, exec_predict, exec_serialize)
from .model import Model, model, model_type_of
from .registry import (PLUGIN_KINDS, Plugin, PluginRegistry, default_registry, load_plugins,
                       unload_all)

__all__ = [
    "DataAccess", "data_access", "deserialize", "fit", "instantiate", "predict", "serialize",
    "Model", "model", "model_type_of", "StateCallback", "exec_data_access", "exec_deserialize",
    "exec_fit", "exec_instantiate", "exec_predict", "exec_serialize", "PLUGIN_KINDS", "Plugin",
    "PluginRegistry", "default_registry", "load_plugins", "unload_all",
]
