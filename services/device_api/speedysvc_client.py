"""A speedysvc client of the device API with the same interface as ZmqDeviceClient,
so the console (and applications) can use either transport."""
from __future__ import annotations

import itertools
import queue
import random
from typing import Any, Optional, Sequence, Union

from speedysvc import connect
from speedysvc.errors import CallTimeout

from .remote_client import CommandTimeout, ReceivedMessage
from .speedysvc_adapter import DEFAULT_COMMAND_WAIT, CommandStillRunning, speedysvc_topic


class SpeedysvcDeviceClient:
    def __init__(
        self,
        address: Union[str, Sequence[str]],
        service_name: str = "device_api",
        topics: Sequence[int] = (),
        timeout: float = 5.0,
        **connect_options: Any,
    ) -> None:
        self._timeout = timeout
        self._client = connect(service_name, address, timeout=max(timeout, DEFAULT_COMMAND_WAIT) + 5,
                               **connect_options)
        try:
            self._subscription = self._client.subscribe([speedysvc_topic(t) for t in topics] or None)
        except BaseException:
            self._client.close()
            raise
        self._nonces = itertools.count(random.randrange(1, 1 << 30))

    @property
    def client(self) -> Any:
        """The underlying speedysvc ServiceClient."""
        return self._client

    def next_nonce(self) -> int:
        return next(self._nonces)

    def receive(self, timeout: Optional[float] = None) -> Optional[ReceivedMessage]:
        try:
            event = self._subscription.get(timeout=self._timeout if timeout is None else timeout)
        except queue.Empty:
            return None
        payload = event.payload
        return ReceivedMessage(payload["topic"], payload["message"], payload["seq"])

    def send_command(self, command: int, data: Any = None, custom_command: int = -1,
                     nonce: Optional[int] = None, timeout: Optional[float] = None) -> dict:
        request = {"command": int(command), "customCommand": int(custom_command),
                   "nonce": self.next_nonce() if nonce is None else nonce, "data": data}
        wait = self._timeout if timeout is None else timeout
        try:
            return self._client.send_command(request, wait)
        except (CallTimeout, CommandStillRunning) as exc:
            raise CommandTimeout(str(exc)) from exc

    def snapshot(self, timeout: Optional[float] = None) -> dict:
        return self._client.snapshot()

    def command_result(self, nonce: int, timeout: Optional[float] = None) -> dict:
        return self._client.get_command_result(int(nonce))

    def close(self) -> None:
        self._subscription.close()
        self._client.close()

    def __enter__(self) -> "SpeedysvcDeviceClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
