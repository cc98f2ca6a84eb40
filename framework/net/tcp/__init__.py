"""The TCP of one shard (RFC 9293 and friends): pure, driven by the stack (CONTRACTS §4, §6).

    tcp = TcpLayer(ip_output, local_ip, mtu, csum_offload, gso, config=TcpConfig(...))
    tcp.listen(80); tcp.input(frame, src, dst, l4_off, l4_end, csum_trusted, now)
    tcp.poll(now); tcp.flush(now); tcp.poll_at(); tcp.take_events()
"""
from .config import TcpConfig
from .connection import Connection
from .consts import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, EV_ACCEPT, EV_CLOSED, EV_CONNECTED,
                     EV_EOF, EV_ERROR, EV_READABLE, EV_RESET, EV_WRITABLE, EVENT_NAMES, FIN_WAIT_1,
                     FIN_WAIT_2, LAST_ACK, LISTEN, STATE_NAMES, SYN_RECEIVED, SYN_SENT, TIME_WAIT,
                     ConnectionClosed)
from .layer import COUNTERS, Listener, TcpLayer

__all__ = [
    "TcpConfig", "Connection", "TcpLayer", "Listener", "COUNTERS", "ConnectionClosed",
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
    "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT", "STATE_NAMES",
    "EV_ACCEPT", "EV_CONNECTED", "EV_READABLE", "EV_WRITABLE", "EV_EOF", "EV_CLOSED", "EV_RESET",
    "EV_ERROR", "EVENT_NAMES",
]
