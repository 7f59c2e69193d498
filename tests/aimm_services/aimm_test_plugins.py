"""Plugins used by the aimm_services tests (imported by name, also inside worker processes)."""
import json
import os
import pickle
import time

import numpy
import pandas

from aimm_services import plugins

COUNTER = "test.Counter"


@plugins.instantiate(COUNTER, state_cb_arg_name="report")
def make_counter(start=0, report=None):
    report({"step": "instantiating"})
    return {"count": start, "predictions": 0}


@plugins.serialize([COUNTER])
def counter_to_bytes(instance):
    return json.dumps(instance, sort_keys=True).encode()


@plugins.deserialize([COUNTER])
def counter_from_bytes(data):
    return json.loads(data)


@plugins.fit([COUNTER], state_cb_arg_name="report", instance_arg_name="model")
def fit_counter(*values, model, report, by=1, delay=0.0, gate=None):
    """Adds `by` (and the sum of `values`); with `gate`, reports progress until the file exists."""
    step = 0
    deadline = time.monotonic() + 30
    while gate is not None and not os.path.exists(gate) and time.monotonic() < deadline:
        step += 1
        report({"step": step})
        time.sleep(0.02)
    if delay:
        time.sleep(delay)
    total = sum(float(numpy.sum(v)) for v in values)
    return {**model, "count": model["count"] + float(numpy.sum(by)) + total}


@plugins.predict([COUNTER])
def predict_counter(instance, x=1, delay=0.0, fail=False):
    if fail:
        raise ValueError(f"cannot predict with x={x!r}")
    if delay:
        time.sleep(delay)
    instance["predictions"] += 1          # a change predict makes is kept
    if isinstance(x, (numpy.ndarray, pandas.Series, pandas.DataFrame)):
        count = instance["count"]
        return x * (int(count) if float(count).is_integer() else count)
    return {"count": instance["count"], "x": x, "predictions": instance["predictions"]}


@plugins.data_access("test.array", state_cb_arg_name="cb")
def array_data(n, dtype="float64", delay=0.0, cb=None):
    cb({"fetching": n})
    if delay:
        time.sleep(delay)
    return numpy.arange(n, dtype=dtype)


@plugins.data_access("test.frame")
def frame_data(rows):
    return pandas.DataFrame({"a": numpy.arange(rows, dtype="int32"),
                             "b": [f"r{i}" for i in range(rows)]},
                            index=pandas.Index([f"i{i}" for i in range(rows)], name="key"))


@plugins.data_access("test.pid")
def pid_data():
    return os.getpid()


@plugins.model
class Sleeper(plugins.Model):
    """predict(seconds) sleeps and returns the worker pid; fit counts fits. predict(meet=dir,
    parties=n) first waits (up to 30 s) until n predicts are inside it at once: "met" in the
    result says whether they were."""

    def __init__(self, fits=0):
        self.fits = fits

    def fit(self, *args, **kwargs):
        self.fits += 1          # returns None: @model keeps the instance fitted in place

    def predict(self, seconds=0.0, meet=None, parties=0):
        met = {}
        if meet:
            open(os.path.join(meet, str(os.getpid())), "w").close()
            deadline = time.monotonic() + 30
            while len(os.listdir(meet)) < parties and time.monotonic() < deadline:
                time.sleep(0.01)
            met = {"met": len(os.listdir(meet)) >= parties}
        time.sleep(seconds)
        return {"pid": os.getpid(), "fits": self.fits, **met}

    def serialize(self):
        return pickle.dumps({"fits": self.fits})

    @classmethod
    def deserialize(cls, data):
        return cls(**pickle.loads(data))


SLEEPER = f"{Sleeper.__module__}.Sleeper"
