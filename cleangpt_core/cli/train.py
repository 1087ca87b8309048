"""``cleangpt train`` and ``cleangpt evaluate``: the experiment runner on the command line.

Torch and the runner are imported inside the commands, so ``cleangpt --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import yaml

from cleangpt_core.config.experiment import AUTO_EVAL_CAP, AUTO_EVAL_FLOOR


@click.command("train")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML, TOML or JSON experiment config (a run's own experiment.json too), laid over the defaults (the "
    "recipe in configs/default.yaml).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one field, e.g. --set model.n_layer=8 --set trainer.max_steps=500 (repeatable).",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Continue the run in this run (or checkpoint) directory exactly where it stopped.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start afresh in an output directory that already holds a run, deleting it once every check has passed.",
)
@click.option(
    "--init-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Start a new run from these weights (a run, a checkpoint, an exported or a Hugging Face folder): its "
    "model config and tokenizer come from there, everything else from the recipe (fine-tuning).",
)
@click.option("--dry-run", is_flag=True, help="Print the resolved experiment config as YAML and exit; train nothing.")
def train(
    config_file: Path | None,
    overrides: tuple[str, ...],
    resume: Path | None,
    overwrite: bool,
    init_from: Path | None,
    dry_run: bool,
) -> None:
    """Train a model, write checkpoints, metrics and a loss curve into the run directory, then print a sample.

    With no options: a small character-level model on the embedded Tiny Shakespeare (about a minute on two
    CPU cores), written to runs/default. Under `torchrun --nproc_per_node=N` every process trains its
    shard of each batch (DistributedDataParallel).

    Ctrl-C, SIGTERM or SIGUSR1 (SLURM's `--signal=B:USR1@120`) finish the current step, write a checkpoint and
    print the command that continues the run; a second one stops at once.
    """
    from cleangpt_core.config import load_experiment_config
    from cleangpt_core.experiments.training_run import initial_weights, resume_config, run_experiment, sets_warmup
    from cleangpt_core.trainers.interrupts import StopRequested, stop_on_signals

    if resume is not None and config_file is not None:
        raise click.UsageError("--resume continues a run with its saved config; leave out --config")
    if resume is not None and overwrite:
        raise click.UsageError("--resume continues a run and --overwrite deletes it; give one of them")
    if resume is not None and init_from is not None:
        raise click.UsageError("--resume continues a run and --init-from starts a new one from weights; give one")
    model_overrides = [item for item in overrides if item.startswith("model.") and not item.startswith("model.dropout")]
    if init_from is not None and model_overrides:
        raise click.UsageError(
            f"{model_overrides[0]}: with --init-from the model is the one in {init_from}; only model.dropout may be set"
        )
    if resume is not None:
        config, checkpoint = resume_config(resume, overrides)
    else:
        config = load_experiment_config(config_file, overrides)
        if init_from is not None and dry_run:
            config = initial_weights(init_from, config)[0]
    if dry_run:
        click.echo(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False).rstrip())
        return
    with stop_on_signals():
        try:
            if resume is not None:
                run_experiment(config, resume_from=checkpoint, echo=click.echo)
            else:
                run_experiment(
                    config,
                    overwrite=overwrite,
                    echo=click.echo,
                    init_from=init_from,
                    shorten_warmup=not sets_warmup(overrides),
                )
        except StopRequested as stop:
            if stop.checkpoint is None and resume is None:
                then = "nothing was saved yet: run the same command again"
            else:
                then = f"continue with: cleangpt train --resume {config.output.dir}"
            click.echo(f"\n{stop}; {then}", err=True)
            sys.exit(stop.exit_status)


class EvalTokens(click.ParamType):
    """A positive number of tokens, or 'all'."""

    name = "N|all"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) or str(value).lower() == "all":
            return value if isinstance(value, int) else "all"
        try:
            number = int(str(value).replace("_", "").replace(",", ""))
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is neither a positive number of tokens nor 'all'", param, ctx)
        return number


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--data",
    "dataset",
    default=None,
    help="'tinyshakespeare', 'python-stdlib', a local .txt/.json/.jsonl file or folder, or a hub dataset (default: "
    "the run's own).",
)
@click.option("--split", default="validation", show_default=True, help="Which split of the data to score.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Windows per batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option(
    "--max-tokens",
    type=EvalTokens(),
    default=None,
    help="Score the first N tokens of the split, or 'all' (default: as many as the run's final evaluation, its "
    f"data.eval_tokens: with 'auto', as many as it trained on, {AUTO_EVAL_FLOOR:,} to {AUTO_EVAL_CAP:,}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(
    checkpoint: Path,
    dataset: str | None,
    split: str,
    batch_size: int | None,
    device: str,
    max_tokens: int | str | None,
    as_json: bool,
) -> None:
    """Print the mean loss per token and the perplexity of CHECKPOINT (a checkpoint or run directory).

    A long evaluation shows a bar on a terminal and a line every 30 s in a log.
    """
    from cleangpt_core.experiments.training_run import evaluate_checkpoint

    result = evaluate_checkpoint(
        checkpoint, dataset=dataset, split=split, batch_size=batch_size, device=device, max_tokens=max_tokens
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    of = "" if result["tokens"] == result["split_tokens"] else f" of its {result['split_tokens']:,} (--max-tokens all)"
    error = f" ± {result['stderr']:.4f} (standard error)" if result.get("stderr") is not None else ""
    click.echo(
        f"{result['checkpoint']} on the {result['split']} split of {result['dataset']!r}: loss {result['loss']:.4f}"
        f"{error}, perplexity {result['perplexity']:.3f} over {result['tokens']:,} tokens{of}"
    )
