"""What a run leaves on disk, and how it is written so that a crash loses nothing.

- `atomic_write`: every file written aside and renamed into place, through one helper
- `run_dir`: the layout of a run directory (checkpoints, ``latest``/``best`` pointers, metrics, the lock)
- `training_checkpoint`: a checkpoint that resumes exactly (model, optimizer, schedule, RNG, data position)

A model directory on its own (``config.json`` + ``model.safetensors``) is `cleangpt_core.model.serialization`.
"""
