"""What a run leaves on disk, and how it is written so that a crash loses nothing.

- `atomic_write`: every file written aside and renamed into place, through one helper
- `run_dir`: the layout of a run directory (checkpoints, ``latest``/``best`` pointers, metrics, the lock)
- `json_files`: reading a JSON file written by cleanGPT, a damaged one named in the error
- `sharded`: tensors each process writes its shards of (torch.distributed.checkpoint, safetensors only) and
  any number of processes reads back, and the single-file model made from them

What goes into those files is their owners': a model directory (``config.json`` + ``model.safetensors``) is
`cleangpt_core.model.serialization`, a checkpoint that resumes exactly (optimizer, schedule, RNG, data
position) `cleangpt_core.trainers.training_checkpoint`.
"""
