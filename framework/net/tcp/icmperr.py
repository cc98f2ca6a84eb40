"""ICMP errors into TCP (RFC 1122 4.2.3.9, RFC 5927, RFC 1191): what a destination
unreachable that quotes one of our segments does to its connection.

Not on the per-segment path (one call per ICMP error; plain Python, not compiled). The
ICMP layer parses the quote and calls ``handler(layer)(rip, rport, lport, seq, code, mtu,
quoted_len)``; ``now`` is the layer's latest.

- The connection is found by the quoted 4-tuple; the quoted sequence number must be in
  flight, SND.UNA <= seq <= SND.MAX (RFC 5927 4.1, inclusive as Linux's ``between``):
  anything else is ignored and counted (``drop.icmp.out_of_window``; no such connection,
  or one in TIME_WAIT: ``drop.icmp.no_flow``), so a blind attacker must guess the window.
- Fragmentation needed (code 4): the send MSS drops to next-hop MTU - 40 - the options
  every segment carries (RFC 1191; an MTU below 552 is taken as 552, Linux's
  ip_rt_min_pmtu, so a forged tiny MTU cannot make us send tiny segments; a router that
  gives no MTU gets the RFC 1191 plateau below the quoted length), and what is in flight is
  sent again at the new size (go back to SND.UNA, as Linux's tcp_simple_retransmit; the
  congestion window is left alone: nothing was lost to congestion). Never raises the MSS.
- Any other code, in SYN_SENT: the connect fails at once, EV_ERROR with ``conn.error`` the
  reason (``REASONS``), as a Linux socket in SYN_SENT does (tcp_v4_err, every code).
- Any other code in a synchronized state (or a passive SYN_RECEIVED): a soft error (RFC
  1122 4.2.3.9: hosts, networks and ports may come back). It is kept in ``conn.error``,
  as Linux's sk_err_soft that SO_ERROR returns, until an ACK makes progress, and named if
  the connection times out ("retransmission timed out (host unreachable)"); the connection
  is not aborted.
"""
from .bits import B_RECOVERY, B_TLP, B_TS
from .connection import Connection
from .consts import ESTABLISHED, EV_ERROR, LAST_ACK, SYN_SENT

COUNTERS = ("tcp.icmp_unreachable", "tcp.icmp_frag_needed", "tcp.icmp_soft_errors",
            "drop.icmp.out_of_window", "drop.icmp.no_flow")

M = 0xFFFFFFFF                 # sequence space (bits.M is a C constant once compiled)
FRAG_NEEDED = 4
MIN_PMTU = 552                 # Linux's ip_rt_min_pmtu (512 + 20 + 20)
PLATEAUS = (32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)   # RFC 1191 7.1

# destination unreachable codes (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1)
REASONS = {
    0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
    3: "connection refused", 5: "source route failed", 6: "network unreachable",
    7: "host unreachable", 8: "host unreachable", 9: "administratively prohibited",
    10: "administratively prohibited", 11: "network unreachable", 12: "host unreachable",
    13: "administratively prohibited", 14: "host unreachable", 15: "host unreachable",
}


def handler(layer):
    """The callable the ICMP layer is given for this TCP layer."""
    for k in COUNTERS:
        layer.counters.setdefault(k, 0)

    def tcp_error(rip, rport, lport, seq, code, mtu, quoted_len):
        icmp_error(layer, rip, rport, lport, seq, code, mtu, quoted_len)
    return tcp_error


def icmp_error(L, rip, rport, lport, seq, code, mtu, quoted_len):
    c = L.counters
    conn = L.flows.get((rip, rport, lport))
    if not isinstance(conn, Connection) or not conn.state:
        c["drop.icmp.no_flow"] += 1
        return
    una = conn.snd_una
    if (seq - una) & M > conn.snd_max - una:
        c["drop.icmp.out_of_window"] += 1
        return
    if code == FRAG_NEEDED:
        frag_needed(conn, mtu, quoted_len)
        return
    c["tcp.icmp_unreachable"] += 1
    reason = REASONS.get(code, "destination unreachable")
    if conn.state == SYN_SENT:
        conn.error = reason
        conn._finish(EV_ERROR)
    else:
        c["tcp.icmp_soft_errors"] += 1
        conn.error = reason


def frag_needed(conn, mtu, quoted_len):
    L = conn.layer
    if not mtu:                  # a router before RFC 1191: guess from what it quoted
        mtu = next((p for p in PLATEAUS if p < quoted_len), PLATEAUS[-1])
    if mtu < MIN_PMTU:
        mtu = MIN_PMTU
    mss = mtu - 40 - (12 if conn.bits & B_TS else 0)
    if mss >= conn.mss:
        return                   # stale, or a larger MTU: RFC 1191 never raises it this way
    L.counters["tcp.icmp_frag_needed"] += 1
    conn.mss = mss
    st = conn.state
    if ESTABLISHED <= st <= LAST_ACK and conn.snd_max > conn.snd_una:
        # what is in flight was cut at the old size and will not arrive: send it again
        conn.snd_nxt = conn.snd_una
        conn.rtt_seq = None                  # Karn: no RTT sample from a resent segment
        conn.scoreboard = None
        conn.bits &= ~(B_RECOVERY | B_TLP)
        conn.dupacks = 0
        conn.recover = conn.snd_max
        L.counters["tcp.retransmits"] += 1
        conn._want_output()
