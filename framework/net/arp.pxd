# The C layout of the ARP layer and its neighbour cache (entries are extension types, so
# IPv4's template refresh reads their fields in C).
cimport cython


cdef class Neighbour:
    cdef public bytes mac
    cdef public double expires, refresh_at


cdef class Pending:
    cdef public list queue
    cdef public int tries
    cdef public double next_at


cdef class ArpLayer:
    cdef public bytes mac
    cdef public unsigned int ip
    cdef public dict counters
    cdef public list tx
    cdef public double ttl, refresh, retry
    cdef public int tries, qlen
    cdef public dict cache, pending
    cdef public object on_neighbour
    cdef public Py_ssize_t max_entries, max_pending

    @cython.locals(c=dict, sha=bytes, tha=bytes, spa="unsigned int", tpa="unsigned int",
                   op=int, myip="unsigned int", for_us=bint, e=Neighbour)
    cpdef input(self, f, double now)
    @cython.locals(expires=double, changed=bint, p=Pending, cache=dict)
    cdef _learn(self, unsigned int ip, bytes mac, Neighbour e, double now)
    @cython.locals(e=Neighbour)
    cpdef Neighbour lookup(self, unsigned int ip, double now)
    @cython.locals(p=Pending, q=list)
    cpdef enqueue(self, unsigned int ip, item, double now)
    cdef _request(self, unsigned int tpa, bytes eth_dst)
    @cython.locals(pending=dict, p=Pending)
    cpdef poll(self, double now)
