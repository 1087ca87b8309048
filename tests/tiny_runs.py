"""Overrides shared by the command-line tests whose runs must take seconds: a one-layer model 16 wide with a
context of 16, batches of 4, evaluation and checkpoints every 2 steps, no progress bar and no sample, on the CPU.

Imported by name (``from tiny_runs import TINY``): pytest puts tests/ on the path (``pythonpath`` in
pyproject.toml), since the importlib import mode lets no test module import another.
"""

TINY = [
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=16",
    "model.block_size=16",
    "data.batch_size=4",
    "schedule.warmup_steps=1",
    "trainer.eval_interval=2",
    "trainer.checkpoint_interval=2",
    "trainer.log_interval=2",
    "trainer.progress_bar=false",
    "output.sample_tokens=0",
    "device=cpu",
]


def set_options(*overrides: str) -> list[str]:
    """``--set`` before each override, as the command line takes them."""
    return [part for override in overrides for part in ("--set", override)]
