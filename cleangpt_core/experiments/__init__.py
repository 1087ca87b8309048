"""Experiments: training one run, comparing several, following them with trackers and scoring them with lm-eval.

- `training_run`, `progress_lines`: the experiment runner behind ``cleangpt train`` and ``evaluate``, and its
  progress lines in a log
- ``cleangpt compare``, by concern: `plan` (what runs: the plan, its JSON and fingerprint), `planning` (building a
  plan from contenders, seeds and budgets, checked before anything trains), `comparison_file` (the
  ``--comparison`` file's schema), `plan_limits` (how large a plan may be), `execution` (training the runs,
  resuming, their results), `report` and `summary` (the report's tables and numbers)
- `ablation`: ``cleangpt ablate``'s verdicts (each lever's effect and its interval over seeds)
- `verdicts`: the intervals of differences over seeds (Welch's or paired), a family's correction (Holm) and
  outlying seeds, for ablations, comparisons and ladders
- `calibration`, `calibration_notes`: the calibration harness (simulated studies of known truth through the
  report's functions), and its measured figures as the reports quote them
- `tuning_spec`, `tuning`, `tuning_storage`, `tuning_report`: ``--tune`` (the ranges; the Optuna studies and
  the workers claiming their trials; where the studies are stored and the workers' heartbeat; the report's section)
- `ladder`, `flops`, `scaling_fit`, `ladder_outlook`, `ladder_report`: ``--ladder`` (the rungs and their budgets;
  a run's training FLOPs; the power-law fits, forecast and compute multipliers; what more rungs or seeds would
  identify a withheld multiplier; the report's section and plot)
- `trackers`: TensorBoard, MLflow and W&B on the training events
- `lm_eval_harness`: a checkpoint as an lm-evaluation-harness model (``cleangpt lm-eval``)
- `runs_overview`: every run and comparison under a folder, their state and what differs (``cleangpt runs``)
- `known_answers`: published findings as comparison files, each judged from its report (``cleangpt known-answers``)
"""
