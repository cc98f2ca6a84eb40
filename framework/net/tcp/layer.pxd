# The C layout of TcpLayer and Listener. Connections (connection.pxd) cimport this; this
# file cimports no connection module (no cycle): the layer reaches its connections
# through segments/output/timers functions it imports at run time.
cimport cython

from framework.net.ipv4 cimport Ipv4Layer
from framework.net.tcp.bits cimport ACK, FIN, RST, SYN, B_TS, HALF, M
from framework.net.tcp.consts cimport EV_ACCEPT, SYN_RECEIVED, SYN_SENT, TIME_WAIT

cdef class Listener:
    cdef public long long port, backlog, syn_backlog, syn_count, acc_count
    cdef public object cookie_time


cdef class TcpLayer:
    cdef public Ipv4Layer ip4
    cdef public object config, ip_output, vh_partial, tw_queue, _isn_hash, _cookie_secret
    cdef public object _acc_item
    cdef public long long local_ip, mtu, mss, gso_max, rcvbuf, sndbuf, lowat, initial_window
    cdef public long long max_time_wait, challenge_ack_limit
    cdef public int rcv_ws
    cdef public bint csum_offload, gso, cubic, timestamps, window_scale, sack
    cdef public double delack, initial_rto, min_rto, max_rto, fin_wait2, time_wait
    cdef public bint nagle, keepalive
    cdef public double ka_idle, ka_intvl
    cdef public long long ka_cnt
    cdef public dict flows, listeners, syn_opts, counters
    cdef public list events, _timers, _pending, _deferred
    cdef public long long tx_burst, tx_left
    cdef public long long tw_count, _tseq, ts_off, _eph, _chack_sec, _chack_n, _psum_base
    cdef public Py_ssize_t _acc_pos, _timers_max
    cdef public double now
    cdef public int handover
    cdef public object held_syns, predecessor
    cdef public unsigned long long _isn_k0, _isn_k1

    @cython.locals(c=dict, sport=cython.longlong, dport=cython.longlong, seq=cython.longlong,
                   ack=cython.longlong, offb=int, flags=int, win=cython.longlong,
                   doff=Py_ssize_t, lst=Listener, key=tuple, b="const unsigned char*", h=Py_ssize_t)
    cpdef input(self, frame, long long src, long long dst, Py_ssize_t l4_off, Py_ssize_t l4_end,
                bint csum_trusted, double now)
    cpdef poll(self, double now)
    cpdef flush(self, double now)
    cpdef bint output_pending(self)
    cdef _passive_open(self, Listener lst, tuple key, long long seq, long long win, frame,
                       Py_ssize_t ooff, Py_ssize_t doff, opts)
    cpdef long long _isn(self, tuple key, double now)
    cpdef long long _psum(self, long long rip)
    cdef bint _accept_room(self, Listener lst)
    cdef _accepted(self, conn, Listener lst)
    cdef bint _challenge_ok(self)
    cpdef _send_rst(self, tuple key, long long seq, long long ack, int flags)
    cpdef _send_raw(self, tuple key, long long seq, long long ack, int flags, long long win, opts)


ctypedef unsigned long long u64
cdef u64 _M64, _M32, _SIP0, _SIP1, _SIP2, _SIP3, _SIP_LEN12
@cython.locals(v0=u64, v1=u64, v2=u64, v3=u64, m=u64, i=int, j=int)
cdef unsigned int _siphash_3u32(u64 k0, u64 k1, u64 a, u64 b, u64 c)
cdef (u64, u64, u64, u64) _sipround(u64 v0, u64 v1, u64 v2, u64 v3)
