"""The two shared-memory paths: the compiled extension and the pure-Python fallback.

CI runs the whole core suite on the compiled path and again with SPEEDYSVC_PURE_PYTHON=1;
these tests check what is specific to the choice: which path is active, that workers inherit
it, that clients of either path call services of either path, and that a mismatch that cannot
work says how to fix it.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import psutil
import pytest

from speedysvc import connect, serve
from speedysvc.shm import native
from speedysvc.shm import service_segment as ss
from support_services import Echo

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)


def test_the_compiled_path_is_active_unless_forced_and_version_says_which(scope):
    out = subprocess.run([sys.executable, "-m", "speedysvc", "--version"], capture_output=True, text=True,
                         timeout=60).stdout
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        assert c.echo("x") == "x!"
        mode = c.provider.segment.mode
        worker_env = psutil.Process(svc.worker_pids()[0]).environ()
    if native.forced_pure():
        assert mode == ss.MODE_LOCKED and "pure Python (SPEEDYSVC_PURE_PYTHON=1 is set)" in out
        assert worker_env.get("SPEEDYSVC_PURE_PYTHON") == "1"  # workers inherit the choice
    else:
        # a missing extension must fail here, not silently run the suite on the fallback
        assert native.active(), native.reason()
        assert mode == ss.MODE_ATOMIC and "compiled" in out


def test_forcing_the_fallback_reaches_the_workers(scope, monkeypatch):
    monkeypatch.setenv("SPEEDYSVC_PURE_PYTHON", "1")
    with serve(Echo, workers=1, scope=scope) as svc, connect(Echo, svc.shm_address) as c:
        assert c.provider.segment.mode == ss.MODE_LOCKED
        assert c.echo("pure") == "pure!"
        assert psutil.Process(svc.worker_pids()[0]).environ().get("SPEEDYSVC_PURE_PYTHON") == "1"


@pytest.mark.parametrize("service_path,client_path", [("compiled", "pure"), ("pure", "compiled"),
                                                      ("compiled", "compiled"), ("pure", "pure")])
def test_clients_of_either_path_call_services_of_either_path(scope, monkeypatch, service_path, client_path):
    if "compiled" in (service_path, client_path) and not native.active() and not native.forced_pure():
        pytest.fail(f"the compiled extension is not built: {native.reason()}")
    if native.forced_pure() and "compiled" in (service_path, client_path):
        monkeypatch.delenv("SPEEDYSVC_PURE_PYTHON")  # this run is the fallback's; mix anyway

    def use(path):
        if path == "pure":
            monkeypatch.setenv("SPEEDYSVC_PURE_PYTHON", "1")
        else:
            monkeypatch.delenv("SPEEDYSVC_PURE_PYTHON", raising=False)
    use(service_path)
    with serve(Echo, workers=2, scope=scope) as svc:
        use(client_path)
        arr = np.arange(1_000_000, dtype=np.float64)
        with connect(Echo, svc.shm_address) as c:
            expect = ss.MODE_ATOMIC if service_path == "compiled" else ss.MODE_LOCKED
            assert c.provider.segment.mode == expect
            assert (c.provider.segment.fast is not None) == (service_path == client_path == "compiled")
            for i in range(200):
                assert c.echo(i) == i
            big = os.urandom(3_000_000)   # grows the channel; the reply overflows once
            assert c.echo_raw(big) == big
            assert c.echo_raw(big) == big
            info = c.array_info(arr)
            assert info["shape"] == [1_000_000] and info["sum"] == float(arr.sum())
            assert np.array_equal(c.echo(arr), arr)
        # a client in another process, on the other path, at the same time as this one
        other = "1" if client_path == "compiled" else "0"
        done = run_python(
            "from speedysvc import connect\nfrom support_services import Echo\n"
            f"c = connect(Echo, 'shm://{scope}')\n"
            "assert all(c.echo(i) == i for i in range(200))\nc.close()\nprint('ok')",
            SPEEDYSVC_PURE_PYTHON=other)
        assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_pure_python_worker_on_a_compiled_queue_says_how_to_fix_it(scope, monkeypatch):
    if not native.active():
        monkeypatch.delenv("SPEEDYSVC_PURE_PYTHON", raising=False)
        if not native.active():
            pytest.fail(f"the compiled extension is not built: {native.reason()}")
    with serve(Echo, workers=1, scope=scope):
        result = subprocess.run(
            [sys.executable, "-m", "speedysvc.worker_main", "--service", "support_services:Echo",
             "--scope", scope, "--name", "echo", "--slot", "63", "--worker-id", "99"],
            env=dict(os.environ, SPEEDYSVC_PURE_PYTHON="1",
                     PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")])),
            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "runs the compiled shared-memory queue" in result.stderr
    assert "SPEEDYSVC_PURE_PYTHON" in result.stderr


def test_a_missing_extension_is_a_warning_once_and_the_fallback_works(scope):
    with serve(Echo, workers=1, scope=scope):
        done = run_python(
            "import sys\nsys.modules['speedysvc.shm._fastpath'] = None  # as if never built\n"
            "from speedysvc import connect\nfrom support_services import Echo\n"
            "from speedysvc.shm import native\n"
            f"for _ in range(3):\n    c = connect(Echo, 'shm://{scope}')\n    assert c.echo('x') == 'x!'\n"
            "    c.close()\n"
            "print(native.path_name())", SPEEDYSVC_PURE_PYTHON="0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pure Python (the compiled extension is not built" in done.stdout
    assert done.stderr.count("compiled shared-memory extension is not available") == 1, done.stderr
