"""Experiment trackers (TensorBoard, MLflow, Weights & Biases) fed from the training events.

Chosen per run by ``logging.report_to`` in the experiment config; each needs its optional extra
(``pip install "cleangpt-core[tensorboard]"``, ``[mlflow]``, ``[wandb]``). This package's ``__init__`` and
``catalog`` are light: the config loads without torch or any tracker package.
"""

from cleangpt_core.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TRACKERS": ".catalog",
        "LoggingConfig": "cleangpt_core.config.tracking",
        "TrackerSpec": ".catalog",
        "check_trackers_installed": ".catalog",
        "Tracker": ".base",
        "TrackedRun": ".base",
        "TrackingSession": ".base",
    },
)
