"""Shared memory between the workers: SPSC record rings, doorbells, stats blocks.

Knows nothing of TCP. Every object of a run is named ``framework.<runid>.<purpose>``
in /dev/shm; ``cleanup_run(runid)`` removes them all, ``cleanup_stale()`` removes
those of runs whose supervisor is gone. Create everything in the supervisor before
forking the workers: the children inherit the mappings and the doorbell fds.
"""
from .doorbell import Doorbell
from .naming import (cleanup_run, cleanup_stale, list_runs, new_runid, run_files,
                     runid_pid, shm_name, shm_path)
from .ring import Ring, RingCorrupted
from .segment import fence
from .stats import StatsBlock

__all__ = ["Ring", "RingCorrupted", "Doorbell", "StatsBlock", "new_runid", "cleanup_run",
           "cleanup_stale", "list_runs", "run_files", "runid_pid", "shm_name", "shm_path",
           "fence"]
