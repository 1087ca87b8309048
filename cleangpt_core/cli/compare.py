"""``cleangpt compare``: several architectures or configs, one dataset, seed and token budget, one report."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("compare")
@click.option("--model", "models", multiple=True, metavar="NAME", help="An architecture to train (repeatable).")
@click.option(
    "--config",
    "config_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An experiment config to train (repeatable); with --model, the one config every model trains under.",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field in every run.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps per run.")
@click.option(
    "--max-tokens", type=click.IntRange(min=1), help="Tokens per run; each run's steps follow from its batch shape."
)
@click.option("--seed", type=int, help="Seed of every run (default: the config's).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/compare"),
    show_default=True,
    help="Folder for the runs and the report.",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue the comparison saved in this folder (finished runs are kept).",
)
def compare(
    models: tuple[str, ...],
    config_files: tuple[Path, ...],
    overrides: tuple[str, ...],
    max_steps: int | None,
    max_tokens: int | None,
    seed: int | None,
    out_dir: Path,
    resume: Path | None,
) -> None:
    """Train several architectures (--model Vanilla --model SASP) or configs (--config a.yaml --config b.yaml)
    on the same data, seed and token budget, and write report.md, report.json and val_loss.png.

    Started again with the same options (or with --resume DIR), an interrupted comparison keeps its finished
    runs and continues the unfinished one from its latest checkpoint.
    """
    from cleangpt_core.compare import build_plan, load_plan, prepare_directory, run_comparison
    from cleangpt_core.compare_report import markdown_table, write_report

    if resume is not None:
        if models or config_files or overrides or max_steps or max_tokens or seed is not None:
            raise click.UsageError("--resume continues a comparison with its saved runs; give no other options")
        out_dir, plan = resume, load_plan(resume)
    else:
        plan = build_plan(
            out_dir,
            models=models,
            config_files=config_files,
            overrides=overrides,
            max_steps=max_steps,
            max_tokens=max_tokens,
            seed=seed,
        )
        if prepare_directory(out_dir, plan):
            click.echo(f"continuing the comparison in {out_dir}")
    labels = ", ".join(run.label for run in plan.runs)
    click.echo(f"comparing {labels} on {plan.tokens_per_run:,} tokens each, into {out_dir}")
    try:
        results = run_comparison(plan, out_dir, echo=click.echo)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; run `cleangpt compare --resume {out_dir}` to continue", err=True)
        sys.exit(130)
    first = plan.runs[0].load()
    setting = {"dataset": first.data.dataset, "seed": first.seed, "tokens_per_run": plan.tokens_per_run}
    paths = write_report(out_dir, results, setting)
    click.echo("")
    click.echo(markdown_table(results))
    click.echo(f"\nreport: {paths['markdown']} ({paths['json'].name}, {paths['plot'].name})")
