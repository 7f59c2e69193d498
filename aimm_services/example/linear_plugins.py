"""Example plugins: least-squares linear regression on numpy, and a CSV data access.

    model = aimm.create_instance("aimm_services.example.linear_plugins.LinearRegression")
    aimm.fit(model.instance_id, x, y)               # or DataAccess.of("example.csv", path, ...)
    aimm.predict(model.instance_id, x_new)
"""
from __future__ import annotations

import io
from typing import Any, Callable, Optional

import numpy
import pandas

from aimm_services import plugins


@plugins.model
class LinearRegression(plugins.Model):
    """y ~ x @ coef + intercept, fitted with numpy.linalg.lstsq."""

    def __init__(self, fit_intercept: bool = True):
        self.fit_intercept = bool(fit_intercept)
        self.coef: Optional[numpy.ndarray] = None
        self.intercept: Any = 0.0
        self.predictions = 0            # predict changes the instance: the count is kept

    def fit(self, x: Any, y: Any) -> "LinearRegression":
        features, target = _matrix(x), numpy.asarray(y, dtype=float)
        if self.fit_intercept:
            features = numpy.column_stack([features, numpy.ones(len(features))])
        solution, *_ = numpy.linalg.lstsq(features, target, rcond=None)
        if self.fit_intercept:
            self.coef, self.intercept = solution[:-1], solution[-1]
        else:
            self.coef, self.intercept = solution, 0.0
        return self

    def predict(self, x: Any) -> Any:
        if self.coef is None:
            raise ValueError("LinearRegression is not fitted yet: call fit(x, y) first")
        self.predictions += 1
        prediction = _matrix(x) @ self.coef + self.intercept
        if isinstance(x, pandas.DataFrame):     # keep the caller's index
            return pandas.Series(prediction, index=x.index, name="prediction")
        return prediction

    def serialize(self) -> bytes:
        buffer = io.BytesIO()
        numpy.savez(buffer, fit_intercept=self.fit_intercept, predictions=self.predictions,
                    intercept=numpy.asarray(self.intercept),
                    coef=numpy.asarray([] if self.coef is None else self.coef),
                    fitted=self.coef is not None)
        return buffer.getvalue()

    @classmethod
    def deserialize(cls, instance_bytes: bytes) -> "LinearRegression":
        data = numpy.load(io.BytesIO(instance_bytes), allow_pickle=False)
        model = cls(bool(data["fit_intercept"]))
        model.predictions = int(data["predictions"])
        if bool(data["fitted"]):
            model.coef, model.intercept = data["coef"], data["intercept"][()]
        return model


def _matrix(x: Any) -> numpy.ndarray:
    matrix = numpy.asarray(x, dtype=float)
    return matrix.reshape(-1, 1) if matrix.ndim == 1 else matrix


@plugins.data_access("example.csv", state_cb_arg_name="state_cb")
def read_csv(path: str, columns: Optional[list] = None,
             state_cb: Callable[[Any], None] = lambda state: None) -> Any:
    """Columns of a CSV file as a DataFrame (or one column as an array)."""
    state_cb({"reading": path})
    frame = pandas.read_csv(path)
    if columns is not None and len(columns) == 1:
        return frame[columns[0]].to_numpy()
    return frame[columns] if columns is not None else frame


@plugins.data_access("example.synthetic")
def synthetic(rows: int = 100, features: int = 2, noise: float = 0.0, seed: int = 0) -> dict:
    """Random linear data: {"x": (rows, features) array, "y": (rows,) array, "coef": ...}."""
    rng = numpy.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    coef = numpy.arange(1, features + 1, dtype=float)
    y = x @ coef + 0.5 + noise * rng.normal(size=rows)
    return {"x": x, "y": y, "coef": coef}
