"""lm-eval's own command line with the ``cleangpt`` model registered: for lm-eval releases that do not discover
models through the ``lm_eval.models`` entry point (0.4.13, which ``.[dev]`` installs, is one).

    python -m cleangpt_core.experiments.lm_eval_cli run --model cleangpt --model_args pretrained=RUN --tasks T

takes every argument ``lm-eval`` takes; ``cleangpt lm-eval RUN --tasks T`` is the shorter route to the same
evaluation.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Register `CleanGPTLM` in lm-eval's registry (by importing it), then run lm-eval's CLI on sys.argv."""
    from lm_eval.__main__ import cli_evaluate

    import cleangpt_core.experiments.lm_eval_harness  # noqa: F401  (registers the model "cleangpt")

    sys.argv[0] = "lm-eval"
    cli_evaluate()


if __name__ == "__main__":
    main()
