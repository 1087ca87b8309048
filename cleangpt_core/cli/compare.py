"""``cleangpt compare``: several architectures or configs, one dataset, seeds and token budget, one report."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource


def tuning_options(command: Callable[..., None]) -> Callable[..., None]:
    """The per-contender tuning options `compare` and `ablate` share."""
    options = [
        click.option(
            "--tune",
            multiple=True,
            metavar="KEY=LOW:HIGH[:log]",
            help="Tune this setting per contender before the final runs (repeatable), e.g. optimizer.lr=3e-4:3e-2:log.",
        ),
        click.option("--trials", type=int, help="Trials per contender's study (with --tune)."),
        click.option(
            "--tune-sampler",
            type=str,
            help="How trials pick settings: grid (evenly spaced, every combination) or tpe (default).",
        ),
        click.option("--tune-seeds", type=int, help="Runs per trial, on seeds after the final runs' (default 1)."),
        click.option(
            "--storage",
            help="Optuna storage URL for the studies (default: sqlite in the --out folder); PostgreSQL or MySQL "
            "to share the work among machines.",
        ),
        click.option(
            "--heartbeat",
            type=float,
            help="Seconds between a worker's heartbeats (default 10); a trial silent for 3 times this is retried.",
        ),
        click.option(
            "--tune-extend",
            type=int,
            help="Rounds a study may step past the end of a range while its best setting lies on that end "
            "(default 0: the report warns instead).",
        ),
        click.option(
            "--tune-rungs",
            type=int,
            help="With --ladder: tune at this many of the smallest rungs (default 2 where that adds at most half "
            "the compute, else 1); the report says whether the best setting moved between them.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("compare")
@click.option("--model", "models", multiple=True, metavar="NAME", help="An architecture to train (repeatable).")
@click.option(
    "--config",
    "config_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An experiment config to train (repeatable); with --model, the one config every model trains under.",
)
@click.option(
    "--comparison",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML or TOML file of these options (configs, models, set, max_tokens, seeds, target_loss, tune, ..., "
    "and base: a contender the others are judged against, as ablate); options given here as well come after "
    "(--model, --config, --set) or replace (the others) the file's.",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field in every run.")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="NAME=KEY=VALUE[;KEY=VALUE...]",
    help="A contender named NAME: the one --config (or the default recipe) with these overrides (repeatable). "
    "A --config given with variants is a contender too, the base they are measured against (named after its "
    "file); without --config the default recipe is not one.",
)
@click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps per run.")
@click.option(
    "--max-tokens", type=click.IntRange(min=1), help="Tokens per run; each run's steps follow from its batch shape."
)
@click.option(
    "--ladder",
    multiple=True,
    metavar="model.KEY=V1,V2,...",
    help="Train every contender at each of these model sizes (3 or more rungs; repeatable, zipped: "
    "--ladder model.n_embd=64,128,256 --ladder model.n_head=2,4,8), fit loss against compute per contender and "
    "report compute multipliers.",
)
@click.option(
    "--tokens-per-param",
    type=float,
    help="A ladder rung's tokens per non-embedding parameter (default 20); or give --max-tokens for every rung.",
)
@click.option("--seed", type=int, help="Seed of every run, or the first of --seeds (default: the config's).")
@click.option(
    "--seeds",
    type=int,
    default=1,
    show_default=True,
    help="Runs per contender, with seeds --seed, --seed + 1, ...; the report gives mean and spread over them.",
)
@click.option(
    "--target-loss",
    type=float,
    help="Report the tokens and steps each run needed to reach this validation loss (may be given with --resume).",
)
@click.option(
    "--eval-tokens",
    type=int,
    help="Evaluate every run about every this many tokens (whole steps of its batch), instead of "
    "trainer.eval_interval steps: curves and tokens-to-target at the same resolution for every contender.",
)
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
@tuning_options
@click.option(
    "--worker",
    is_flag=True,
    help="With --resume: join a tuned comparison's work (another process, or machine sharing its storage) "
    "and leave the report to the process started without --worker.",
)
def compare(
    comparison: Path | None,
    models: tuple[str, ...],
    config_files: tuple[Path, ...],
    overrides: tuple[str, ...],
    variants: tuple[str, ...],
    max_steps: int | None,
    max_tokens: int | None,
    ladder: tuple[str, ...],
    tokens_per_param: float | None,
    seed: int | None,
    seeds: int,
    target_loss: float | None,
    eval_tokens: int | None,
    out_dir: Path,
    resume: Path | None,
    tune: tuple[str, ...],
    trials: int | None,
    tune_sampler: str | None,
    tune_seeds: int | None,
    storage: str | None,
    heartbeat: float | None,
    tune_extend: int | None,
    tune_rungs: int | None,
    worker: bool,
) -> None:
    """Train several architectures (--model Vanilla --model SASP), configs (--config a.yaml --config b.yaml) or
    variants (--variant wide=model.n_embd=256;model.n_head=8) on the same data, seed and token budget, and
    write report.md, report.json and val_loss.png.

    A --config given with --variant options is itself a contender, the base the variants are measured
    against: `--config tiny.yaml --variant a=... --variant b=...` trains tiny, a and b (the first line names
    the base).

    With --seeds N every contender trains N times, and the report gives each one's mean and standard
    deviation, its curve's spread, and which differences are smaller than that spread; one --model or
    --config with --seeds N measures how far apart one recipe's runs land. Started again with
    the same options (or with --resume DIR), an interrupted comparison keeps its finished runs and continues
    the unfinished one from its latest checkpoint (Ctrl-C, SIGTERM or SIGUSR1 write one at the step they arrive
    in, and print the command that continues).

    With --tune KEY=LOW:HIGH[:log] --trials N every contender first gets its own Optuna study of N trials
    (each an ordinary run on tuning seeds), and the comparison's runs train each contender's best setting on
    fresh seeds. More processes join the work with `cleangpt compare --resume DIR --worker` (or the same
    command against the same --storage on another machine): every trial and run trains once.

    With --ladder model.KEY=V1,V2,... every contender trains at every rung, each to --tokens-per-param tokens
    per non-embedding parameter, and the report fits loss against training FLOPs per contender (forecast
    check, compute multipliers with bootstrap intervals, ladder.png). With --tune as well, each contender is
    tuned at its smallest rungs (--tune-rungs; two by default where the budget allows) and the rungs above train
    the largest tuned rung's best setting (tune small, then transfer: meant for model.parametrization=mup); the
    report says whether the best setting moved between the tuned rungs.
    """
    from cleangpt_core.experiments.comparison_file import comparison_options, with_tuning
    from cleangpt_core.experiments.plan import load_plan, prepare_directory
    from cleangpt_core.experiments.planning import build_plan, check_target_loss

    context = click.get_current_context()
    given = {  # the options set on the command line, not left at their defaults
        param.name: param
        for param in context.command.params
        if param.name is not None and context.get_parameter_source(param.name) is not ParameterSource.DEFAULT
    }
    if worker and resume is None:
        raise click.UsageError("--worker joins a comparison already started: give --resume DIR with it")
    base: str | None = None
    if resume is not None:
        others = [param.opts[0] for name, param in given.items() if name not in ("resume", "target_loss", "worker")]
        if others:
            raise click.UsageError(
                f"--resume continues a comparison with its saved runs; give no other options but --target-loss "
                f"(got {', '.join(others)})"
            )
        check_target_loss(target_loss)
        out_dir, plan = resume, load_plan(resume)
        if worker and plan.tuning is None:
            raise click.UsageError(f"{resume} is not a tuned comparison: --worker shares out --tune trials")
        if target_loss is not None:  # the target only changes the report: record the new one in the plan
            plan = replace(plan, target_loss=target_loss)
            prepare_directory(out_dir, plan)
    else:
        options: dict[str, Any] = {
            "models": models,
            "config_files": config_files,
            "overrides": overrides,
            "variants": variants,
            "max_steps": max_steps,
            "max_tokens": max_tokens,
            "ladder": ladder,
            "tokens_per_param": tokens_per_param,
            "seed": seed,
            "seeds": seeds,
            "eval_tokens": eval_tokens,
            "target_loss": target_loss,
            "tune": tune,
            "trials": trials,
            "tune_sampler": tune_sampler,
            "tune_seeds": tune_seeds,
            "storage": storage,
            "heartbeat": heartbeat,
            "tune_extend": tune_extend,
            "tune_rungs": tune_rungs,
        }
        if comparison is not None:
            options = comparison_options(comparison, options, list(given))
        else:
            options = with_tuning(options)
        plan = build_plan(out_dir, **options)
        if prepare_directory(out_dir, plan):
            click.echo(f"continuing the comparison in {out_dir}")
        if options["variants"] and options["config_files"] and not options["models"] and plan.ladder is None:
            base = plan.labels[0]  # the --config the variants build on trains as a contender of its own
    run_and_report(plan, out_dir, worker=worker, base=base)


def run_and_report(plan: Any, out_dir: Path, *, worker: bool = False, base: str | None = None) -> None:
    """Train what is left of `plan` (tuning first, where it has some) and write its report. A stop signal
    (Ctrl-C, SIGTERM, SIGUSR1) ends the run in training at a step boundary with a checkpoint and prints the
    command that continues; a second one stops at once. A worker trains its share and leaves the report to the
    process started without --worker. `base` names the contender that is the --config every --variant builds
    on, so the first line says it is one."""
    from cleangpt_core.experiments.execution import run_comparison
    from cleangpt_core.experiments.report import contender_table, is_seeded, markdown_table, write_report
    from cleangpt_core.experiments.summary import summarize
    from cleangpt_core.trainers.interrupts import StopRequested, stop_on_signals

    seeded = f", {plan.seeds} seeds each" if plan.seeds > 1 else ""
    tuned = f", each tuned over {plan.tuning.trials} trials first" if plan.tuning is not None else ""
    budget = "each rung's tokens" if plan.ladder is not None else f"up to {plan.tokens_per_run:,} tokens per run"
    labels = [f"{label} (the base)" if label == base else label for label in plan.labels]
    click.echo(f"comparing {', '.join(labels)} on {budget}{seeded}{tuned}, into {out_dir}")
    sections: list[tuple[str, list[str], Any]] = []
    tuning_summary: dict[str, Any] | None = None
    try:
        with stop_on_signals():
            if plan.tuning is None:
                results = run_comparison(plan, out_dir, echo=click.echo)
            else:
                from cleangpt_core.experiments.tuning import Tuner
                from cleangpt_core.experiments.tuning_report import tuning_section

                tuner = Tuner(plan, out_dir, echo=click.echo)
                tuner.work()
                if worker:
                    click.echo(f"every trial and run of {out_dir} has finished; the report is the other process's")
                    return
                results, tuning_summary = tuner.results(), tuner.summary()
                sections.append(("tuning", tuning_section(tuning_summary, out_dir), tuning_summary))
    except KeyboardInterrupt as stop:  # a StopRequested, or a Ctrl-C the handler was not installed for
        again = f"cleangpt compare --resume {out_dir}" + (" --worker" if worker else "")
        where = str(stop) if isinstance(stop, StopRequested) else "interrupted"
        click.echo(f"\n{where}; continue with: {again}", err=True)
        sys.exit(stop.exit_status if isinstance(stop, StopRequested) else 130)
    if plan.ablation_base is not None:
        from cleangpt_core.experiments.ablation import ablation_section

        lines, rows = ablation_section(results, plan.ablation_base)
        sections.insert(0, ("ablation", lines, {"base": plan.ablation_base, "levers": rows}))
    if plan.ladder is not None:
        from cleangpt_core.experiments.ladder_report import ladder_section, ladder_summary

        summary = ladder_summary(plan, results)
        sections.insert(0, ("ladder", ladder_section(summary, out_dir, tuning_summary), summary))
    first = plan.runs[0].load()
    setting = {"dataset": first.data.dataset, "seed": first.seed, "tokens_per_run": plan.tokens_per_run}
    if plan.ladder is not None:
        setting["budget"] = "each rung's own (see the ladder section)"
    elif (stopped := stopped_short(plan, results)) is not None:
        setting["budget"] = stopped
    comparable = plan.ladder.same_rung if plan.ladder is not None else None
    paths = write_report(out_dir, results, setting, plan.target_loss, sections, comparable)
    click.echo("")
    if is_seeded(results):
        click.echo(contender_table(summarize(results, plan.target_loss), plan.target_loss))
    else:
        click.echo(markdown_table(results, plan.target_loss))
    for key, lines, _ in sections:
        if key in ("ablation", "ladder"):
            for table in _tables(lines):
                click.echo("\n" + "\n".join(table))
    click.echo(f"\nreport: {paths['markdown']} ({paths['json'].name}, {paths['plot'].name})")


def stopped_short(plan: Any, results: list[dict[str, Any]]) -> str | None:
    """The budget in words where runs stopped before it (None where every run trained its budget): the report
    states what was trained, not the budget asked for (a budget beyond the data's trainer.num_epochs passes)."""
    short = [r for r in results if r.get("steps") is not None and r["steps"] < plan.max_steps[r["label"]]]
    if not short:
        return None
    tokens = sorted({r["tokens"] for r in results})
    trained = f"{tokens[0]:,}" if len(tokens) == 1 else f"{tokens[0]:,} to {tokens[-1]:,}"
    return (
        f"{plan.tokens_per_run:,} tokens asked, but {len(short)} of {len(results)} runs stopped before it, ended by "
        f"trainer.num_epochs passes over the data or by early stopping: the runs trained {trained} tokens"
    )


def _tables(lines: list[str]) -> list[list[str]]:
    """The Markdown tables among a report section's lines, each as its rows."""
    tables: list[list[str]] = []
    previous = ""
    for line in lines:
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables
