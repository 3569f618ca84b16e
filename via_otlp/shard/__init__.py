"""Shards: worker processes that each own the learned state of a share of the sources.

`pool.ShardPool` (in the serving process) starts them, hands them requests to decode and
batches to learn from, computes the global watermark, and gathers their events; `worker` is the
process itself; `wire` is what travels between them.
"""
