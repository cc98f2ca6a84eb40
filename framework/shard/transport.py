"""What the transports of both stream providers share: write flow control and the
lingering close's limits (asyncio's meanings; CONTRACTS section 5).

- ``write`` never blocks; above the high-water mark of unsent bytes the protocol's
  ``pause_writing`` is called, at or below the low-water mark ``resume_writing``
  (asyncio's defaults: 64 KiB and a quarter of it).
- A close whose peer may still be sending (input unread, or after an error response) is
  a lingering close: FIN after our data, then input is read and discarded until the
  peer's EOF, LINGER_TIME or LINGER_BYTES, so that no RST (which TCP sends when closing
  with unread data, RFC 2525) destroys the response in flight.
"""
import logging

log = logging.getLogger("framework.streams")

HIGH_WATER = 64 * 1024
LOW_WATER = HIGH_WATER // 4
LINGER_TIME = 2.0
LINGER_BYTES = 64 << 20


class ShardTransport:
    """Base of both providers' transports: the asyncio.Transport methods' guards and
    flow control. ``_protocol``, ``_high``, ``_low``, ``_write_paused``, ``_closing``,
    ``_lost``, ``_pending`` and ``_pending_len`` are slots of the transport; it implements ``_write``, ``_write_eof``,
    ``_close`` and ``_lingering_close``."""

    __slots__ = ()

    def write(self, data):
        if self._closing or self._lost or not data:
            return
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        self._write(data)

    def write_eof(self):
        if not (self._closing or self._lost):
            self._write_eof()

    def close(self):
        """FIN after everything written (lingering if the peer may still be sending)."""
        if not (self._closing or self._lost):
            self._closing = True
            self._close()

    def lingering_close(self):
        """Close after an error response: FIN after our data, then discard the peer's
        input until its EOF or the linger limits."""
        if not (self._closing or self._lost):
            self._closing = True
            self._lingering_close()

    def is_closing(self):
        return self._closing or self._lost

    def _init_flow(self, protocol):
        self._protocol = protocol
        self._high = HIGH_WATER
        self._low = LOW_WATER
        self._write_paused = False

    def _buffer(self, data):
        """Keep what cannot be sent now (``_pending``, None while empty on the user stack)
        and apply the high-water mark."""
        pending = self._pending
        if pending is None:
            self._pending = [data]
        else:
            pending.append(data)
        self._pending_len += len(data)
        if self._pending_len > self._high and not self._write_paused:
            self._write_paused = True
            self._call_protocol("pause_writing")

    def _maybe_pause_writing(self):
        if not self._write_paused and self._pending_len > self._high:
            self._write_paused = True
            self._call_protocol("pause_writing")

    def _maybe_resume_writing(self):
        if self._write_paused and self._pending_len <= self._low:
            self._write_paused = False
            self._call_protocol("resume_writing")

    def _call_protocol(self, name):
        fn = getattr(self._protocol, name, None)
        if fn is not None:
            try:
                fn()
            except Exception:
                log.exception("protocol %s() failed", name)

    def get_write_buffer_size(self):
        return self._pending_len

    def writelines(self, chunks):
        for c in chunks:
            self.write(c)

    def can_write_eof(self):
        return True

    def get_write_buffer_limits(self):
        return (self._low, self._high)

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_writing()

    def get_protocol(self):
        return self._protocol

    def set_protocol(self, protocol):
        self._protocol = protocol
