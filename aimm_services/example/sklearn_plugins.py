"""Optional plugins wrapping scikit-learn estimators (install the `sklearn` extra).

Model types are the estimators' import paths, e.g. "sklearn.linear_model.LinearRegression":

    model = aimm.create_instance("sklearn.linear_model.Ridge", alpha=0.5)   # estimator params
    aimm.fit(model.instance_id, x, y)          # estimator.fit(x, y), the fitted estimator kept
    aimm.predict(model.instance_id, x)         # estimator.predict(x)

Instances are stored with pickle: only load databases you trust.
"""
from __future__ import annotations

import importlib
import importlib.util
import pickle
from typing import Any

from aimm_services import plugins

if importlib.util.find_spec("sklearn") is None:   # listed in plugins.names without it
    raise ImportError("aimm_services.example.sklearn_plugins needs scikit-learn: "
                      "pip install 'speedysvc[sklearn]'")

ESTIMATORS = (
    "sklearn.linear_model.LinearRegression",
    "sklearn.linear_model.Ridge",
    "sklearn.linear_model.LogisticRegression",
    "sklearn.ensemble.RandomForestRegressor",
    "sklearn.ensemble.RandomForestClassifier",
    "sklearn.svm.SVR",
    "sklearn.svm.SVC",
)


def _estimator_class(model_type: str) -> type:
    module_name, _, class_name = model_type.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def _register(model_type: str) -> None:
    # one instantiate plugin per type: the type name says which class to build
    @plugins.instantiate(model_type)
    def create(**params: Any) -> Any:
        return _estimator_class(model_type)(**params)


for _model_type in ESTIMATORS:
    _register(_model_type)


@plugins.fit(ESTIMATORS)
def fit(estimator: Any, x: Any, y: Any = None, **fit_params: Any) -> Any:
    return estimator.fit(x, y, **fit_params)


@plugins.predict(ESTIMATORS)
def predict(estimator: Any, x: Any) -> Any:
    return estimator.predict(x)


@plugins.serialize(ESTIMATORS)
def serialize(estimator: Any) -> bytes:
    return pickle.dumps(estimator)


@plugins.deserialize(ESTIMATORS)
def deserialize(data: bytes) -> Any:
    return pickle.loads(data)
