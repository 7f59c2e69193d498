"""Fixtures shared by the aimm_services tests."""
import importlib
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# plugin modules used by the tests are imported by name, also inside worker processes,
# which inherit the environment
for entry in (str(HERE), str(REPO)):
    if entry not in sys.path:
        sys.path.insert(0, entry)
_pythonpath = os.environ.get("PYTHONPATH", "")
if str(HERE) not in _pythonpath.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), str(REPO), _pythonpath) if p)


@pytest.fixture
def clean_registry():
    """An empty plugin registry for the test, restored empty afterwards."""
    from aimm_services import plugins
    plugins.unload_all()
    yield plugins.default_registry
    plugins.unload_all()


@pytest.fixture
def test_plugins(clean_registry):
    """The plugins of aimm_test_plugins.py, freshly registered."""
    sys.modules.pop("aimm_test_plugins", None)
    module = importlib.import_module("aimm_test_plugins")
    yield module
    sys.modules.pop("aimm_test_plugins", None)


@pytest.fixture(scope="session")
def hat_servers():
    """One hat-monitor server and one hat-event server (group "event") for the whole
    session, real subprocesses on loopback; tests may add event servers of other groups."""
    import shutil
    import tempfile
    from hat_servers import HatServers
    directory = Path(tempfile.mkdtemp(prefix="aimm-hat-"))
    servers = HatServers(directory)
    try:
        servers.start_monitor()
        servers.events = servers.event_server("event").start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(directory, ignore_errors=True)
