"""``cleangpt ablate``: a recipe and each of its levers switched, over seeds, as one comparison with verdicts."""

from __future__ import annotations

from pathlib import Path

import click

from cleangpt_core.cli.compare import run_and_report, tuning_options


@click.command("ablate")
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--lever",
    "levers",
    multiple=True,
    required=True,
    metavar="NAME=KEY=VALUE[;KEY=VALUE...]",
    help="A lever: the config with these overrides, named NAME (repeatable), e.g. gelu=model.feedforward=gelu.",
)
@click.option("--seeds", type=int, default=3, show_default=True, help="Runs per lever and for the base (at least 2).")
@click.option("--seed", type=int, help="The first seed (default: the config's).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field in every run.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps per run (default: the config's).")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Tokens per run, in whole steps of each batch.")
@click.option("--eval-tokens", type=int, help="Evaluate every run about every this many tokens.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/ablate"),
    show_default=True,
    help="Folder for the runs and the report.",
)
@tuning_options
def ablate(
    config: Path,
    levers: tuple[str, ...],
    seeds: int,
    seed: int | None,
    overrides: tuple[str, ...],
    max_steps: int | None,
    max_tokens: int | None,
    eval_tokens: int | None,
    out_dir: Path,
    tune: tuple[str, ...],
    trials: int | None,
    tune_sampler: str | None,
    tune_seeds: int | None,
    storage: str | None,
    heartbeat: float | None,
    tune_extend: int | None,
    tune_rungs: int | None,
) -> None:
    """Train CONFIG and CONFIG with each --lever switched, each over --seeds seeds, on the same data and budget,
    and report each lever's change of the mean validation loss with its 95% interval and verdict (helps, hurts,
    within noise).

    Started again with the same options (or `cleangpt compare --resume DIR`), it keeps finished runs. With
    --tune, the base and every lever are tuned first, each in its own study, so a lever is not judged at
    a learning rate chosen for the base.
    """
    from cleangpt_core.errors import ConfigError
    from cleangpt_core.experiments.plan import prepare_directory
    from cleangpt_core.experiments.planning import build_plan
    from cleangpt_core.experiments.tuning_spec import tuning_spec

    if seeds < 2:
        raise ConfigError(f"--seeds must be at least 2 for an ablation (an interval needs a spread), got {seeds}")
    plan = build_plan(
        out_dir,
        config_files=[config],
        overrides=overrides,
        variants=levers,
        max_steps=max_steps,
        max_tokens=max_tokens,
        seed=seed,
        seeds=seeds,
        eval_tokens=eval_tokens,
        tuning=tuning_spec(tune, trials, tune_sampler, tune_seeds, storage, heartbeat, tune_extend, tune_rungs),
        ablation_base=config.stem,
    )
    if prepare_directory(out_dir, plan):
        click.echo(f"continuing the ablation in {out_dir}")
    run_and_report(plan, out_dir, base=plan.ablation_base)
