import pytest

from framework.shm import naming


@pytest.fixture
def run():
    """A fresh shm run id and a list of what the test opened: closed after it, and then
    none of the run's segments may be left."""
    runid = naming.new_runid()
    objs = []
    try:
        yield runid, objs
    finally:
        for o in objs:
            o.close()
        naming.cleanup_run(runid)
        assert naming.run_files(runid) == []
