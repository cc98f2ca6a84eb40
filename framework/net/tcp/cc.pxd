cimport cython

from framework.net.tcp.bits cimport B_CWLTD
from framework.net.tcp.connection cimport Connection


cdef double BBR_CWND_GAIN, BBR_FULL_BW_GROWTH, BBR_MIN_RTT_FLOOR
cdef Py_ssize_t BBR_BW_ROUNDS
cdef long long BBR_FULL_BW_ROUNDS


cdef class BbrState:
    cdef public double round_start, bw, full_bw
    cdef public long long round_dlv, round_end, dlv, full_cnt
    cdef public list samples
    cdef public bint filled


@cython.locals(b=BbrState, t=cython.longlong, cw=cython.longlong)
cpdef long long _on_loss(Connection self, long long flight) except? -1
cpdef _cubic_ack(Connection self, long long acked, double now)
@cython.locals(b=BbrState, dt=double, rate=double, bw=double, r=double, q=list)
cpdef _bbr_sample(Connection self, long long delivered, double now)
@cython.locals(b=BbrState, mss=cython.longlong, t=cython.longlong, bdp=cython.longlong, rtt=double)
cpdef long long _bbr_target(Connection self) except? -1
@cython.locals(b=BbrState, cw=cython.longlong, t=cython.longlong)
cpdef _bbr_grow(Connection self, long long acked)
