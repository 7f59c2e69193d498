"""A mapped POSIX shared-memory segment (posix_ipc + mmap), with typed views."""
from __future__ import annotations

import mmap
import os
from typing import Optional

import posix_ipc


class Segment:
    """Create (`size` given) or open a segment. `q` is a u64 view of the whole mapping."""

    def __init__(self, name: str, size: Optional[int] = None, *, exclusive: bool = True,
                 keep_fd: bool = False):
        self.name = name
        self.fd: Optional[int] = None
        if size is None:
            shm = posix_ipc.SharedMemory(name)
        else:
            flags = posix_ipc.O_CREX if exclusive else posix_ipc.O_CREAT
            shm = posix_ipc.SharedMemory(name, flags, mode=0o600, size=size)
        try:
            self.size = shm.size
            if self.size <= 0:
                raise ValueError(f"shared-memory segment {name} is empty")
            self.mmap = mmap.mmap(shm.fd, self.size)
            self.inode = os.fstat(shm.fd).st_ino  # identifies this object if the name is reused
        except BaseException:
            shm.close_fd()
            raise
        if keep_fd:  # record locks are taken on it (see service_segment.QueueLock)
            self.fd = shm.fd
        else:
            shm.close_fd()
        self.buf = memoryview(self.mmap)
        self.q = self.buf[: self.size - self.size % 8].cast("Q")
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.q.release()
        self.buf.release()
        try:
            self.mmap.close()
        except BufferError:
            # a numpy array still views this memory (zero-copy decode); the mapping stays
            # alive until that array is garbage-collected.
            pass

    def replaced(self) -> bool:
        """True when the name no longer refers to this segment (unlinked, or made anew)."""
        try:
            return os.stat(f"/dev/shm/{self.name.lstrip('/')}").st_ino != self.inode
        except FileNotFoundError:
            return True

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
