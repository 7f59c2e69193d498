"""A mapped POSIX shared-memory segment (posix_ipc + mmap), with typed views."""
from __future__ import annotations

import mmap
from typing import Optional

import posix_ipc


class Segment:
    """Create (`size` given) or open a segment. `q` is a u64 view of the whole mapping."""

    def __init__(self, name: str, size: Optional[int] = None, *, exclusive: bool = True):
        self.name = name
        if size is None:
            shm = posix_ipc.SharedMemory(name)
        else:
            flags = posix_ipc.O_CREX if exclusive else posix_ipc.O_CREAT
            shm = posix_ipc.SharedMemory(name, flags, mode=0o600, size=size)
        try:
            self.size = shm.size
            self.mmap = mmap.mmap(shm.fd, self.size)
        finally:
            shm.close_fd()
        self.buf = memoryview(self.mmap)
        self.q = self.buf[: self.size - self.size % 8].cast("Q")
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.q.release()
        self.buf.release()
        try:
            self.mmap.close()
        except BufferError:
            # a numpy array still views this memory (zero-copy decode); the mapping stays
            # alive until that array is garbage-collected.
            pass

    def unlink(self) -> None:
        try:
            posix_ipc.unlink_shared_memory(self.name)
        except posix_ipc.ExistentialError:
            pass


def open_semaphore(name: str, initial: Optional[int] = None) -> posix_ipc.Semaphore:
    if initial is None:
        return posix_ipc.Semaphore(name)
    return posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=initial)


def unlink_semaphore(name: str) -> None:
    try:
        posix_ipc.unlink_semaphore(name)
    except posix_ipc.ExistentialError:
        pass
