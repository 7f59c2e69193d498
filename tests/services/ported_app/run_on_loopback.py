"""Runs a device application file (argv[1], its arguments after it) as __main__. When the
application imports auto-trainer-api, that package is first told its machine address is
127.0.0.1: 0.12 binds the machine's outbound address too, and tests bind loopback only.
Nothing else of the package is touched."""
import importlib
import runpy
import sys
from pathlib import Path

application = Path(sys.argv[1])
if any(line.startswith(("from autotrainer", "import autotrainer")) for line in application.read_text().splitlines()):
    zeromq_service = importlib.import_module("autotrainer.api.zeromq.zeromq_api_service")
    zeromq_service.get_ip4_addr_str = lambda: "127.0.0.1"
sys.argv = sys.argv[1:]
runpy.run_path(str(application), run_name="__main__")
