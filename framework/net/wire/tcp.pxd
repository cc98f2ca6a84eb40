# C layout of the parsed options and the option parser: compiled, options are read from
# the frame's bytes in place.
cimport cython

# the option kinds and the timestamps-only block length of tcp.py, as C constants (still
# module attributes: cpdef); tests/net/test_wire_layout.py checks they match
cpdef enum:
    OPT_EOL = 0
    OPT_NOP = 1
    OPT_MSS = 2
    OPT_WS = 3
    OPT_SACK_PERM = 4
    OPT_SACK = 5
    OPT_TS = 8
    TS_OPT_LEN = 12


cdef class Options:
    cdef public object mss, wscale, tsval, tsecr, sack
    cdef public bint sack_perm


@cython.locals(o=Options, n=Py_ssize_t, b="const unsigned char*", i=Py_ssize_t,
               kind="unsigned int", ln=Py_ssize_t, j=Py_ssize_t)
cpdef Options parse_options(buf, Py_ssize_t off, Py_ssize_t end)

cdef inline unsigned int _be16(const unsigned char* b, Py_ssize_t i) noexcept
cdef inline unsigned int _be32(const unsigned char* b, Py_ssize_t i) noexcept
