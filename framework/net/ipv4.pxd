# The C layout of Ipv4Layer. It cimports the layers below it (ARP, checksum), never the
# stack or TCP above it: those reach it through Python callables.
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcmp, memcpy

from framework.net.arp cimport ArpLayer, Neighbour
from framework.net.checksum cimport fold, word_sum

# the numbers the per-frame code uses, as C values (assigned where the .py imports or sets them)
cdef Py_ssize_t ETH_LEN, VNET_LEN, L3, L4_NO_OPTIONS, MAX_TOTAL_LENGTH, _MAX_TEMPLATES, _MAX_GOOD_SRC
cdef unsigned int DEFAULT_TTL, FLAG_DF, PROTO_ICMP, PROTO_TCP, _TTL_PROTO
cdef unsigned int BROADCAST, MULTICAST, LOOPBACK_NET


cdef class Ipv4Layer:
    cdef public bytes mac
    cdef public unsigned int ip, mask, net, bcast
    cdef public object gateway
    cdef public Py_ssize_t mtu
    cdef public dict counters
    cdef public list tx
    cdef public ArpLayer arp
    cdef public object tcp_input, icmp_input, other
    cdef public set good_src
    cdef public dict templates
    cdef public unsigned int ip_id
    cdef public double now
    cdef public object reasm
    cdef public dict local_extra
    cdef public list aliases

    @cython.locals(c=dict, mymac=bytes, mp="const unsigned char*", myip="unsigned int", ip_obj=object,
                   good_src=set, n=Py_ssize_t, p="const unsigned char*", etype="unsigned int",
                   vhl="unsigned int", tot="unsigned int", frag="unsigned int",
                   proto="unsigned int", src="unsigned int", dst="unsigned int", l4=Py_ssize_t,
                   end=Py_ssize_t, for_us=bint, extra=dict, inputs=tuple, bad_sum=bint, bad_src=bint, trusted=bint)
    cpdef rx(self, frames, now)
    cdef inline bint _martian(self, unsigned int src)
    cdef bint _src_ok(self, unsigned int src) except -1

    @cython.locals(t=tuple, valid_until=double, tot=Py_ssize_t, ident="unsigned int",
                   s="unsigned int")
    cpdef output(self, dst, int proto, payload, bytes vnet_hdr=*)
    @cython.locals(e=Neighbour, now=double)
    cdef _output_slow(self, dst, int proto, payload, bytes vnet_hdr)
    cpdef neighbour_changed(self, ip, queued)
    cpdef Ipv4Layer alias(self, unsigned int ip)


@cython.locals(plen=Py_ssize_t, vp="const unsigned char*", pp="const unsigned char*",
               ap="const unsigned char*", dp="const unsigned char*", q="unsigned char*",
               frame=bytes)
cdef bytes _frame(bytes vnet_hdr, bytes prefix, unsigned int tot, unsigned int ident,
                  unsigned int proto, unsigned int csum, bytes addrs, payload)
