# C layout of framework/web/http1.py (Cython pure-Python mode; the .py is the source).
cimport cython
from framework.web cimport h1writer
from framework.web.h1writer cimport BodyWriter

cdef class _RequestReader


cdef class HttpProtocol:
    cdef public object shared
    cdef public object transport
    cdef public _RequestReader _reader
    cdef public object _remote_ip
    cdef public double deadline
    cdef public bint _closed
    cdef public bint _stopped
    cdef public bint _eof
    cdef public object _active
    cdef public object _queue
    cdef public bint _paused
    cdef public bint _in_msg
    cdef public object _task
    cdef public bint _wpaused
    cdef public object _drainers
    cdef public object _inbox
    cdef public int _rpaused
    cdef public object _current
    cdef public BodyWriter _writer
    cdef public object _status

    @cython.locals(reader=_RequestReader, nl=Py_ssize_t)
    cpdef data_received(self, data)
    cdef _wake_drainers(self, exc)
    cpdef pause_body(self)
    cpdef resume_body(self)
    cdef _drop_reader(self)
    cdef _dispatch(self, req)
    cdef _pump(self)
    cdef _run(self, req)
    @cython.locals(writer=BodyWriter, keep=bint)
    cpdef write_headers(self, status, reason, headers, chunk=*, bint last=*)
    @cython.locals(writer=BodyWriter)
    cdef _body_out(self, head, chunk, bint last, nbytes)
    cdef _response_done(self, status, nbytes)
    cdef _simple(self, req, status, allow=*)
    cdef _fail(self, status)
    cdef _close(self)


cdef class _RequestReader:
    cdef public HttpProtocol conn
    cdef public object parser
    cdef public bint in_hdrs
    cdef public bytes url
    cdef public list headers
    cdef public object body
    cdef public Py_ssize_t body_size
    cdef public Py_ssize_t hdr_size
    cdef public Py_ssize_t partial
    cdef public object req
    cdef public object clen
    cdef public object expect
    cdef public Py_ssize_t max_hdr
    cdef public object body_limit
    cdef public bint llhttp_closed
