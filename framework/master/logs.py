"""Logging for the supervisor and the workers: who is speaking on every line, and log
files that can be reopened (SIGUSR1, after logrotate moved them).

    2026-11-26 11:00:00,123 [shard 1] WARNING framework.worker: ...
    2026-11-26 11:00:00,456 [master] INFO framework.supervisor: ...

``setup(level, who, path)`` configures the root logger of the calling process (stderr
when ``path`` is None, else the file in append mode); ``reopen()`` closes and reopens
every file handler it made, which is what SIGUSR1 does in the supervisor and, forwarded,
in every worker. Files are opened with O_APPEND, so the master and the workers can
share one file without overwriting each other's lines.
"""
import logging
import sys

FORMAT = "%(asctime)s [{who}] %(levelname)s %(name)s: %(message)s"


class ReopenableFileHandler(logging.FileHandler):
    """A FileHandler whose reopen() starts writing to whatever file is at the path now."""

    def __init__(self, path):
        super().__init__(path, mode="a", encoding="utf-8", delay=False)

    def reopen(self):
        self.acquire()
        try:
            if self.stream is not None:
                try:
                    self.stream.flush()
                finally:
                    self.stream.close()
            self.stream = self._open()
        finally:
            self.release()


def who_for(shard):
    return "master" if shard is None else f"shard {shard}"


def setup(level="warning", shard=None, path=None):
    """(Re)configure the root logger for this process; returns the handler."""
    lvl = getattr(logging, str(level).upper(), logging.INFO)
    handler = ReopenableFileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT.format(who=who_for(shard))))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if isinstance(h, ReopenableFileHandler):
            h.close()
    root.addHandler(handler)
    root.setLevel(lvl)
    return handler


def reopen():
    """Reopen every log file of this process; returns how many."""
    n = 0
    for h in logging.getLogger().handlers:
        if isinstance(h, ReopenableFileHandler):
            h.reopen()
            n += 1
    return n
