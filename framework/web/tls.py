"""HTTPS: TLS between the shard's transports (CONTRACTS section 5) and the HTTP protocol,
with ``ssl.MemoryBIO``/``SSLObject`` (no socket of its own, so it runs over the user-level
stack's transports and the kernel stack's alike).

    app = wrap(app, opts)      # opts: WebOptions (certfile, keyfile, ca_certs, ssl_ciphers)

``wrap`` builds the server ``SSLContext`` once (a bad certificate or key raises
``TlsConfigError``, one line: the supervisor's exit 2) and returns a ``TlsApp``: the same
app (start_shard/stop_shard/listeners and every other attribute delegate to it) whose
HTTP listener's factory puts a ``TlsProtocol`` in front of every connection's protocol.
The app's ``config.scheme`` becomes "https", so ``Request.protocol`` is "https".

Per connection: ciphertext from the transport goes into the incoming BIO; the handshake
runs until done (ALPN offers only "http/1.1"; with ``ca_certs`` a client certificate is
required); then the inner protocol gets ``connection_made(TlsTransport)`` and the
plaintext. What the inner protocol writes is encrypted at once and handed to the
transport, so the transport's buffer is the only one and its flow control
(pause_writing/resume_writing) passes straight through. ``get_extra_info`` on the
TlsTransport answers "ssl_object", "sslcontext", "peercert", "cipher", "compression"
(as asyncio's SSL transports) and everything else from the transport below.

A handshake that fails (plain HTTP, random bytes, no client certificate, the client
refusing our certificate) or does not finish within ``HANDSHAKE_TIMEOUT`` closes that
connection only, logged at debug and counted in ``STATS``. Closing sends close_notify and
closes the transport without waiting for the peer's (as nginx does).

Why not ``asyncio.sslproto.SSLProtocol``: it is a BufferedProtocol (our transports call
``data_received``), its error and shutdown-timeout paths call ``_force_close`` on the
transport below (private to asyncio's own transports; in 3.11 ``_SSLProtocolTransport.
_force_close`` even calls ``_abort(exc)``, which takes no argument), it holds every close
up to 30 s for the peer's close_notify and ignores ``eof_received()`` returning true
(which the HTTP protocol uses to finish responses after the client's half-close).
"""
import logging
import ssl

log = logging.getLogger("framework.tls")

HANDSHAKE_TIMEOUT = 10.0
READ_MAX = 256 * 1024          # plaintext handed to the inner protocol per data_received

# process-wide counters (one shard per worker process): what /metrics and tests read
STATS = {"tls.handshakes": 0, "tls.handshake_failed": 0, "tls.handshake_timeout": 0,
         "tls.errors": 0}

_HANDSHAKE, _OPEN, _CLOSED = 0, 1, 2


class TlsConfigError(Exception):
    """The certificate, key, CA file or cipher list cannot be used (one line)."""


def server_context(opts):
    """The server SSLContext for ``opts`` (certfile, keyfile, ca_certs, ssl_ciphers)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(opts.certfile, opts.keyfile or None)
    except (OSError, ssl.SSLError) as e:
        what = f"--certfile {opts.certfile}" + (f" --keyfile {opts.keyfile}"
                                                 if opts.keyfile else "")
        raise TlsConfigError(f"{what}: {_why(e)}") from None
    if opts.ssl_ciphers:
        try:
            ctx.set_ciphers(opts.ssl_ciphers)
        except ssl.SSLError as e:
            raise TlsConfigError(f"--ssl-ciphers {opts.ssl_ciphers!r}: {_why(e)}") from None
    if opts.ca_certs:
        try:
            ctx.load_verify_locations(cafile=opts.ca_certs)
        except (OSError, ssl.SSLError) as e:
            raise TlsConfigError(f"--ca-certs {opts.ca_certs}: "
                                 f"{_why(e, 'PEM CA certificates')}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _why(e, what="a PEM certificate chain with its private key"):
    """One short reason for a TlsConfigError."""
    if isinstance(e, FileNotFoundError):
        return "no such file"
    reason = getattr(e, "reason", None)
    if reason == "KEY_VALUES_MISMATCH":
        return "the private key does not match the certificate"
    if reason:
        return reason.lower().replace("_", " ")
    if isinstance(e, ssl.SSLError) and e.args and isinstance(e.args[0], str):
        return e.args[0].rstrip(".").lower()
    if isinstance(e, ssl.SSLError):
        return f"not {what}"
    return e.strerror or str(e)


def wrap(app, opts):
    """``app`` serving HTTPS on its HTTP port (a TlsApp); raises TlsConfigError."""
    return TlsApp(app, server_context(opts))


class TlsApp:
    """An app whose HTTP listener speaks TLS; everything else is the app's."""

    def __init__(self, app, context):
        self.app = app
        self.context = context
        config = getattr(app, "config", None)
        if config is not None and hasattr(config, "scheme"):
            config.scheme = "https"

    async def start_shard(self, ctx):
        await self.app.start_shard(ctx)

    async def stop_shard(self, ctx):
        await self.app.stop_shard(ctx)

    def listeners(self, http_port):
        out = self.app.listeners(http_port)
        inner = out.get(int(http_port))
        if inner is not None:
            out[int(http_port)] = tls_factory(inner, self.context)
        return out

    def http_factory(self, clock=None):
        """The app's HTTP factory (a test clock passed on) behind TLS (tests, Harness)."""
        inner = self.app.http_factory() if clock is None else self.app.http_factory(clock)
        return tls_factory(inner, self.context)

    def __getattr__(self, name):
        return getattr(self.app, name)

    def __repr__(self):
        return f"<TlsApp {self.app!r}>"


def tls_factory(inner_factory, context):
    """A listener factory: ``factory(ctx)`` -> TlsProtocol around ``inner_factory(ctx)``."""
    def factory(ctx):
        return TlsProtocol(inner_factory(ctx), context, ctx.loop)
    factory.inner = inner_factory
    return factory


class TlsProtocol:
    """One TLS connection: the transport's protocol, the inner protocol's transport's
    engine (see the module docstring)."""

    __slots__ = ("inner", "context", "loop", "transport", "app_transport", "sslobj",
                 "incoming", "outgoing", "state", "timer", "paused", "eof_held", "extra",
                 "inner_made")

    def __init__(self, inner, context, loop):
        self.inner = inner
        self.context = context
        self.loop = loop
        self.transport = None
        self.app_transport = None
        self.sslobj = None
        self.state = _HANDSHAKE
        self.timer = None
        self.paused = False         # the inner protocol asked us to stop reading
        self.eof_held = False       # the peer's EOF arrived while paused with data unread
        self.extra = None
        self.inner_made = False

    # ---- the transport below ---------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = self.context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timed_out)

    def data_received(self, data):
        if self.state == _CLOSED:
            return
        self.incoming.write(data)
        if self.state == _HANDSHAKE:
            self._handshake()
        if self.state == _OPEN and not self.paused:
            self._read()

    def eof_received(self):
        if self.state == _HANDSHAKE:
            self._refuse("connection closed during the handshake")
            return False
        if self.state == _CLOSED:
            return False
        if self.paused and (self.incoming.pending or self.sslobj.pending()):
            self.eof_held = True    # delivered after the data still unread (resume_reading)
            return True
        return self._inner_eof()

    def connection_lost(self, exc):
        self.state = _CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        inner = self.inner
        if self.inner_made:
            try:
                inner.connection_lost(exc)
            except Exception:
                log.exception("connection_lost failed")
        self.inner = self.app_transport = self.transport = self.sslobj = None

    def pause_writing(self):
        if self.inner_made:
            self.inner.pause_writing()

    def resume_writing(self):
        if self.inner_made:
            self.inner.resume_writing()

    def shutdown(self):
        """Graceful stop: the inner protocol finishes what it has (or we just close)."""
        fn = getattr(self.inner, "shutdown", None) if self.inner_made else None
        if fn is not None:
            fn()
        else:
            self.close()

    # ---- the handshake ---------------------------------------------------------------
    def _handshake(self):
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ValueError) as e:
            self._refuse(e)
            return
        self._flush()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state = _OPEN
        STATS["tls.handshakes"] += 1
        self.app_transport = TlsTransport(self)
        self.inner_made = True
        self.inner.connection_made(self.app_transport)

    def _refuse(self, why, counter="tls.handshake_failed"):
        """A failed handshake: send the alert (if any) and close this connection."""
        STATS[counter] += 1
        log.debug("TLS handshake with %s failed: %s", self._peer(), why)
        self.state = _CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._flush()
        t = self.transport
        linger = getattr(t, "lingering_close", None)   # the peer may still be sending
        (linger or t.close)()

    def _handshake_timed_out(self):
        self.timer = None
        if self.state == _HANDSHAKE:
            self._refuse(f"not done after {HANDSHAKE_TIMEOUT:g} s", "tls.handshake_timeout")
            self.transport.abort()

    def _peer(self):
        try:
            return self.transport.get_extra_info("peername")
        except Exception:
            return None

    # ---- plaintext in ----------------------------------------------------------------
    def _read(self):
        """Decrypt what is there and hand it to the inner protocol (one call)."""
        sslobj = self.sslobj
        chunks = []
        size = 0
        closed_by_peer = False
        try:
            while size < READ_MAX:
                chunk = sslobj.read(READ_MAX - size)
                if not chunk:
                    closed_by_peer = True
                    break
                chunks.append(chunk)
                size += len(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            closed_by_peer = True
        except ssl.SSLError as e:
            self._fatal(e)
            return
        if self.outgoing.pending:       # TLS 1.3 post-handshake messages, key updates
            self._flush()
        if chunks:
            self.inner.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            if self.state != _OPEN:
                return
            if size >= READ_MAX and not self.paused:
                self.loop.call_soon(self._resume_read)    # more may be buffered
                return
        if closed_by_peer:              # close_notify: the peer sends no more
            if not self._inner_eof():
                self.transport.close()

    def _resume_read(self):
        if self.state == _OPEN and not self.paused:
            self._read()
            if self.eof_held and self.state == _OPEN and not self.paused \
                    and not self.incoming.pending and not self.sslobj.pending():
                self.eof_held = False
                if not self._inner_eof():
                    self.transport.close()

    def _inner_eof(self):
        """The peer sends no more: ask the inner protocol (true: keep writing)."""
        try:
            keep = self.inner.eof_received()
        except Exception:
            log.exception("eof_received failed")
            keep = False
        if keep:
            return True
        self.close()
        return True

    def _fatal(self, exc):
        STATS["tls.errors"] += 1
        log.debug("TLS error from %s: %s", self._peer(), exc)
        self.state = _CLOSED
        self._flush()
        self.transport.abort()

    # ---- plaintext out (TlsTransport) ------------------------------------------------
    def write(self, data):
        if self.state != _OPEN:
            return
        sslobj = self.sslobj
        try:
            view = memoryview(data)
            while view:
                n = sslobj.write(view)
                view = view[n:]
        except ssl.SSLError as e:
            self._fatal(e)
            return
        self._flush()

    def _flush(self):
        out = self.outgoing.read()
        if out:
            self.transport.write(out)

    def close(self, lingering=False):
        """close_notify after what was written, then close the transport."""
        if self.state == _CLOSED:
            return
        if self.state == _OPEN:
            try:
                self.sslobj.unwrap()
            except ssl.SSLError:    # SSLWantRead: we do not wait for the peer's
                pass
            self._flush()
        self.state = _CLOSED
        t = self.transport
        linger = getattr(t, "lingering_close", None) if lingering else None
        (linger or t.close)()

    def pause_reading(self):
        if not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self):
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
            self.loop.call_soon(self._resume_read)   # what the BIO still holds

    def get_extra_info(self, name, default=None):
        if name in _SSL_INFO:
            sslobj = self.sslobj
            if name == "sslcontext":
                return self.context
            if sslobj is None:
                return default
            if name == "ssl_object":
                return sslobj
            if name == "peercert":
                return sslobj.getpeercert()
            if name == "cipher":
                return sslobj.cipher()
            return sslobj.compression()
        t = self.transport
        return t.get_extra_info(name, default) if t is not None else default


_SSL_INFO = frozenset(("ssl_object", "sslcontext", "peercert", "cipher", "compression"))


class TlsTransport:
    """The inner protocol's transport (asyncio's Transport interface, CONTRACTS 5)."""

    __slots__ = ("_tls", "_closing")

    def __init__(self, tls):
        self._tls = tls
        self._closing = False

    def write(self, data):
        if not self._closing:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
            if data:
                self._tls.write(data)

    def writelines(self, chunks):
        self.write(b"".join(chunks))

    def write_eof(self):
        raise NotImplementedError("TLS has no half-close on our side: close() instead")

    def can_write_eof(self):
        return False

    def close(self):
        if not self._closing:
            self._closing = True
            self._tls.close()

    def lingering_close(self):
        """close after an error response: the peer may still be sending (transport.py)."""
        if not self._closing:
            self._closing = True
            self._tls.close(lingering=True)

    def abort(self):
        self._closing = True
        tls = self._tls
        tls.state = _CLOSED
        t = tls.transport
        if t is not None:
            t.abort()

    def is_closing(self):
        t = self._tls.transport
        return self._closing or t is None or t.is_closing()

    def get_extra_info(self, name, default=None):
        return self._tls.get_extra_info(name, default)

    def pause_reading(self):
        self._tls.pause_reading()

    def resume_reading(self):
        self._tls.resume_reading()

    def is_reading(self):
        return not self._tls.paused

    def get_write_buffer_size(self):
        t = self._tls.transport
        return (t.get_write_buffer_size() if t is not None else 0) + self._tls.outgoing.pending

    def get_write_buffer_limits(self):
        return self._tls.transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None):
        self._tls.transport.set_write_buffer_limits(high, low)

    def get_protocol(self):
        return self._tls.inner

    def set_protocol(self, protocol):
        self._tls.inner = protocol

    def __repr__(self):
        return f"<TlsTransport over {self._tls.transport!r}>"
