cimport cython

from framework.net.tcp.bits cimport ACK, FIN, RST, SYN, B_TS, HALF, M
from framework.net.tcp.consts cimport CLOSED, TIME_WAIT
from framework.net.tcp.layer cimport TcpLayer
from framework.net.tcp.connection cimport Connection


cdef class TimeWait:
    cdef public TcpLayer layer
    cdef public tuple key
    cdef public int state, bits
    cdef public long long rcv_nxt, snd_nxt, ts_recent, win
    cdef public object t_rtx, heap_at

    @cython.locals(L=TcpLayer, d=cython.longlong)
    cpdef process(self, int flags, long long seq, long long ack, long long win, buf,
                  Py_ssize_t ooff, Py_ssize_t doff, Py_ssize_t dend)
    cpdef _ack(self)
    cpdef _arm(self, double when)
    cpdef poll_at(self)
    cpdef on_timer(self, double now)
    cpdef _finish(self, ev=*)


@cython.locals(L=TcpLayer, tw=TimeWait, w=cython.longlong)
cpdef TimeWait time_wait(Connection conn, double now)
