"""Running the twin's cities in shards across workers.

A city's synthetic fleet is drawn in blocks of whole sites
(:mod:`v2ghub.scenarios.shards`); each block is a shard a worker runs alone
(:mod:`v2ghub.scale.shard_run`), returning small pieces (:mod:`v2ghub.scale.pieces`) that
the driver merges exactly (:mod:`v2ghub.scale.merge`) while the per-session detail goes
to Parquet parts (:mod:`v2ghub.scale.parts`). What couples shards, the area's peak for the
planners that price it, is reconciled by rounds (:mod:`v2ghub.scale.coordination`). Ray
runs the tasks (:mod:`v2ghub.scale.ray_runner`), imported only when a run is sharded.
"""
