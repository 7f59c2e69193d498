"""Plugins written for AIMM itself (`from aimm import plugins`), as an AIMM user has them.

The server loads them unchanged (it adopts what they register with the published `aimm`
package); the published client needs them too, to serialize instances for add_instance and
update_instance.
"""
import json

import numpy
import pandas
from aimm import plugins

SCALER = "aimm_style_plugins.Scaler"


@plugins.model
class Scaler(plugins.Model):
    """predict(x) -> {"scaled": x * factor as float32, "n": len(x)}; fit(x, y) learns factor."""

    def __init__(self, factor=1.0):
        self.factor = float(factor)

    def fit(self, x, y):
        self.factor = float(numpy.sum(numpy.asarray(y, dtype=float)) /
                            numpy.sum(numpy.asarray(x, dtype=float)))
        return self

    def predict(self, x):
        values = numpy.asarray(x, dtype="float32") * numpy.float32(self.factor)
        return {"scaled": values, "n": int(len(values))}

    def serialize(self):
        return json.dumps({"factor": self.factor}).encode()

    @classmethod
    def deserialize(cls, instance_bytes):
        return cls(**json.loads(instance_bytes))


@plugins.data_access("aimm_style.frame")
def frame(rows, scale=1):
    return pandas.DataFrame({"x": numpy.arange(1, rows + 1, dtype="float64") * scale})
