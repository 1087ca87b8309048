"""Experiments: training one run, comparing several, following them with trackers and scoring them with lm-eval.

- `training_run`: the experiment runner behind ``cleangpt train`` and ``evaluate``
- `compare`, `report`, `summary`: ``cleangpt compare`` (the plan, its runs, the report and its tables)
- `ablation`: ``cleangpt ablate``'s verdicts (each lever's effect and its interval over seeds)
- `verdicts`: the intervals of differences over seeds (Welch's or paired), a family's correction (Holm) and
  outlying seeds, for ablations, comparisons and ladders
- `calibration`: the calibration harness (simulated studies of known truth through the report's functions)
- `tuning_spec`, `tuning`, `tuning_report`: ``--tune`` (the ranges; the Optuna studies and their workers; the
  report's section)
- `ladder`, `flops`, `scaling_fit`, `ladder_report`: ``--ladder`` (the rungs and their budgets; a run's training
  FLOPs; the power-law fits, forecast and compute multipliers; the report's section and plot)
- `trackers`: TensorBoard, MLflow and W&B on the training events
- `lm_eval_harness`: a checkpoint as an lm-evaluation-harness model (``cleangpt lm-eval``)
"""
