"""create_api_service(): an RpcService with the transports the options enable."""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence

from .options import ApiOptions, RpcOptions
from .rpc_service import RpcService
from .transport import EventTransport

log = logging.getLogger(__name__)


def create_api_service(options: ApiOptions, extra_transports: Sequence[EventTransport] = ()) -> Optional[RpcService]:
    """None when options.rpc is missing or disabled, as in 0.12; the service is not started.

    `extra_transports` are added after those the options enable (e.g. an
    AttachedSpeedysvcTransport when a speedysvc worker hosts the device application).
    """
    if options is None or options.rpc is None or not options.rpc.enable:
        return None
    if options.telemetry is not None and options.telemetry.enable:
        log.warning("telemetry options are accepted for compatibility but telemetry is not exported")
    return RpcService(options.rpc, _transports(options.rpc) + list(extra_transports))


def _transports(rpc: RpcOptions) -> List[EventTransport]:
    transports: List[EventTransport] = []
    if rpc.zmq.enable:
        from .zmq_gateway import ZmqGateway

        transports.append(ZmqGateway(rpc))
    if rpc.speedysvc.enable:
        # Imported only when wanted, so the ZeroMQ-only use does not need speedysvc's core.
        from .speedysvc_adapter import SpeedysvcTransport

        transports.append(SpeedysvcTransport(rpc))
    return transports
