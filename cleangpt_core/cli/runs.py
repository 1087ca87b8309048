"""``cleangpt runs``: every run and comparison under a folder, their state and what differs between them."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("runs")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("runs"))
@click.option("--json", "as_json", is_flag=True, help="Print the runs and comparisons as JSON.")
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Also write each run's metrics.jsonl as TensorBoard event files (<run>/tensorboard), so that "
    "`tensorboard --logdir FOLDER` shows every run's curves.",
)
def runs(folder: Path, as_json: bool, tensorboard: bool) -> None:
    """List every run and comparison under FOLDER (default: runs): its state (running, finished, or interrupted
    with the command that continues it), steps, tokens, best and final validation loss, and the config keys
    whose values differ between the runs."""
    from cleangpt_core.experiments.runs_overview import as_text, overview, overview_json, write_tensorboard

    comparisons, found = overview(folder)
    written = write_tensorboard(found) if tensorboard else []
    if as_json:
        click.echo(json.dumps(overview_json(comparisons, found), indent=2))
    else:
        click.echo(as_text(folder, comparisons, found))
    if written:
        shown = f"wrote the TensorBoard files of {len(written)} run(s): tensorboard --logdir {folder}"
        click.echo(f"\n{shown}", err=as_json)  # after JSON, on stderr: stdout stays one JSON document
