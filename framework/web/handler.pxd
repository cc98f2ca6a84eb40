# C layout of framework/web/handler.py (Cython pure-Python mode; the .py is the source).
# RequestHandler is the base of users' handlers: every method they may override is def or
# cpdef (a Python subclass's override is found and called), and __dict__ keeps arbitrary
# attributes working for subclasses with or without __slots__.
cimport cython

cdef dict _HEADER_KEYS
cdef object _ARG_DEFAULT, _BASE_ON_FINISH


cdef class RequestHandler:
    cdef dict __dict__
    cdef public object app
    cdef public object request
    cdef public object path_kwargs
    cdef public object state
    cdef public object _conn
    cdef public object _status
    cdef public object _reason
    cdef public dict _headers
    cdef public list _buf
    cdef public bint _finished
    cdef public bint _headers_written
    cdef public object _ctx

    @cython.locals(headers=dict)
    cpdef set_header(self, name, value)
    cpdef write(self, chunk)
    @cython.locals(buf=list)
    cpdef finish(self, chunk=*)
