"""Programs from Debian for the bench and the tests that need them (wrk, ab, nginx,
hping3, BIRD): a fresh machine has none of them."""
import os
import shutil
import subprocess

POLICY_RC_D = "/usr/sbin/policy-rc.d"


def install(packages, check=True):
    """apt-get install without starting any service a package brings (nginx's would
    listen on the host's port 80): Debian's policy-rc.d hook, only while installing."""
    made = not os.path.exists(POLICY_RC_D)
    if made:
        with open(POLICY_RC_D, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(POLICY_RC_D, 0o755)
    try:
        for attempt in range(2):
            r = subprocess.run(["apt-get", "install", "-y", *packages],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode == 0 or attempt:
                break
            # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    finally:
        if made:
            os.unlink(POLICY_RC_D)
    if r.returncode != 0 and check:
        raise RuntimeError(f"apt-get install {' '.join(packages)} failed: {r.stderr[-500:]}")
    return r.returncode == 0


def ensure(program, package=None):
    """The path of ``program``, installed from ``package`` (default: same name) if missing."""
    path = shutil.which(program)
    if path is None:
        install([package or program])
        path = shutil.which(program)
        if path is None:
            raise RuntimeError(f"{package or program} is installed but has no {program}")
    return path
