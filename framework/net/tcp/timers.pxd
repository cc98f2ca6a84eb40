cimport cython

from framework.net.tcp.bits cimport (ACK, B_ACK_NOW, B_DONE, B_KA, B_PASSIVE, B_PTO, B_RECOVERY,
                                     B_TLP)
from framework.net.tcp.consts cimport (CLOSED, CLOSE_WAIT, ESTABLISHED, EV_CLOSED, FIN_WAIT_2,
                                       LAST_ACK, SYN_RECEIVED, SYN_SENT, TIME_WAIT)
from framework.net.tcp.connection cimport Connection
from framework.net.tcp.layer cimport TcpLayer
from framework.net.tcp.output cimport _send_syn, _tx, output
from framework.net.tcp.cc cimport _on_loss
from framework.net.tcp.recovery cimport _rack_timeout, _tail_probe

@cython.locals(heap=list, conn=Connection)
cpdef fire_timers(TcpLayer L, double now)
@cython.locals(heap=list, conn=Connection)
cpdef next_deadline(TcpLayer L)
cpdef poll_at(Connection self)
cpdef on_timer(Connection self, double now)
@cython.locals(L=TcpLayer)
cpdef _rtx_timeout(Connection self, double now)
cpdef _ka_timeout(Connection self, double now)
