"""Where a run trains, apart from how it trains: the device, the process group, and the DDP / FSDP2 strategy.

- `devices`: choosing the device (``auto``, ``cpu``, ``cuda``, ``mps``)
- `process_group`: the torchrun process group, rank and world size, and the collectives the loop uses
- `strategies`: one model as it is, as DDP replicas or as FSDP2 shards; activation checkpointing, compile
- `parent_death`: worker processes (torchrun's, prepare-data's tokenizers) that die with their parent
"""
