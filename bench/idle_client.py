"""Open N keep-alive HTTP connections, one request each, then hold them idle.

    python -m bench.idle_client IP PORT N

Prints ``ready <held> <seconds>`` once all are open and answered; then reads commands
on stdin: ``check`` -> ``alive <k>`` (connections the server has not closed),
``quit`` -> close all and exit. Connections are opened in batches of 250 so a listen
backlog is never the limit.
"""
import resource
import select
import socket
import sys
import time

REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
BATCH = 250


def open_batch(ip, port, k, timeout=10.0):
    socks = []
    for _ in range(k):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((ip, port))
        socks.append(s)
    ep = select.epoll()
    pending = {s.fileno(): s for s in socks}
    state = {fd: 0 for fd in pending}          # 0 connecting, 1 sent
    for fd in pending:
        ep.register(fd, select.EPOLLOUT)
    done = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for fd, ev in ep.poll(0.5):
            s = pending.get(fd)
            if s is None:
                continue
            if state[fd] == 0:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or ev & select.EPOLLERR:
                    ep.unregister(fd); del pending[fd]; s.close(); continue
                s.send(REQ)
                state[fd] = 1
                ep.modify(fd, select.EPOLLIN)
            else:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                ep.unregister(fd)
                del pending[fd]
                if data.endswith(b"Hello, World!"):
                    done.append(s)
                else:
                    s.close()
    for s in pending.values():
        s.close()
    ep.close()
    return done


def alive(socks):
    """Connections the server has not closed (no EOF/RST waiting on them)."""
    p = select.poll()
    for s in socks:
        p.register(s.fileno(), select.POLLIN)
    gone = 0
    for fd, ev in p.poll(0):
        s = socket.socket(fileno=socket.dup(fd))
        try:
            if not s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                gone += 1
        except BlockingIOError:
            pass
        except OSError:
            gone += 1
        finally:
            s.close()
    return len(socks) - gone


def main():
    ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, max(n + 1024,
                       resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
    t0 = time.monotonic()
    held = []
    while len(held) < n:
        got = open_batch(ip, port, min(BATCH, n - len(held)))
        if not got:
            break
        held += got
    print("ready", len(held), f"{time.monotonic() - t0:.2f}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            print("alive", alive(held), flush=True)
        elif cmd == "quit":
            break
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
