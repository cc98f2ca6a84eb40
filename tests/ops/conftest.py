import threading


from framework.master import netns
def in_netns(name, fn, *args):
    """Run fn(*args) in a thread that entered namespace ``name``; return its result."""
    out = {}

    def run():
        try:
            netns.setns(name)
            out["v"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    if "e" in out:
        raise out["e"]
    return out["v"]
