# C constants of bits.py (the same values: tests/net/tcp/test_typed_layout.py compares them)

cpdef enum:
    B_PENDING = 0x1
    B_ACK_NOW = 0x2
    B_RD_EV = 0x4
    B_WANT_WR = 0x8
    B_APP_CLOSED = 0x10
    B_PASSIVE = 0x20
    B_TS = 0x40
    B_DONE = 0x80
    B_RECOVERY = 0x100
    B_KA = 0x200
    B_NAGLE = 0x400
    B_WS = 0x800
    B_EOF = 0x1000
    B_ESTAB = 0x2000
    B_SACK = 0x4000
    B_PTO = 0x8000
    B_TLP = 0x10000
    B_CWLTD = 0x20000

# TCP header flags (framework.net.wire.tcp's values), for the compiled modules
cdef enum:
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10

# sequence-space arithmetic (64-bit: sequence numbers are kept unwrapped)
cdef extern from *:
    """
    #define FW_TCP_SEQ_M 0xFFFFFFFFLL
    #define FW_TCP_SEQ_HALF 0x80000000LL
    #define FW_TCP_SEQ_WRAP 0x100000000LL
    """
    const long long M "FW_TCP_SEQ_M"
    const long long HALF "FW_TCP_SEQ_HALF"
    const long long WRAP "FW_TCP_SEQ_WRAP"
