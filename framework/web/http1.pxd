# C layout of framework/web/http1.py (Cython pure-Python mode; the .py is the source).
cimport cython
from framework.web cimport h1writer
from framework.web.h1writer cimport BodyWriter
from framework.web.httpserver cimport HttpShared
from framework.web.httputil cimport (Request, absolute_authority, head_error, is_authority,
                                     split_target, valid_host)

cdef dict _METHOD_STR, _VERSION_STR, _PLAIN
cdef int _PAUSE_AT, _RESUME_AT
cdef Py_ssize_t _UPGRADE_BUFFER, _SPARE_READERS
cdef bint _REUSABLE

cdef class _RequestReader


cdef class HttpProtocol:
    cdef public HttpShared shared
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
    cdef public Request _current
    cdef public object _writer         # a BodyWriter while a framed body is being written
    cdef public object _status
    cdef public object _upgrade_rest   # bytes after an Upgrade head until detach(), or None
    cdef public Py_ssize_t _sent       # body bytes of the current response written so far
    cdef public bint _last             # retiring worker: the next response closes

    @cython.locals(reader=_RequestReader, nl=Py_ssize_t)
    cpdef data_received(self, data)
    cdef _wake_drainers(self, exc)
    cpdef pause_body(self)
    cpdef resume_body(self)
    cdef _drop_reader(self)
    cdef _dispatch(self, Request req)
    cdef _pump(self)
    @cython.locals(shared=HttpShared)
    cdef _run(self, Request req)
    @cython.locals(writer=BodyWriter, keep=bint, req=Request, shared=HttpShared)
    cpdef write_headers(self, status, reason, headers, chunk=*, bint last=*)
    cdef _body_out(self, head, chunk, bint last)
    @cython.locals(req=Request)
    cdef _response_done(self, status, nbytes)
    cdef _simple(self, Request req, status, allow=*)
    cdef _fail(self, status)
    cdef _close(self)


cdef class _RequestReader:
    cdef public HttpProtocol conn
    cdef public object parser
    cdef public bint in_hdrs
    cdef public bint line1
    cdef public bytes url
    cdef public list headers
    cdef public object body
    cdef public Py_ssize_t body_size
    cdef public Py_ssize_t hdr_size
    cdef public Py_ssize_t partial
    cdef public Request req
    cdef public object clen
    cdef public object expect
    cdef public Py_ssize_t max_hdr
    cdef public object body_limit
    cdef public bint llhttp_closed
    cdef public object upgrade         # the Upgrade header's value, or None
    cdef public int hosts              # Host lines in the request's head
    cdef public object host            # the (last) Host value, or None
    cdef public object te              # the Transfer-Encoding lines joined with ",", or None
    cdef public bint at_boundary       # the last feed ended between messages

    @cython.locals(conn=HttpProtocol, shared=HttpShared)
    cpdef on_message_begin(self)
    @cython.locals(n=Py_ssize_t, ln=Py_ssize_t)
    cpdef on_header(self, bytes name, bytes value)
    @cython.locals(conn=HttpProtocol, shared=HttpShared, req=Request, stream=bint)
    cpdef on_headers_complete(self)
    cdef _check_head(self, version, method, bytes url)
    @cython.locals(n=Py_ssize_t, conn=HttpProtocol)
    cpdef on_body(self, body)
    @cython.locals(conn=HttpProtocol, req=Request, keep=bint)
    cpdef on_message_complete(self)
