"""The Starlette app on two workers (`--cores 2`, both stacks): each worker runs its own
lifespan and app instance; whichever worker a connection lands on, the answers are
uvicorn's, WebSockets included."""
from . import test_starlette as one_worker
from .harness import check_list, client_for

APP = one_worker.APP
CORES = 2


def test_same_answers_as_uvicorn(reference, served):
    check_list(reference, served, one_worker.REQUESTS)


def test_every_worker_ran_its_lifespan(served):
    """New connections land on both workers (by their flow hash); each answers from its
    own lifespan state."""
    pids = set()
    for _ in range(30):
        with client_for(served) as c:
            got = c.get("/worker").json()
            assert got["started"] == "yes"
            pids.add(got["pid"])
    assert len(pids) == 2


def test_websocket_as_uvicorn(reference, served):
    assert one_worker.ws_session(served, app_saw=False) == one_worker.ws_session(
        reference, app_saw=False)
