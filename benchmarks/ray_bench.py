"""speedysvc over ray:// next to Ray Serve's own handle call and a plain Ray actor call.

    python benchmarks/ray_bench.py                  # starts a local Ray instance (2 CPUs)
    python benchmarks/ray_bench.py --address 127.0.0.1:6379 --quick

Rows, measured in one run on the same Ray instance, interleaved round by round so that a busy
moment of a shared machine hits every row alike:
- `ray actor`: a plain actor method echoing 64 bytes (ray.get(actor.echo.remote(b)));
- `serve handle`: a Serve deployment's method echoing 64 bytes through a DeploymentHandle
  (max_ongoing_requests=1, as speedysvc deploys);
- `speedysvc ray://`: connect(BenchEcho, "ray://...").echo(b) -- msgpack encoding in the
  client, the request-id/attempt guard, decoding in the replica;
- `speedysvc ray:// (no guard)`: the same without the at-most-once claim record.
Then calls/s of speedysvc over ray:// with 1 and 2 replicas, 4 client threads, on a method
that works 5 ms per call (one call per replica at a time, as on shared memory).
Target: speedysvc p50 <= 1.2x the Serve handle's p50.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, os.environ.get("PYTHONPATH", "")] if p)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from speedysvc import ServerMethodsBase, msgpack_method  # noqa: E402


class BenchEcho(ServerMethodsBase):
    name = "bench_echo"

    @msgpack_method
    def echo(self, data):
        return data

    @msgpack_method
    def work(self, seconds: float = 0.005):
        time.sleep(seconds)
        return 1


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _deploy_speedysvc(scope: str, replicas: int, at_most_once: bool):
    from ray import serve
    from ray.serve.api import RunTarget
    from speedysvc.ray_engine import board
    from speedysvc.ray_engine.names import NAMESPACE, app_name, board_name
    from speedysvc.ray_engine.replica import build_application
    import ray
    b = board.get_or_create(board_name(scope, BenchEcho.name), NAMESPACE)
    ray.get(b.head.remote())
    settings = {"max_ongoing_requests": 1, "metrics_interval": 1.0, "at_most_once": at_most_once}
    options = {"max_ongoing_requests": 1, "num_replicas": replicas,
               "ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {
                   "PYTHONPATH": os.environ["PYTHONPATH"], "RAY_USAGE_STATS_ENABLED": "0"}}}}
    app = build_application("benchmarks.ray_bench:BenchEcho", scope, BenchEcho.name, settings,
                            options)
    serve.run_many([RunTarget(app, name=app_name(scope, BenchEcho.name), route_prefix=None)])
    return b


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", help="a running cluster (GCS host:port); default: start one")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, per_round = (3, 100) if args.quick else (8, 250)
    throughput_s = 3.0 if args.quick else 8.0

    t0 = time.perf_counter()
    helper = None
    address = args.address
    if not address:
        # the same local instance a supervisor starts (ray_address = local)
        import subprocess
        from speedysvc.ray_engine.local_cluster import auth_environment
        temp_dir = f"/tmp/ssr-bench-{os.getpid()}"
        helper = subprocess.Popen(
            [sys.executable, "-m", "speedysvc.ray_engine.local_cluster", "--parent-pid",
             str(os.getpid()), "--temp-dir", temp_dir, "--num-cpus", "2"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        line = helper.stdout.readline().decode()
        if not line.startswith("READY "):
            raise SystemExit(f"the local Ray instance did not start: {line!r}")
        address = line.split()[1]
        os.environ.update(auth_environment(temp_dir))
    from speedysvc.ray_engine import runtime
    ray = runtime.connect(address)
    from ray import serve
    serve.start(proxy_location="Disabled")
    print(f"ray ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    @ray.remote(num_cpus=0)
    class EchoActor:
        def echo(self, b):
            return b

    @serve.deployment(max_ongoing_requests=1, ray_actor_options={"num_cpus": 0.1})
    class ServeEcho:
        def echo(self, b):
            return b

        def work(self, seconds):
            time.sleep(seconds)
            return 1

    from ray.serve.api import RunTarget
    serve.run_many([RunTarget(ServeEcho.bind(), name="bench.serve_echo", route_prefix=None)])
    boards = [_deploy_speedysvc("bench1", 1, True), _deploy_speedysvc("bench2", 1, False)]
    import speedysvc
    actor = EchoActor.remote()
    handle = serve.get_app_handle("bench.serve_echo").options(method_name="echo")
    guarded = speedysvc.connect(BenchEcho, "ray:///bench1")
    unguarded = speedysvc.connect(BenchEcho, "ray:///bench2")
    payload = b"x" * 64
    rows = {
        "ray actor": lambda: ray.get(actor.echo.remote(payload)),
        "serve handle": lambda: handle.remote(payload).result(),
        "speedysvc ray://": lambda: guarded.echo(payload),
        "speedysvc ray:// (no guard)": lambda: unguarded.echo(payload),
    }
    samples: dict[str, list[float]] = {k: [] for k in rows}
    for fn in rows.values():
        _timed(fn, 30)  # warm up
    for r in range(rounds):
        for name, fn in rows.items():
            samples[name] += _timed(fn, per_round)
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
    base = _p50_ms(samples["serve handle"])
    print(f"\n64-byte echo round trip, {rounds * per_round} calls per row, p50 (p90):")
    for name, s in samples.items():
        p90 = sorted(s)[int(len(s) * 0.9)] * 1e3
        print(f"  {name:30s} {_p50_ms(s):7.3f} ms ({p90:.3f})   {_p50_ms(s) / base:5.2f}x serve handle")
    ratio = _p50_ms(samples["speedysvc ray://"]) / base
    print(f"target speedysvc <= 1.2x serve handle: {'met' if ratio <= 1.2 else 'NOT met'} "
          f"({ratio:.2f}x)")

    print(f"\ncalls/s, 4 client threads, a 5 ms call, {throughput_s:g} s each:")
    work_handle = serve.get_app_handle("bench.serve_echo").options(method_name="work")
    for replicas in (1, 2):
        _deploy_speedysvc("bench1", replicas, True)
        serve.run_many([RunTarget(ServeEcho.options(num_replicas=replicas).bind(),
                                  name="bench.serve_echo", route_prefix=None)])
        for app, dep in (("bench1.bench_echo", "bench_echo"), ("bench.serve_echo", "ServeEcho")):
            deadline = time.monotonic() + 60
            while serve.status().applications[app].deployments[dep].replica_states.get(
                    "RUNNING", 0) != replicas and time.monotonic() < deadline:
                time.sleep(0.2)
        for label, call in (("speedysvc ray://", lambda: guarded.work(0.005)),
                            ("serve handle", lambda: work_handle.remote(0.005).result())):
            counts = [0] * 4
            stop = time.monotonic() + throughput_s

            def load(i: int, call=call, counts=counts, stop=stop) -> None:  # bound per round
                while time.monotonic() < stop:
                    call()
                    counts[i] += 1
            threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(f"  {replicas} replica(s), {label:18s}: {sum(counts) / throughput_s:8.1f} calls/s")
    for app in ("bench.serve_echo", "bench1.bench_echo", "bench2.bench_echo"):
        serve.delete(app)
    for b in boards:
        ray.kill(b)
    runtime.disconnect()
    if helper is not None:
        helper.terminate()   # stops every process of the instance and removes its temp dir
        helper.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
