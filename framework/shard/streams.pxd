# C layout of framework/shard/streams.py (Cython pure-Python mode; the .py is the source).
cimport cython
from framework.net.tcp.connection cimport Connection
from framework.shard.transport cimport ShardTransport

# the TCP event codes as C ints, for deliver's dispatch
cdef int _ACCEPT, _CONNECTED, _READABLE, _WRITABLE, _EOF, _CLOSED, _RESET, _ERROR

cdef class Streams


cdef class StreamTransport(ShardTransport):
    cdef public Connection _conn
    cdef public object _protocol
    cdef public Streams _streams
    cdef public object _pending          # list of bytes, or None while nothing waits
    cdef public Py_ssize_t _pending_len
    cdef public bint _closing
    cdef public bint _lost
    cdef public bint _paused_reading
    cdef public bint _write_paused
    cdef public Py_ssize_t _high
    cdef public Py_ssize_t _low
    cdef public bint _eof
    cdef public bint _linger
    cdef public object _linger_timer
    cdef public bint _eof_held
    cdef public long _data_turn

    @cython.locals(n=Py_ssize_t)
    cpdef _write(self, data)
    cpdef _write_eof(self)
    cpdef _close(self)
    cdef _close_now(self)
    cpdef _lingering_close(self)
    @cython.locals(n=Py_ssize_t)
    cpdef _flush(self)


cdef class Streams:
    cdef public object tcp
    cdef public bint eof_next_turn
    cdef public long _turn
    cdef public list _eofs_later
    cdef public object ctx
    cdef public object loop
    cdef public dict listeners
    cdef public Py_ssize_t open
    cdef public Py_ssize_t accepted
    cdef public set transports
    cdef public bint stopping
    cdef public bint retiring
    cdef public dict outbound
    cdef public dict held
    cdef public object connector

    @cython.locals(t=StreamTransport)
    cpdef bint new_turn(self) except -1
    cpdef bint eofs_waiting(self)
    @cython.locals(ev=int, t=StreamTransport, conn=Connection)
    cpdef deliver(self, list events)
    @cython.locals(t=StreamTransport)
    cdef _accept(self, Connection conn)
    cpdef _read(self, StreamTransport t)
    cdef _eof(self, StreamTransport t)
    cdef _read_before_eof(self, StreamTransport t)
    cdef bint _data(self, StreamTransport t, data) except -1
    cpdef _lost(self, StreamTransport t, exc)
