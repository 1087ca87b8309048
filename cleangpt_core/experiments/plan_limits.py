"""How much one comparison may plan: checked, each in one line, before anything is built or written.

A comparison is planned whole before its first run: ``compare.json`` lists every run with its resolved config
(which resume checks against), and a tuned one enqueues every trial of every contender in its Optuna storage.
So the plan's size must stay bounded, and it is: a plan is the record of what the comparison will train, and a
lazily generated plan would only hide a study that can never finish (each entry is a whole training run).
The models are bounded too: a ladder counts every rung's parameters when it is planned (by formula, no model
built: `cleangpt_core.experiments.flops`), and a rung beyond `MAX_PARAMETERS` is refused there.
"""

from __future__ import annotations

MAX_SEEDS = 1000  # runs per contender, and per tuning trial
# Trainings of one comparison: contenders x (seeds + trials x tuning seeds). About 2 KB of plan and 10 ms of
# config validation each, so the largest plan is written in seconds.
MAX_RUNS = 10_000
SPLIT = "split a larger study into several comparisons"
# Non-embedding parameters of one rung's model: a trillion, beyond any model one trains through this runner
# (and below the sizes whose tensors torch cannot even describe, n_embd = 2**32 and up).
MAX_PARAMETERS = 10**12
MAX_EXTEND = 20  # --tune-extend: rounds a study may step past the end of a range
# --heartbeat: a day. Python's timed waits overflow near 9.2e9 s (threading.TIMEOUT_MAX), and a worker silent for
# three heartbeats is only then taken over, so a longer one would never hand a killed worker's trial on.
MAX_HEARTBEAT_S = 86_400
