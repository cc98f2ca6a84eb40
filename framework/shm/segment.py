"""Creating and opening POSIX shared-memory segments, and a CPU memory fence."""
import _thread
import mmap
import os

import posix_ipc

from .naming import shm_name

PAGE = mmap.PAGESIZE


def open_segment(runid, purpose, size=None):
    """Create (size given, must not exist yet) or open (size None) a segment.

    Returns the posix_ipc.SharedMemory with its fd still open; the caller maps
    what it needs and then calls ``close_fd()``.
    """
    name = shm_name(runid, purpose)
    if size is None:
        return posix_ipc.SharedMemory(name)
    return posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)


def map_segment(shm, length, offset=0):
    return mmap.mmap(shm.fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                     offset=offset)


def unlink_quiet(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# A full memory barrier. x86 keeps stores in order and loads in order, but may
# let a load pass an earlier store (store->load reordering). The doorbell is a
# Dekker-style handshake (producer: store head, load sleep flag; consumer: store
# sleep flag, load head) and would lose a wakeup under that reordering. Python has
# no fence, but acquiring and releasing an uncontended lock runs a LOCK-prefixed
# instruction (sem_trywait's cmpxchg, sem_post's xadd in glibc), which is a full
# barrier on x86. About 80 ns; used once per batch, never per record.
_fence_lock = _thread.allocate_lock()
_fence_acquire = _fence_lock.acquire
_fence_release = _fence_lock.release


def fence():
    _fence_acquire()
    _fence_release()
