"""Write back-pressure as futures: what ``await drain()`` waits on.

Both the HTTP protocol and StreamHandler keep ``_wpaused`` (the transport said
pause_writing) and ``_drainers`` (futures of writers waiting for resume_writing).
"""


def drain_future(owner, loop, closed):
    """An asyncio future done when the transport takes more data (at once if it does now)."""
    fut = loop.create_future()
    if closed:
        fut.set_exception(ConnectionResetError("connection closed"))
    elif not owner._wpaused:
        fut.set_result(None)
    else:
        if owner._drainers is None:
            owner._drainers = []
        owner._drainers.append(fut)
    return fut


def wake_drainers(owner, exc=None):
    """Resolve every waiting writer: with None on resume, with ``exc`` on connection loss.
    A writer that gave up (cancelled its future, e.g. asyncio.wait_for) is skipped."""
    waiters, owner._drainers = owner._drainers, None
    for fut in waiters or ():
        if fut.done():
            continue
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
