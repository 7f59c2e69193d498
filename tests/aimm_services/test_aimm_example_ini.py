"""example.ini's AIMM services keep working: its three AIMM sections, run by a supervisor
exactly as written there (in a scope of the test's own, without the other example services
and the web monitor, which need fixed ports), serve the documented client and password."""
import configparser
import signal
import subprocess
import sys
from pathlib import Path

import numpy

from aimm_services.client import AIMM, DataAccess
from speedysvc import naming
from waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
AIMM_SECTIONS = ("PluginService", "BackendService", "EngineService")
LINEAR = "aimm_services.example.linear_plugins.LinearRegression"


def test_example_ini_aimm_services_serve_the_documented_client(tmp_path, scope):
    example = configparser.ConfigParser(interpolation=None)
    example.read(REPO / "example.ini")
    ini = configparser.ConfigParser(interpolation=None)
    ini["supervisor"] = {"scope": scope, "log_dir": str(tmp_path / "logs")}
    ini["web monitor"] = {"enabled": "false"}
    ini["defaults"] = dict(example["defaults"])
    for section in AIMM_SECTIONS:
        ini[section] = dict(example[section])
    ini["EngineService"].pop("tcp_bind", None)     # its fixed TCP port may be taken here
    path = tmp_path / "aimm_only.ini"
    with open(path, "w") as out:
        ini.write(out)
    supervisor = subprocess.Popen([sys.executable, "-m", "speedysvc", str(path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        aimm = wait_until(lambda: _logged_in(f"shm://{scope}"), timeout=90,
                          message="the example's AIMM engine to accept the example login")
        try:
            model = aimm.create_instance(LINEAR)
            data = DataAccess.of("example.synthetic", rows=50)
            aimm.fit(model.instance_id, data["x"], data["y"])
            numpy.testing.assert_allclose(aimm.predict(model.instance_id, numpy.ones((1, 2))),
                                          [3.5], atol=1e-9)
            aimm.remove_instance(model.instance_id)
        finally:
            aimm.close()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
    wait_until(lambda: not naming.list_objects(scope), timeout=10)


def _logged_in(address):
    try:
        aimm = AIMM(address, timeout=30)
    except Exception:
        return None
    try:
        aimm.login("aimm", "aimm")     # the example user of aimm_services/example/aimm.yaml
        return aimm
    except Exception:
        aimm.close()
        return None
