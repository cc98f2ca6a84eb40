"""TCP states, event codes and the errors the app sees."""
try:
    import cython
except ImportError:         # plain Python on a machine without Cython
    from framework import _cython_shim as cython

if not cython.compiled:        # compiled: the same values as C constants (consts.pxd)
    # RFC 9293 states. LISTEN is a Listener object, not a Connection state.
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
    # the layer's timer heap is compacted when it outgrows this, or twice its live entries
    TIMER_HEAP_MIN = 256

STATE_NAMES = {
    CLOSED: "CLOSED", LISTEN: "LISTEN", SYN_SENT: "SYN_SENT", SYN_RECEIVED: "SYN_RECEIVED",
    ESTABLISHED: "ESTABLISHED", FIN_WAIT_1: "FIN_WAIT_1", FIN_WAIT_2: "FIN_WAIT_2",
    CLOSE_WAIT: "CLOSE_WAIT", CLOSING: "CLOSING", LAST_ACK: "LAST_ACK", TIME_WAIT: "TIME_WAIT",
}

if not cython.compiled:
    # Events appended to TcpLayer.events as (code, Connection) (CONTRACTS §4)
    EV_ACCEPT = 1      # a passive connection reached ESTABLISHED (conn.listener is its port)
    EV_CONNECTED = 2   # an active open (connect) reached ESTABLISHED
    EV_READABLE = 3    # new in-order data in the receive buffer (once until the next recv())
    EV_WRITABLE = 4    # the send buffer drained below the low-water mark after send() was short
    EV_EOF = 5         # the peer sent FIN: no more data will arrive (recv() what is left)
    EV_CLOSED = 6      # the connection is finished (orderly close; TIME_WAIT is not the app's concern)
    EV_RESET = 7       # RST from the peer; conn.error says why
    EV_ERROR = 8       # timeout (connect, retransmission, keepalive); conn.error says why

EVENT_NAMES = {EV_ACCEPT: "ACCEPT", EV_CONNECTED: "CONNECTED", EV_READABLE: "READABLE",
               EV_WRITABLE: "WRITABLE", EV_EOF: "EOF", EV_CLOSED: "CLOSED", EV_RESET: "RESET",
               EV_ERROR: "ERROR"}


class ConnectionClosed(ConnectionError):
    """send() on a connection that can no longer send (after shutdown/close/reset)."""
