# C layout of framework/web/h1writer.py (Cython pure-Python mode; the .py is the source).
cimport cython

cdef bytes _CLOSE, _KEEP_ALIVE, _CHUNKED
cdef dict _header_bytes_cache


cdef class BodyWriter:
    cpdef data(self, chunk)
    cpdef end(self)

cdef class ContentLengthWriter(BodyWriter):
    cdef public object left

cdef class ChunkedWriter(BodyWriter):
    pass

cdef class Http10Writer(BodyWriter):
    pass

cdef class _WholeBodyWriter(BodyWriter):
    pass

cdef class _NoBodyWriter(BodyWriter):
    pass


cpdef bytes status_line(status, reason=*)
@cython.locals(items=object, block=bytes)
cpdef bytes header_block(headers)
@cython.locals(block=bytes, connection=bytes, line=bytes)
cpdef bytes response_head(status, reason, headers, bytes framing, bint keep_alive, version,
                          bytes prefix, bytes default_ctype)
@cython.locals(line=bytes)
cpdef tuple body_framing(method, status, version, declared, whole=*)
