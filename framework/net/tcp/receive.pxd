cimport cython

from framework.net.tcp.bits cimport ACK, B_ACK_NOW, B_APP_CLOSED, B_EOF, B_PENDING, B_RD_EV, B_SACK, M
from framework.net.tcp.consts cimport (CLOSE_WAIT, CLOSING, ESTABLISHED, EV_EOF, EV_READABLE,
                                       FIN_WAIT_1, FIN_WAIT_2)
from framework.net.tcp.connection cimport Connection
from framework.net.tcp.layer cimport TcpLayer
from framework.net.tcp.output cimport _tx

@cython.locals(L=TcpLayer)
cpdef _in_data(Connection self, buf, Py_ssize_t doff, Py_ssize_t dend, Py_ssize_t dlen,
               long long d, int fin, double now)
@cython.locals(q=list, new=list, x=list, i=Py_ssize_t, n=Py_ssize_t, e=cython.longlong,
               pos=cython.longlong, bs=cython.longlong, be=cython.longlong, lim=cython.longlong)
cpdef bint _ooo_insert(Connection self, long long s, data) except -1
@cython.locals(q=list, x=list, n=Py_ssize_t, k=Py_ssize_t, nxt=cython.longlong,
               start=cython.longlong, bs=cython.longlong, be=cython.longlong)
cpdef _ooo_merge(Connection self)
@cython.locals(L=TcpLayer)
cpdef _in_fin(Connection self, double now)
@cython.locals(blocks=list, chosen=list, out=list, b=list, n=Py_ssize_t)
cpdef bytes _sack_option(Connection self, int nmax)
