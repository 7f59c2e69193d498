"""How a worker boots, whether it is a process of its own (worker_main) or one of the worker
threads of serve(..., in_process=True), which share one instance:

    with booted(instance, segment, ring, allow_insecure) as new_worker:
        new_worker(slot, worker_id, stop).run()

Entering gives the instance its publisher and runs on_start(), once per instance however many
workers serve it; leaving runs on_stop(). Each worker gets a Dispatcher of its own (its
statistics are per worker).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from .dispatch import Dispatcher
from .methods import ServerMethodsBase
from .shm.events import EventRing
from .shm.service_segment import ServiceSegment
from .shm.worker_loop import Publisher, ShmWorker

# (slot, worker id, stop event) -> a worker loop serving the instance; run() it
WorkerFactory = Callable[[int, int, threading.Event], ShmWorker]


@contextmanager
def booted(instance: ServerMethodsBase, segment: ServiceSegment, ring: EventRing,
           allow_insecure: Optional[bool]) -> Iterator[WorkerFactory]:
    """The instance started (publisher, on_start) for as long as the block runs; on_stop after."""
    instance.speedysvc_publisher = Publisher(ring)
    instance.on_start()

    def new_worker(slot: int, worker_id: int, stop: threading.Event) -> ShmWorker:
        return ShmWorker(Dispatcher(instance, allow_insecure), segment, slot, worker_id, stop)
    try:
        yield new_worker
    finally:
        instance.on_stop()
