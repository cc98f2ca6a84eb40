# The C layout of Stack: its own layers are typed (direct C calls into IPv4 and ARP);
# TCP is whatever tcp_factory built, reached through Python calls.
cimport cython

from framework.net.arp cimport ArpLayer
from framework.net.ipv4 cimport Ipv4Layer


cdef class Stack:
    cdef public bytes mac
    cdef public unsigned int ip
    cdef public object prefix, gateway
    cdef public int mtu
    cdef public object csum_offload, gso
    cdef public double now
    cdef public dict _counters
    cdef public list _tx
    cdef public ArpLayer arp
    cdef public Ipv4Layer ipv4
    cdef public object icmp, tcp, ip_output
    cdef public list vips, tcp_layers

    cpdef process(self, frames, now)
    @cython.locals(tx=list, out=list)
    cpdef list dispatch(self, now)
    cpdef bint output_pending(self) except -1
