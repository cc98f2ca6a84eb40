cimport cython

from framework.net.tcp.bits cimport (ACK, FIN, RST, SYN, B_ACK_NOW, B_APP_CLOSED, B_CWLTD, B_DONE,
                                     B_ESTAB, B_KA, B_PASSIVE, B_PENDING, B_PTO, B_RD_EV,
                                     B_RECOVERY, B_SACK, B_TLP, B_TS, B_WANT_WR, B_WS, HALF, M,
                                     WRAP)
from framework.net.tcp.consts cimport (CLOSED, CLOSING, ESTABLISHED, EV_CLOSED, EV_CONNECTED,
                                       EV_READABLE, EV_RESET, EV_WRITABLE, FIN_WAIT_1, FIN_WAIT_2,
                                       LAST_ACK, SYN_RECEIVED, SYN_SENT, TIME_WAIT)
from framework.net.tcp.connection cimport Connection
from framework.net.tcp.layer cimport Listener, TcpLayer
from framework.net.tcp.output cimport _send_syn, _tx
from framework.net.tcp.receive cimport _in_data, _in_fin
from framework.net.tcp.cc cimport BbrState, _bbr_grow, _bbr_sample, _cubic_ack
from framework.net.tcp.recovery cimport (_dupack, _partial_undo, _rack_ack, _recovery_exit, _retransmit_head,
                                         _rtt_sample, _sack_update, _txq_ack)

@cython.locals(L=TcpLayer)
cpdef passive_open(Connection self, Listener lst, long long seq, long long win, opts)
@cython.locals(b="const unsigned char*", tsval=cython.longlong, tsecr=cython.longlong)
cpdef tuple _usual_options(Connection self, buf, Py_ssize_t ooff, Py_ssize_t doff)
@cython.locals(L=TcpLayer, fast=bint, probe=bint, ok=bint, sacked=bint, rcv_nxt=cython.longlong,
               dlen=cython.longlong, una=cython.longlong, da=cython.longlong, d=cython.longlong,
               seglen=cython.longlong, wnd=cython.longlong, sack=cython.longlong,
               sseq=cython.longlong, wscaled=cython.longlong, cut=cython.longlong,
               over=cython.longlong, un=cython.longlong, bits=int, st=int, now=double)
cpdef process(Connection self, int flags, long long seq, long long ack, long long win, buf,
              Py_ssize_t ooff, Py_ssize_t doff, Py_ssize_t dend)
@cython.locals(L=TcpLayer)
cpdef _in_syn_sent(Connection self, int flags, long long seq, long long ack, long long win, opts,
                   tsval)
@cython.locals(L=TcpLayer, olen=cython.longlong, mss=cython.longlong)
cpdef _negotiate(Connection self, opts, tsval)
@cython.locals(L=TcpLayer, lst=Listener)
cpdef bint _established(Connection self, long long win, long long sseq, long long sack,
                        bint syn=*) except -1
@cython.locals(L=TcpLayer)
cpdef _in_rst(Connection self)
cpdef _challenge_ack(Connection self)
@cython.locals(L=TcpLayer, n=cython.longlong, blen=cython.longlong, r=cython.longlong,
               mss=cython.longlong, flight=cython.longlong, cw=cython.longlong, st=int, bits=int)
cpdef _on_ack(Connection self, long long sack, long long acked, tsecr, double now)
