"""One local Ray instance (2 CPUs) for every Ray test of the session, and supervisors on it.

The instance is started by speedysvc's own helper (speedysvc.ray_engine.local_cluster), which
stops it -- every process, its temp dir -- when the session ends or pytest dies. Its address
goes into RAY_ADDRESS, so a supervisor with `ray_address = auto` and a client with a bare
`ray://` both find it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
for path in (HERE, TESTS, os.path.join(TESTS, "supervisor")):
    if path not in sys.path:
        sys.path.insert(0, path)

from ray_harness import RaySupervisor  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """The GCS address of the session's Ray instance."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
    # workers of the instance import speedysvc from this tree and the tests' service modules
    os.environ["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([REPO, TESTS, HERE, *filter(None, os.environ.get("PYTHONPATH", "").split(
            os.pathsep))]))
    temp_dir = f"/tmp/ssr-test-{os.getpid()}"
    helper = subprocess.Popen(
        [sys.executable, "-m", "speedysvc.ray_engine.local_cluster", "--parent-pid",
         str(os.getpid()), "--temp-dir", temp_dir, "--num-cpus", "2"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    line = helper.stdout.readline().decode()
    if not line.startswith("READY "):
        helper.wait(30)
        pytest.fail(f"the local Ray instance did not start (helper said {line!r})")
    address = line.split()[1]
    from speedysvc.ray_engine.local_cluster import auth_environment
    os.environ.update(auth_environment(temp_dir))   # the instance requires its token
    os.environ["RAY_ADDRESS"] = address
    yield address
    from speedysvc.ray_engine import runtime
    runtime.disconnect()
    helper.send_signal(signal.SIGTERM)
    helper.wait(60)
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        os.environ.pop(name, None)
    deadline = time.monotonic() + 10
    while os.path.exists(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(temp_dir), f"the Ray instance's temp dir {temp_dir} was left behind"


@pytest.fixture
def ray_supervisor(tmp_path, scope, ray_cluster):
    """ray_supervisor(services, **kwargs) -> RaySupervisor (not started), stopped afterwards."""
    made: list[RaySupervisor] = []

    def make(services, **kwargs) -> RaySupervisor:
        sup = RaySupervisor(tmp_path, scope, services, **kwargs)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.cleanup()
