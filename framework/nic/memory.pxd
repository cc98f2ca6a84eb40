# The C layout of the in-process port: a pair calls into each other as C methods.
cimport cython

cdef class MemoryPort:
    cdef public object queue, csum_offload, gso, mtu
    cdef public dict stats
    cdef public MemoryPort peer
    cdef public Py_ssize_t capacity
    cdef public object _q
    cdef public int _efd
    cdef public bint _armed

    @cython.locals(n=Py_ssize_t, i=Py_ssize_t)
    cpdef list rx_burst(self, Py_ssize_t max=*)
    cdef _ring(self)
    @cython.locals(peer=MemoryPort, room=Py_ssize_t, n=Py_ssize_t)
    cpdef Py_ssize_t tx_burst(self, frames) except -1
