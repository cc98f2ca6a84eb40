"""Tunables of one TcpLayer; connections copy the per-connection ones at creation."""


class TcpConfig:
    __slots__ = ("mss", "rcvbuf", "sndbuf", "sndbuf_lowat", "time_wait", "min_rto", "max_rto",
                 "initial_rto", "delack", "nagle", "keepalive", "ka_idle", "ka_intvl", "ka_cnt",
                 "syn_retries", "synack_retries", "max_retries", "timestamps", "window_scale",
                 "initial_window", "fin_wait2", "sack", "syncookies", "max_time_wait", "cc", "ephemeral", "challenge_ack_limit", "gso_max",
                 "tx_burst", "random_seed")

    def __init__(self, **kw):
        self.mss = None            # None: from the MTU (mtu - 40)
        self.rcvbuf = 1 << 20      # receive buffer per connection (bounds the advertised window)
        self.sndbuf = 1 << 20      # send buffer per connection
        self.sndbuf_lowat = None   # EV_WRITABLE below this (None: sndbuf // 2)
        self.time_wait = 60.0      # TIME_WAIT length (2*MSL); RFC 9293 suggests MSL = 2 min
        self.max_time_wait = 262144  # TIME_WAIT entries per layer (Linux tcp_max_tw_buckets)
        # Minimum RTO 200 ms, as Linux: RFC 6298 asks for 1 s, but on LANs RTTs are sub-ms
        # and the only thing a lower bound must cover is the peer's delayed ACK (Linux: 40 ms
        # minimum, 200 ms maximum) plus scheduling jitter; 1 s would stall a lossy LAN flow.
        self.min_rto = 0.2
        self.max_rto = 60.0
        self.initial_rto = 1.0     # RFC 6298 §2.1
        self.delack = 0.04         # delayed-ACK timer (Linux's minimum; RFC 9293 allows 500 ms)
        self.nagle = False
        self.keepalive = False
        self.ka_idle = 7200.0      # RFC 1122 defaults
        self.ka_intvl = 75.0
        self.ka_cnt = 9
        self.syn_retries = 6
        self.synack_retries = 5
        self.max_retries = 15      # data retransmissions before giving up (Linux tcp_retries2)
        self.timestamps = True
        self.window_scale = True
        self.sack = True           # RFC 2018 SACK (blocks sent; RFC 6675-style recovery)
        self.syncookies = True     # stateless SYN-ACKs when a listener's SYN queue is full
        self.initial_window = 10   # segments (RFC 6928)
        # congestion control: "newreno" (RFC 5681), "cubic" (RFC 9438) or "bbr" (the path
        # model of BBR v1, without pacing: a random loss does not shrink the window)
        self.cc = "newreno"
        self.fin_wait2 = 60.0      # orphaned FIN_WAIT_2 lifetime (Linux tcp_fin_timeout)
        self.ephemeral = (32768, 60999)
        self.challenge_ack_limit = 1000  # per second per layer (RFC 5961 §7)
        self.gso_max = 65000       # largest GSO payload
        # data frames per flush (a turn), after control segments and pure ACKs; 0: no bound
        # and no reordering (the order connections queued output in)
        self.tx_burst = 64
        # bytes (any length) from which the layer derives its ISN key (RFC 6528), SYN-cookie
        # key, timestamp offset and ephemeral port start; None: os.urandom, once per layer.
        # A fixed seed makes ISNs and SYN-ACKs reproducible (tests); never fix it in production.
        self.random_seed = None
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError(f"unknown TCP option {k!r}")
            setattr(self, k, v)
