"""Experiment trackers (TensorBoard, MLflow, Weights & Biases) fed from the training events.

Chosen per run by ``logging.report_to`` in the experiment config; each needs its optional extra
(``pip install "cleangpt-core[tensorboard]"``, ``[mlflow]``, ``[wandb]``). This package's ``__init__`` and
the catalog of trackers (`cleangpt_core.config.tracking`) are light: the config loads without torch or any
tracker package.
"""

from cleangpt_core.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TRACKERS": "cleangpt_core.config.tracking",
        "LoggingConfig": "cleangpt_core.config.tracking",
        "TrackerSpec": "cleangpt_core.config.tracking",
        "check_trackers_installed": "cleangpt_core.config.tracking",
        "Tracker": ".base",
        "TrackedRun": ".base",
        "TrackingSession": ".base",
    },
)
