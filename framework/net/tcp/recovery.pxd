cimport cython

from framework.net.tcp.bits cimport ACK, FIN, B_RECOVERY, B_TLP, B_TS, HALF, M, WRAP
from framework.net.tcp.connection cimport Connection
from framework.net.tcp.layer cimport TcpLayer
from framework.net.tcp.cc cimport _on_loss
from framework.net.tcp.output cimport _tx, output, S_LOST, S_RTX, S_SACKED

cdef enum:
    DUPTHRESH = 3

cpdef _dupack(Connection self)
cpdef _retransmit_head(Connection self)
@cython.locals(sb=list, new=list, d=cython.longlong, ln=cython.longlong, s=cython.longlong,
               e=cython.longlong, pos=cython.longlong, bs=cython.longlong, be=cython.longlong,
               smax=cython.longlong, una=cython.longlong, delivered=cython.longlong,
               first=bint)
cpdef long long _sack_update(Connection self, blocks, long long ack, tsecr, double now) except? -1
@cython.locals(L=TcpLayer, q=list, i=Py_ssize_t, mss=cython.longlong)
cpdef _dsack(Connection self, long long s, long long e)
cpdef _undo(Connection self)
@cython.locals(q=list, x=list, i=Py_ssize_t, n=Py_ssize_t, f=cython.longlong, sz=cython.longlong,
               delivered=cython.longlong)
cpdef long long _txq_sack(Connection self, long long s, long long e, tsecr, double now) except? -1
@cython.locals(q=list, x=list, n=Py_ssize_t, ln=Py_ssize_t, f=cython.longlong, sz=cython.longlong,
               end=cython.longlong, delivered=cython.longlong)
cpdef long long _txq_ack(Connection self, long long ack, tsecr, double now) except? -1
cpdef long long _pipe(Connection self) except? -1
@cython.locals(ts=double, f=cython.longlong, rtt=double)
cpdef _rack_update(Connection self, list x, tsecr, double now)
@cython.locals(w=double)
cpdef double _reo_wnd(Connection self) except? -1
@cython.locals(q=list, x=list, rts=double, rend=cython.longlong, limit=double, timeout=double,
               lost=cython.longlong, f=cython.longlong, ts=double, rem=double)
cpdef _rack_detect(Connection self, double now)
@cython.locals(delivered=cython.longlong, bits=int)
cpdef _rack_ack(Connection self, double now)
cpdef _rack_timeout(Connection self, double now)
@cython.locals(L=TcpLayer, flight=cython.longlong)
cpdef _enter_recovery(Connection self)
@cython.locals(rs=cython.longlong)
cpdef _recovery_exit(Connection self, tsecr)
@cython.locals(q=list, x=list, rs=cython.longlong)
cpdef _partial_undo(Connection self, tsecr)
@cython.locals(pipe=cython.longlong, ss=cython.longlong, mss=cython.longlong, fs=cython.longlong,
               sndcnt=cython.longlong, lim=cython.longlong)
cpdef _prr(Connection self, long long delivered)
@cython.locals(L=TcpLayer, q=list, x=list, mss=cython.longlong, maxseg=cython.longlong,
               pipe=cython.longlong, cwnd=cython.longlong, base=cython.longlong, i=Py_ssize_t,
               n=Py_ssize_t, f=cython.longlong, s=cython.longlong, e=cython.longlong,
               sz=cython.longlong, dlen=cython.longlong, off=cython.longlong, flags=int,
               sent=bint)
cpdef bint _rtx_lost(Connection self, double now) except -1
@cython.locals(L=TcpLayer, q=list, x=list, i=Py_ssize_t, nxt=cython.longlong, mss=cython.longlong,
               end=cython.longlong, hi=cython.longlong, seq=cython.longlong, off=cython.longlong,
               cw=cython.longlong, flags=int)
cpdef _tail_probe(Connection self, double now)
@cython.locals(L=TcpLayer, rto=double)
cpdef _rtt_sample(Connection self, double r)
