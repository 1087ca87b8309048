"""``cleangpt lm-eval RUN --tasks ...``: score a checkpoint with EleutherAI's lm-evaluation-harness."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import click


@click.command("lm-eval")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tasks", required=True, help="Comma-separated lm-eval task or group names, e.g. hellaswag,arc_easy.")
@click.option(
    "--include-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of your own task YAML files, as lm-eval's --include_path.",
)
@click.option("--num-fewshot", type=click.IntRange(min=0), default=None, help="Examples in each prompt.")
@click.option(
    "--limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Documents per task (a fraction if below 1), for a quick look.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Also write the results as JSON.")
def lm_eval(
    run: Path,
    tasks: str,
    include_path: Path | None,
    num_fewshot: int | None,
    limit: float | None,
    batch_size: int,
    device: str,
    output: Path | None,
) -> None:
    """Evaluate RUN (a checkpoint or run directory) on lm-eval tasks and print lm-eval's results table."""
    if importlib.util.find_spec("lm_eval") is None:
        raise click.ClickException(
            'cleangpt lm-eval needs the lm-evaluation-harness: pip install "cleangpt-core[eval]"'
        )
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise click.ClickException(f"--tasks {tasks!r} names no task; give e.g. --tasks hellaswag,arc_easy")
    if output is not None:
        _check_writable(output)  # before the evaluation, which may take hours: its results must not be lost
    from cleangpt_core.experiments.lm_eval_harness import evaluate_tasks

    results, table = evaluate_tasks(
        run,
        names,
        include_path=include_path,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        device=device,
    )
    click.echo(table)
    if output is not None:
        output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


def _check_writable(output: Path) -> None:
    """Fail unless `output` can be written: its folder exists and takes files, and it is not a folder itself."""
    folder = output.parent
    if not folder.is_dir():
        raise click.ClickException(f"--output {str(output)!r}: its folder {str(folder)!r} does not exist; create it")
    if output.is_dir() or not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise click.ClickException(f"--output {str(output)!r} cannot be written; choose another file")
