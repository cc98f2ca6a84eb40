cimport cython

from framework.net.tcp.bits cimport ACK, FIN, B_RECOVERY, B_SACK, B_TLP, HALF, M
from framework.net.tcp.connection cimport Connection
from framework.net.tcp.layer cimport TcpLayer
from framework.net.tcp.output cimport _tx

cpdef _dupack(Connection self)
cpdef _enter_recovery(Connection self)
cpdef _sack_loss_check(Connection self)
cpdef _sack_update(Connection self, blocks, long long ack)
cpdef long long _pipe(Connection self) except? -1
cpdef bint _sack_rtx(Connection self) except -1
cpdef _retransmit_head(Connection self)
cpdef _recovery_probe(Connection self, double now)
cpdef _tail_probe(Connection self, double now)
@cython.locals(L=TcpLayer, rto=double)
cpdef _rtt_sample(Connection self, double r)
cpdef long long _on_loss(Connection self, long long flight) except? -1
cpdef _cubic_ack(Connection self, long long acked, double now)
