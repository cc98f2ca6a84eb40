"""A doorbell: how a consumer sleeps on its rings without making a busy pair pay.

Choice: a named FIFO (in /dev/shm, next to the segments) plus one shared word.
- The FIFO gives a real fd, so the shard loop can sleep in one poll() on the NIC
  fd and the doorbell together; a posix_ipc semaphore has no fd and would need a
  second thread or a timed-out spin. An eventfd has an fd too, but no name: only
  processes forked after its creation could share it. The FIFO can be reopened by
  name (a restarted or unrelated process, ``attach``), is removed by the same
  cleanup as the segments, and both ends open it O_RDWR|O_NONBLOCK, so open never
  blocks and a write with nobody listening never fails (a full pipe = already rung).
- The shared word ``seq`` is written only by the consumer: odd while it is (about
  to be) asleep, even while awake. A producer, after publishing its ring head,
  rings only when it sees an odd seq it has not rung for yet: one write() per
  sleep episode and per producer, none at all while the consumer is busy.

Consumer side, for a loop that polls other fds too::

    bell.prepare_sleep()              # announce (and fence) ...
    if all(r.empty() for r in rings): # ... then re-check: no lost wakeup
        poll([nic_fd, bell.fileno()], timeout)
        if bell fd was readable: bell.drain()
    bell.awake()

or simply ``bell.wait(timeout, rings)``.

Several rings may share one doorbell (all rings into one shard): one fd to poll.
One consumer per doorbell; any number of producers.
"""
import os
import select
import time

from .naming import shm_path
from .segment import fence, map_segment, open_segment, unlink_quiet

_MAGIC = b"FWBELL1\0"
_SIZE = 64
_SEQ = 1  # u64 at byte 8: odd = consumer sleeping


class Doorbell:
    __slots__ = ("runid", "purpose", "fd", "_mm", "_q", "_rung", "_poll", "__weakref__")

    def __init__(self, runid, purpose, mm, fd):
        self.runid = runid
        self.purpose = purpose
        self._mm = mm
        # u64 view: single 8-byte loads/stores (struct.pack_into zero-fills first,
        # and a producer reading that transient 0 would skip a needed ring).
        self._q = memoryview(mm).cast("Q")
        self.fd = fd
        # The last odd seq this process rang for. 0 is never a sleeping value,
        # so a producer attached (or forked) while the consumer sleeps rings once.
        self._rung = 0
        self._poll = None

    @staticmethod
    def fifo_path(runid, purpose):
        return shm_path(runid, purpose + ".fifo")

    @classmethod
    def create(cls, runid, purpose):
        shm = open_segment(runid, purpose, _SIZE)
        try:
            mm = map_segment(shm, _SIZE)
        finally:
            shm.close_fd()
        mm[0:8] = _MAGIC
        path = cls.fifo_path(runid, purpose)
        try:
            os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        except BaseException:
            mm.close()
            unlink_quiet(path)
            unlink_quiet(shm_path(runid, purpose))
            raise
        return cls(runid, purpose, mm, fd)

    @classmethod
    def attach(cls, runid, purpose):
        shm = open_segment(runid, purpose)
        try:
            mm = map_segment(shm, _SIZE)
        finally:
            shm.close_fd()
        if mm[0:8] != _MAGIC:
            mm.close()
            raise ValueError(f"{shm_path(runid, purpose)} is not a doorbell")
        fd = os.open(cls.fifo_path(runid, purpose), os.O_RDWR | os.O_NONBLOCK)
        return cls(runid, purpose, mm, fd)

    def __reduce__(self):  # for spawn-started processes: reattach by name
        return (Doorbell.attach, (self.runid, self.purpose))

    # -- producer side -------------------------------------------------------
    def notify(self):
        """Ring if the consumer announced sleep since our last ring.

        Call after publishing data AND a fence() (Ring.push_many does both).
        Returns True if it rang (a syscall was made).
        """
        s = self._q[_SEQ]
        if s & 1 and s != self._rung:
            self._rung = s
            self.ring()
            return True
        return False

    def ring(self):
        """Unconditionally wake the consumer (one write)."""
        try:
            os.write(self.fd, b"\x01")
        except BlockingIOError:
            pass  # pipe full: it is rung already

    # -- consumer side -------------------------------------------------------
    def fileno(self):
        """Readable when rung. Poll it together with the NIC fd."""
        return self.fd

    def prepare_sleep(self):
        """Announce that the consumer is going to sleep. Re-check the rings after this."""
        q = self._q
        s = q[_SEQ]
        # Always a new odd value: an odd one already there was left by a consumer
        # that died asleep, and producers may have rung for it already.
        q[_SEQ] = s + 2 if s & 1 else s + 1
        fence()  # the flag must be visible before we re-read the ring heads

    def awake(self):
        """The consumer is running again: producers stop ringing."""
        q = self._q
        s = q[_SEQ]
        if s & 1:
            q[_SEQ] = s + 1

    def drain(self):
        """Swallow the pending rings (after the fd was readable)."""
        try:
            while len(os.read(self.fd, 4096)) == 4096:
                pass
        except BlockingIOError:
            pass

    @property
    def sleeping(self):
        return bool(self._q[_SEQ] & 1)

    @property
    def episodes(self):
        """How many times the consumer announced sleep (for stats and tests)."""
        return (self._q[_SEQ] + 1) // 2

    def wait(self, timeout=None, rings=()):
        """Sleep until rung or timeout (seconds, None = forever) unless a ring has data.

        Returns True if some ring in ``rings`` has data, False once the timeout
        passed. A stale ring (rung for an earlier sleep the consumer left by
        itself) wakes poll() with nothing to do: it goes back to sleep. With no
        rings, returns True at the first ring.
        """
        for r in rings:
            if not r.empty():
                return True
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.prepare_sleep()
            try:
                for r in rings:
                    if not r.empty():
                        return True
                if deadline is None:
                    ms = -1
                else:
                    ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
                rung = self._poll.poll(ms)
                if rung:
                    self.drain()
            finally:
                self.awake()
            for r in rings:
                if not r.empty():
                    return True
            if rung and not rings:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self._mm.closed:
            self._q.release()
            self._mm.close()

    def unlink(self):
        """Remove the names (segment and FIFO); mappings and fds stay valid."""
        unlink_quiet(shm_path(self.runid, self.purpose))
        unlink_quiet(self.fifo_path(self.runid, self.purpose))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
