"""How much one comparison may plan: checked, each in one line, before anything is built or written.

A comparison is planned whole before its first run: ``compare.json`` lists every run with its resolved config
(which resume checks against), and a tuned one enqueues every trial of every contender in its Optuna storage.
So the plan's size must stay bounded, and it is: a plan is the record of what the comparison will train, and a
lazily generated plan would only hide a study that can never finish (each entry is a whole training run).
"""

from __future__ import annotations

MAX_SEEDS = 1000  # runs per contender, and per tuning trial
# Trainings of one comparison: contenders x (seeds + trials x tuning seeds). About 2 KB of plan and 10 ms of
# config validation each, so the largest plan is written in seconds.
MAX_RUNS = 10_000
SPLIT = "split a larger study into several comparisons"
