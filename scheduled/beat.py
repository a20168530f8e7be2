"""The beat scheduler: RedBeat (Redis-backed, one leader among replicas) plus slot dispatch."""
from redbeat import RedBeatScheduler


class SlotScheduler(RedBeatScheduler):
    """RedBeat's leader lock and persistent entries; the nightly jobs are dispatched per slot."""
