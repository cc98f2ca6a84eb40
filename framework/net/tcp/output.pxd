cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy

from framework.net.tcp.bits cimport (ACK, FIN, PSH, SYN, B_ACK_NOW, B_CWLTD, B_NAGLE, B_PENDING,
                                     B_RECOVERY, B_SACK, B_TS, B_WS, M)
from framework.net.tcp.consts cimport ESTABLISHED, LAST_ACK, SYN_SENT
from framework.net.tcp.connection cimport Connection
from framework.net.ipv4 cimport Ipv4Layer
from framework.net.tcp.layer cimport TcpLayer

# flags of a transmit queue entry (output.py)
cdef enum:
    S_SACKED = 1
    S_LOST = 2
    S_RTX = 4

@cython.locals(conn=Connection, cut=Connection, bulk=list, short=list, burst=cython.longlong,
               unsent=cython.longlong)
cpdef flush_pending(TcpLayer L, list pending, list deferred, double now)
@cython.locals(L=TcpLayer)
cpdef output(Connection self, double now, bint force=*)
@cython.locals(q=list, x=list, f=cython.longlong, sacked=cython.longlong, lost=cython.longlong)
cpdef _txq_add(Connection self, long long seq, long long end, double now)
@cython.locals(L=TcpLayer)
cpdef _send_syn(Connection self)
@cython.locals(L=TcpLayer, hl=Py_ssize_t, dlen=Py_ssize_t, tl=Py_ssize_t, win=cython.longlong,
               s=cython.longlong, csum=cython.longlong, key=tuple, rport=cython.longlong,
               lport=cython.longlong, ack=cython.longlong, bits=int, nmax=int, room=cython.longlong,
               seg_mss=cython.longlong, tsval=cython.longlong, seg=bytes, ip4=Ipv4Layer)
cpdef _tx(Connection self, int flags, long long seq, data=*, opts=*)
@cython.locals(opt=bytes, q="unsigned char*")
cdef bytes _ts_opt(unsigned int tsval, unsigned int tsecr)
@cython.locals(olen=Py_ssize_t, dlen=Py_ssize_t, op="const unsigned char*", seg=bytes,
               q="unsigned char*", pb=Py_buffer)
cdef bytes _segment(unsigned int lport, unsigned int rport, unsigned int seq, unsigned int ack,
                    unsigned int hl, unsigned int flags, unsigned int win, unsigned int csum,
                    bytes opts, data)
cdef void _put32(unsigned char* q, unsigned int v)
