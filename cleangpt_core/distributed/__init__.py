"""Where a run trains, apart from how it trains: the device, the process group, and the DDP / FSDP2 strategy.

- `devices`: choosing the device (``auto``, ``cpu``, ``cuda``, ``mps``), and waiting for its queued work
- `process_group`: the torchrun process group, rank and world size, and the collectives the loop uses
- `strategies`: one model as it is, as DDP replicas or as FSDP2 shards (with FSDP2's mixed precision);
  activation checkpointing, compile; the full or sharded state a checkpoint holds
- `parent_death`: worker processes (torchrun's, prepare-data's tokenizers) that die with their parent
"""
