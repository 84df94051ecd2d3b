"""A fleet of gateways on Ray (optional extra ``streamfuse[cluster]``): device shards owned by
shard-owner actors, moved between them and restored after a crash (``docs/scaling.md``).

Importing this package loads no Ray; ``controller`` (the one module that imports it at the
top) is loaded when a fleet starts.
"""
