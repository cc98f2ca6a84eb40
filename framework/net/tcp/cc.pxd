cimport cython

from framework.net.tcp.connection cimport Connection

cpdef long long _on_loss(Connection self, long long flight) except? -1
cpdef _cubic_ack(Connection self, long long acked, double now)
