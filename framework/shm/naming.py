"""Segment naming and cleanup.

Every shared-memory object of one run (rings, doorbells, stats blocks) is named
``framework.<runid>.<purpose>`` and lives in /dev/shm (POSIX shm on Linux is a
tmpfs there; the doorbell FIFOs are created in the same directory on purpose so
one glob finds everything). The run id starts with the supervisor's pid, so a
later run can tell the segments of a crashed supervisor (pid gone) from those
of a live one and remove them.
"""
import os
import re
import secrets

import psutil

PREFIX = "framework"
SHM_DIR = "/dev/shm"

_RUNID_RE = re.compile(r"^(\d+)-[0-9A-Za-z]+$")
_PURPOSE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def new_runid(pid=None):
    """A fresh run id ``"<pid>-<random>"`` (pid defaults to this process)."""
    return f"{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}"


def runid_pid(runid):
    """The supervisor pid encoded in a run id (ValueError if it has none)."""
    m = _RUNID_RE.match(runid)
    if not m:
        raise ValueError(f"bad run id {runid!r}: expected '<pid>-<alnum>'")
    return int(m.group(1))


def check_purpose(purpose):
    if not _PURPOSE_RE.match(purpose) or len(purpose) > 200:
        raise ValueError(f"bad segment purpose {purpose!r}: use [A-Za-z0-9_.-], no '/'")
    return purpose


def shm_name(runid, purpose):
    """The posix_ipc name (leading slash) of a segment."""
    runid_pid(runid)
    check_purpose(purpose)
    return f"/{PREFIX}.{runid}.{purpose}"


def shm_path(runid, purpose):
    """The file that backs a segment (or a FIFO) of a run."""
    return SHM_DIR + shm_name(runid, purpose)


def run_files(runid):
    """Every file in /dev/shm that belongs to a run."""
    runid_pid(runid)
    head = f"{PREFIX}.{runid}."
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    # posix_ipc semaphores appear as "sem.<name>": include them too.
    return sorted(os.path.join(SHM_DIR, n) for n in names
                  if n.startswith(head) or n.startswith("sem." + head))


def cleanup_run(runid):
    """Remove every segment, FIFO and semaphore of a run; returns the paths removed.

    Processes that still have a segment mapped keep using it (unlink only removes
    the name), so this is safe to call while workers are shutting down.
    """
    removed = []
    for path in run_files(runid):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def list_runs():
    """Run ids that have at least one file in /dev/shm."""
    runs = set()
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    for n in names:
        if n.startswith("sem."):
            n = n[4:]
        parts = n.split(".")
        if len(parts) >= 3 and parts[0] == PREFIX and _RUNID_RE.match(parts[1]):
            runs.add(parts[1])
    return sorted(runs)


def _started_after(pid, files):
    """True if process ``pid`` started after the oldest of ``files`` was made:
    then it is not the supervisor that made them (the pid was reused)."""
    try:
        started = psutil.Process(pid).create_time()
    except Exception:
        return False
    try:
        made = min(os.stat(f).st_mtime for f in files)
    except (OSError, ValueError):
        return False
    return started > made + 1.0   # create_time has a coarse (jiffy) resolution


def run_is_stale(runid):
    """The run's supervisor is gone (its pid is dead, or now someone younger's)."""
    pid = runid_pid(runid)
    if not pid_alive(pid):
        return True
    return _started_after(pid, run_files(runid))


def cleanup_stale():
    """Remove the segments of every run whose supervisor is gone.

    Returns {runid: [paths removed]}. A pid that is alive counts as the run's
    supervisor unless that process started after the run's files were made.
    """
    out = {}
    for runid in list_runs():
        if run_is_stale(runid):
            removed = cleanup_run(runid)
            if removed:
                out[runid] = removed
    return out
