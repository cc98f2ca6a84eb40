"""What a shard offers the app: its reactor, its id, the app's per-shard state."""
import logging


class ShardContext:
    __slots__ = ("reactor", "shard_id", "shard_count", "state", "log", "submit_to")

    def __init__(self, reactor, shard_id=0, shard_count=1, state=None, submit_to=None):
        self.reactor = reactor
        self.shard_id = shard_id
        self.shard_count = shard_count
        self.state = state
        self.log = logging.getLogger(f"framework.shard{shard_id}")
        self.submit_to = submit_to
