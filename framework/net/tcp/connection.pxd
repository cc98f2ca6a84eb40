# The C layout of Connection: every field, and the methods connection.py defines (the
# rest of its methods are the functions of output/recovery/receive/segments/timers,
# which cimport this file and take the connection as their first argument).
cimport cython

from framework.net.tcp.bits cimport (B_ACK_NOW, B_APP_CLOSED, B_DONE, B_ESTAB, B_KA, B_NAGLE,
                                     B_PASSIVE, B_PENDING, B_PTO, B_RD_EV, B_RECOVERY, B_SACK,
                                     B_TLP, B_WANT_WR, ACK, RST)
from framework.net.tcp.consts cimport (CLOSED, CLOSE_WAIT, CLOSING, ESTABLISHED, EV_CLOSED, EV_ERROR,
                                       FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, SYN_RECEIVED, SYN_SENT,
                                       TIME_WAIT)
from framework.net.tcp.layer cimport Listener, TcpLayer


cdef class Connection:
    cdef public TcpLayer layer
    cdef public tuple key
    cdef public object user, error
    cdef public Listener listener
    cdef public int state, bits, snd_ws, rcv_ws
    cdef public long long psum, iss, irs
    cdef public long long snd_una, snd_nxt, snd_max, snd_wnd, max_sndwnd, snd_wl1, snd_wl2
    cdef public long long sbuf_seq
    cdef public object sndbuf, fin_seq
    cdef public long long rcv_nxt, rcv_adv, rcvlen, last_ack_sent, unacked
    cdef public list rcvq
    cdef public object ooo, ooo_fin
    cdef public long long mss, rcv_mss, ts_recent
    cdef public object srtt, rtt_seq
    cdef public double rttvar, rto, rtt_time
    cdef public long long retries, backoff
    cdef public long long cwnd, ssthresh, dupacks, recover
    cdef public double ca_acc, last_send
    cdef public object t_rtx, t_delack, t_ka, heap_at
    cdef public double ka_idle, ka_intvl
    cdef public long long ka_cnt, ka_probes
    cdef public object scoreboard, dsack_tx, txq, t_reo, sack_recent
    cdef public long long sack_last, sacked_out, lost_out, delivered, rack_end, rack_fack
    cdef public double rack_ts, rack_rtt, min_rtt
    cdef public bint reo_seen
    cdef public long long reo_mult, reo_persist, dsack_round, prr_delivered, prr_out, recover_fs
    cdef public long long undo_cwnd, undo_ssthresh, undo_marker, undo_retrans, retrans_stamp
    cdef public double w_max, k, w_est
    cdef public object epoch

    cdef public object bbr

    cpdef long long readable(self)
    cpdef long long send_space(self)
    cpdef long long send(self, data) except? -1
    cpdef bytes recv(self, max=*)
    cpdef shutdown(self)
    cpdef close(self)
    cpdef abort(self)
    cpdef _want_output(self)
    cpdef _arm(self, double when)
    cpdef _arm_rtx(self, double now)
    cpdef _time_wait(self, double now)
    cpdef _fw2_timer(self)
    cpdef _final_event(self, ev)
    cpdef _finish(self, ev)
    cpdef _fail(self, reason, bint send_rst=*)
