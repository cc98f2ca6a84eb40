# C layout of framework/shard/transport.py (Cython pure-Python mode; the .py is the source).
# ShardTransport is an extension type so that the user stack's StreamTransport (streams.pxd)
# can be one; it declares no fields: KernelTransport, a Python subclass, keeps its own
# slots, and the guard methods reach the fields of either kind by name.

cdef class ShardTransport:
    pass
