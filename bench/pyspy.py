"""Live profile of a server's worker with py-spy (sampling, from the load generator's
core): which functions the loaded worker spends its time in, including the port I/O
that the kernel-free micro benchmark leaves out.

py-spy is optional: ``pip install py-spy``; without it the report says so.
"""
import os
import shutil
import subprocess


def available():
    return shutil.which("py-spy") is not None


def start(pid, seconds, out_path, rate=250):
    """Begin sampling ``pid`` for ``seconds``; returns the Popen (raw/collapsed output)."""
    cmd = ["py-spy", "record", "--nonblocking", "--function", "-r", str(rate), "-d", str(int(seconds) + 1),
           "-f", "raw", "-o", out_path, "-p", str(pid)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=30):
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


def summarize(raw_path, top=15):
    """Self (leaf) and inclusive shares of the collapsed stacks py-spy wrote."""
    if not os.path.exists(raw_path):
        return None
    leaf, incl, files = {}, {}, {}
    total = 0
    with open(raw_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                n = int(n)
            except ValueError:
                continue
            frames = stack.split(";")
            total += n
            lf = _short(frames[-1])
            leaf[lf] = leaf.get(lf, 0) + n
            fl = lf.split(":")[0].split(" (")[-1]
            files[fl] = files.get(fl, 0) + n
            for fr in set(_short(x) for x in frames):
                incl[fr] = incl.get(fr, 0) + n
    if not total:
        return None
    lines = [f"{total} samples; self (leaf) share, inclusive share, function (file:line)"]
    for fn, n in sorted(leaf.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"{n / total:6.1%} {incl.get(fn, n) / total:6.1%}  {fn}")
    lines.append("self share by file: " + ", ".join(
        f"{f} {n / total:.0%}" for f, n in sorted(files.items(), key=lambda x: -x[1])[:10]))
    return "\n".join(lines)


def _short(frame):
    """'run_once (framework/shard/worker.py:141)' -> 'run_once (worker.py:141)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    return f"{name} ({os.path.basename(where)})" if where else name
