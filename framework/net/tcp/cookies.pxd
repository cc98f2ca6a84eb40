cimport cython

from framework.net.tcp.bits cimport ACK, SYN, B_ESTAB, B_PASSIVE, B_SACK, B_TS, B_WS, M
from framework.net.tcp.consts cimport ESTABLISHED
from framework.net.tcp.connection cimport Connection
from framework.net.tcp.layer cimport Listener, TcpLayer

cpdef send_cookie(TcpLayer layer, Listener lst, tuple key, long long seq, opts)
@cython.locals(conn=Connection)
cpdef check_cookie(TcpLayer layer, Listener lst, tuple key, long long seq, long long ack,
                   long long win, frame, Py_ssize_t ooff, Py_ssize_t doff)
