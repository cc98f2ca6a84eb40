cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer

@cython.locals(s="unsigned long long", i=Py_ssize_t, end4=Py_ssize_t)
cdef unsigned long long word_sum(const unsigned char* p, Py_ssize_t n) noexcept nogil

cdef unsigned int fold(unsigned long long s) noexcept nogil

@cython.locals(p="const unsigned char*", view=Py_buffer, s="unsigned long long")
cpdef unsigned int ones_sum(object data) except? 0xFFFFFFFF

cpdef unsigned int checksum(object data) except? 0xFFFFFFFF

@cython.locals(s="long long")
cpdef long long add(long long a, long long b)

@cython.locals(s="unsigned long long")
cpdef unsigned int pseudo_header_sum(unsigned int src, unsigned int dst, unsigned int proto,
                                     unsigned long long length)

cpdef unsigned int l4_checksum(unsigned int src, unsigned int dst, unsigned int proto,
                               object segment) except? 0xFFFFFFFF

cpdef bint verify_l4(unsigned int src, unsigned int dst, unsigned int proto,
                     object segment) except? -1
