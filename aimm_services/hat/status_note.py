"""Show the Hat state of an AIMM server next to its services in `speedysvc status` and the
web monitor: the engine sets the supervisor's `note` of every AIMM service of its scope
(names starting with "aimm_") through the control API. Best effort: without a supervisor
(serve() in tests) there is nobody to tell, and the state is still logged and returned by
the engine's `hat` method."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from speedysvc import connect

log = logging.getLogger(__name__)

CONTROL_SERVICE = "speedysvc_control"
AIMM_SERVICE_PREFIX = "aimm_"


class SupervisorNote:
    def __init__(self, scope: str):
        self._scope = scope
        self._client: Any = None
        # one thread: notes are set in the order the states happened, off the Hat loop
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimm-hat-note")

    def show(self, note: Optional[str]) -> None:
        self._thread.submit(self._set, note)

    def close(self, note: Optional[str] = None) -> None:
        self._thread.submit(self._set, note)
        self._thread.shutdown(wait=True)
        if self._client is not None:
            self._client.close()

    def _set(self, note: Optional[str]) -> None:
        try:
            if self._client is None:
                self._client = connect(CONTROL_SERVICE, f"shm://{self._scope}",
                                       connect_timeout=2.0, timeout=10.0)
            for service in self._client.status()["services"]:
                if service["name"].startswith(AIMM_SERVICE_PREFIX):
                    self._client.set_note(service["name"], note)
        except Exception as exc:      # no supervisor, or an older one without set_note
            log.debug("could not show the Hat state in the supervisor: %s", exc)
