# C constants of consts.py, exported to Python as ints (the same values)

cpdef enum:
    CLOSED = 0
    LISTEN = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    ESTABLISHED = 4
    FIN_WAIT_1 = 5
    FIN_WAIT_2 = 6
    CLOSE_WAIT = 7
    CLOSING = 8
    LAST_ACK = 9
    TIME_WAIT = 10

cpdef enum:
    EV_ACCEPT = 1
    EV_CONNECTED = 2
    EV_READABLE = 3
    EV_WRITABLE = 4
    EV_EOF = 5
    EV_CLOSED = 6
    EV_RESET = 7
    EV_ERROR = 8

cpdef enum:
    TIMER_HEAP_MIN = 256
