"""Stand-ins for the OS facade (clock, memory) and for WorkerPool (processes), so supervision
decisions are tested fast and exactly; test_arbiter_*.py show the same on real processes."""
from __future__ import annotations

from collections import defaultdict

from speedysvc.shm import service_segment as ss


class FakeSystem:
    def __init__(self):
        self.now = 1000.0
        self.rss_by_pid: dict[int, int] = {}
        self.cpu = 0.1

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def time_ns(self):
        return int(self.now * 1e9)

    def rss(self, pid):
        return self.rss_by_pid.get(pid, 50 * 2**20)

    def machine_cpu(self):
        return self.cpu

    def advance(self, seconds):
        self.now += seconds


class FakeSegment:
    def __init__(self):
        self.words = defaultdict(int)
        self.depth = 0

    def worker_word(self, slot, word):
        return self.words[(slot, word)]

    def set_worker_word(self, slot, word, value):
        self.words[(slot, word)] = value

    def queue_depth(self):
        return self.depth

    def read_stats(self, slot):
        return {}


class FakeWorker:
    def __init__(self, worker_id, slot, pid, started_at):
        self.worker_id, self.slot, self.pid, self.started_at = worker_id, slot, pid, started_at
        self.stopping_since = None
        self.exit_code = None
        self.booted = False  # set when reaped, as WorkerPool does

    def alive(self):
        return self.exit_code is None


class FakePool:
    """The mechanism a ServicePool drives (WorkerPool's interface), with no processes."""

    def __init__(self, system):
        self.system = system
        self.segment = FakeSegment()
        self.workers: list[FakeWorker] = []
        self.log: list[tuple[str, int]] = []
        self.stdout = self.stderr = None
        self._next = 0
        self.closed = False
        self.tcp_address = None  # these policy tests run without TCP

    def open(self):
        pass

    def close(self):
        self.closed = True

    def spawn(self):
        self._next += 1
        slot = min(set(range(64)) - {w.slot for w in self.workers})
        w = FakeWorker(self._next, slot, 5000 + self._next, self.system.now)
        self.segment.words = defaultdict(int, {k: v for k, v in self.segment.words.items() if k[0] != slot})
        self.segment.set_worker_word(slot, ss.W_STATE, ss.STARTING)
        self.workers.append(w)
        self.log.append(("spawn", w.worker_id))
        return w

    def reap(self):
        gone = [(w, w.exit_code) for w in self.workers if w.exit_code is not None]
        for w, _ in gone:
            w.booted = self.segment.worker_word(w.slot, ss.W_STATE) in (ss.IDLE, ss.BUSY, ss.STOPPING, ss.EXITED)
        self.workers = [w for w in self.workers if w.exit_code is None]
        return gone

    def request_stop(self, w):
        if w.stopping_since is None:
            w.stopping_since = self.system.now
        self.log.append(("stop", w.worker_id))

    def kill(self, w):
        w.exit_code = -9
        self.log.append(("kill", w.worker_id))

    def wait_exited(self, timeout):
        pass  # a killed fake worker has exited already

    # -- what the tests make workers do
    def ready(self, w):
        self.segment.set_worker_word(w.slot, ss.W_STATE, ss.IDLE)
        self.segment.set_worker_word(w.slot, ss.W_HEARTBEAT_NS, self.system.time_ns())

    def ready_all(self):
        for w in self.workers:
            if self.segment.worker_word(w.slot, ss.W_STATE) == ss.STARTING:
                self.ready(w)

    def heartbeat_all(self):
        for w in self.workers:
            self.segment.set_worker_word(w.slot, ss.W_HEARTBEAT_NS, self.system.time_ns())

    def exit_stopping(self):
        for w in self.workers:
            if w.stopping_since is not None:
                w.exit_code = 0

    def live_ids(self):
        return [w.worker_id for w in self.workers if w.alive() and w.stopping_since is None]
