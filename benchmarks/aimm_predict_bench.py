"""Median latency of a trivial AIMM predict through the Python client.

    python -m benchmarks.aimm_predict_bench [--calls 1000] [--tcp]

Starts the plugin, backend and engine services with speedysvc.serve() (SQLite backend in a
temporary directory), creates one model of a trivial type whose predict returns its input
without changing the instance, and times `aimm.predict(id, x)` end to end: engine action,
plugin call in a worker process, pushed completion event, result fetch. Also times the
example LinearRegression, whose predict changes the instance (a prediction counter), so
each call also writes the model to SQLite.

The plugins are defined in this module, which the plugin workers import by name.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aimm_services import plugins

TRIVIAL = "bench.Trivial"


@plugins.instantiate(TRIVIAL)
def _create():
    return b"trivial"


@plugins.serialize([TRIVIAL])
def _serialize(instance):
    return instance


@plugins.deserialize([TRIVIAL])
def _deserialize(data):
    return data


@plugins.predict([TRIVIAL])
def _predict(instance, x):
    return x


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"median {statistics.median(ordered) * 1e3:.3f} ms, "
            f"p99 {p99 * 1e3:.3f} ms, min {ordered[0] * 1e3:.3f} ms")


def _time_calls(call, calls: int) -> list[float]:
    for _ in range(min(50, calls)):      # warm-up: channels, caches, first imports
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def measure(calls: int = 1000, tcp: bool = False) -> list[dict]:
    """Run the AIMM services and time predicts; one dict per (transport, model) measured."""
    import numpy
    import yaml
    from speedysvc import serve
    from speedysvc.serve import new_scope

    from aimm_services.backend_service import BackendService
    from aimm_services.client import AIMM
    from aimm_services.engine_service import EngineService
    from aimm_services.passwords import hash_password
    from aimm_services.plugin_service import PluginService

    results = []
    with tempfile.TemporaryDirectory(prefix="aimm_bench_") as tmp:
        config = Path(tmp) / "aimm.yaml"
        config.write_text(yaml.safe_dump({
            "name": "bench", "engine": {"max_children": 2},
            "backend": {"module": "aimm.server.backend.sqlite", "path": "aimm.db"},
            "control": [{"module": "aimm.server.control.repl",
                         "users": [{"username": "bench", "password": hash_password("bench")}]}],
            "plugins": {"names": ["benchmarks.aimm_predict_bench",
                                  "aimm_services.example.linear_plugins"]},
            "log": {"version": 1, "root": {"level": "WARNING"}}}))
        os.environ["AIMM_CONFIG"] = str(config)
        scope = new_scope()
        with serve(PluginService, workers=2, scope=scope), \
                serve(BackendService, workers=1, scope=scope), \
                serve(EngineService, workers=1, scope=scope,
                      tcp="127.0.0.1:0" if tcp else None) as engine:
            addresses = [("shm", f"shm://{scope}")]
            if tcp:
                addresses.append(("tcp", engine.tcp_address))
            for transport, address in addresses:
                with AIMM(address) as aimm:
                    aimm.login("bench", "bench")
                    trivial = aimm.create_instance(TRIVIAL)
                    samples = _time_calls(functools.partial(aimm.predict, trivial.instance_id, 1), calls)
                    results.append({"transport": transport, "model": "trivial", "calls": calls,
                                    "samples": samples})
                    linear = aimm.create_instance(
                        "aimm_services.example.linear_plugins.LinearRegression")
                    aimm.fit(linear.instance_id, numpy.arange(10.0), numpy.arange(10.0) * 2)
                    row = numpy.array([[3.0]])
                    n = max(100, calls // 5)
                    samples = _time_calls(functools.partial(aimm.predict, linear.instance_id, row), n)
                    results.append({"transport": transport,
                                    "model": "LinearRegression (instance changes, SQLite write)",
                                    "calls": n, "samples": samples})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--tcp", action="store_true", help="also measure over TCP")
    options = parser.parse_args(argv)
    for r in measure(options.calls, options.tcp):
        print(f"[{r['transport']}] {r['model']} predict x{r['calls']}: {_percentiles(r['samples'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
