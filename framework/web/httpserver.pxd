# C layout of framework/web/httpserver.py (Cython pure-Python mode; the .py is the source).

cdef class HttpConfig:
    cdef public object max_body_size
    cdef public Py_ssize_t max_header_size
    cdef public double idle_timeout
    cdef public double request_timeout
    cdef public object server_header
    cdef public object default_content_type
    cdef public object access_log
    cdef public object trusted_proxies
    cdef public object scheme


cdef class HttpShared:
    cdef public object app
    cdef public object ctx
    cdef public object loop
    cdef public object router
    cdef public HttpConfig config
    cdef public set conns
    cdef public object _sweep_handle
    cdef public double _tick
    cdef public double _prefix_until
    cdef public bytes _prefix
    cdef public bytes ctype_line
    cdef public object clock
    cdef public bytes server_line
    cdef public object access_log
    cdef public long long requests
    cdef public list readers

    cpdef bytes prefix(self)
    cpdef track(self, conn)
    cpdef untrack(self, conn)
