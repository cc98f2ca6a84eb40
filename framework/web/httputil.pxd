# C layout of framework/web/httputil.py (Cython pure-Python mode; the .py is the source).

cimport cython

cdef class Request:
    cdef public object method
    cdef public object uri
    cdef public object path
    cdef public object query
    cdef public object version
    cdef public object _headers
    cdef public object raw_headers
    cdef public object body
    cdef public object _remote_ip
    cdef public bint keep_alive
    cdef public object _query_args
    cdef public object _body_args
    cdef public object connection
    cdef public bint expect_continue
    cdef public object body_stream
    cdef public bint _body_taken
    cdef public double start_time
    cdef public object protocol


cpdef tuple split_target(bytes url)
cdef bytes _NAME_OK
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, c=int)
cpdef bint valid_host(bytes host)
cpdef int head_error(version, method, bytes url, int hosts, host, te)
cpdef absolute_authority(bytes url)
cpdef bint is_authority(bytes url)
