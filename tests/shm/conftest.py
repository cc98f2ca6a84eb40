import os
import signal
from contextlib import contextmanager

import multiprocess


CTX = multiprocess.get_context("fork")


@contextmanager
def child(target, *args):
    """A forked process that is always gone when the block ends."""
    p = CTX.Process(target=target, args=args, daemon=True)
    p.start()
    try:
        yield p
    finally:
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
        p.join(5)
