"""The comparison file: ``cleangpt compare --comparison FILE``'s options written down in YAML or TOML, its schema
and how it merges with the command line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt

from cleangpt_core.config.base import StrictModel, validate_config
from cleangpt_core.config.experiment import read_config_file
from cleangpt_core.experiments.planning import ContenderSpec
from cleangpt_core.experiments.tuning_spec import tuning_spec

# Repeatable options whose command-line values replace the file's rather than add to them.
REPLACED_LISTS = ("tune",)
# `tuning_spec`'s arguments, in its order: the options `with_tuning` turns into the plan's tuning.
TUNING_OPTIONS = ("tune", "trials", "tune_sampler", "tune_seeds", "storage", "heartbeat", "tune_extend", "tune_rungs")


class ContenderEntry(StrictModel):
    """One contender of a comparison file: a base (``config`` and/or ``model``) with overrides, under a name."""

    name: str | None = Field(None, description="its label (default: the model, or the config file's stem)")
    config: str | None = Field(None, description="an experiment config, relative to the comparison file")
    model: str | None = Field(None, description="an architecture (as --model)")
    overrides: list[str] = Field(default_factory=list, alias="set", description="overrides of this contender's runs")


class ComparisonFile(StrictModel):
    """A comparison written down: the options of ``cleangpt compare`` in a YAML or TOML file.

    Config files are found relative to the comparison file's folder, so the file and the configs it
    compares travel together; ``set`` holds ``section.field=value`` overrides for every run, as ``--set``.
    """

    models: list[str] = Field(default_factory=list, description="architectures to train (as --model)")
    configs: list[str] = Field(default_factory=list, description="experiment configs, relative to this file")
    contenders: list[ContenderEntry] = Field(
        default_factory=list, description="contenders with their own base and overrides (name, config, model, set)"
    )
    overrides: list[str] = Field(default_factory=list, alias="set", description="overrides of every run (as --set)")
    max_steps: PositiveInt | None = Field(None, description="optimizer steps per run")
    max_tokens: PositiveInt | None = Field(None, description="tokens per run, in whole steps of each batch")
    seed: int | None = Field(None, description="the first seed (default: the configs')")
    seeds: int = Field(1, description="runs per contender")
    target_loss: float | None = Field(None, description="the validation loss whose tokens-to-reach is reported")
    eval_tokens: int | None = Field(None, description="tokens between two evaluations of every run")
    ladder: list[str] = Field(default_factory=list, description="model sizes, as --ladder model.KEY=V1,V2,...")
    tokens_per_param: float | None = Field(None, description="a ladder rung's tokens per parameter (default 20)")
    tune: list[str] = Field(default_factory=list, description="settings tuned per contender, as --tune KEY=LOW:HIGH")
    trials: int | None = Field(None, description="trials per contender's study (with tune)")
    tune_sampler: str | None = Field(None, description="grid or tpe (with tune)")
    tune_seeds: int | None = Field(None, description="runs per trial (with tune; default 1)")
    tune_extend: int | None = Field(None, description="rounds a study may step past an end of a range (with tune)")
    tune_rungs: int | None = Field(None, description="with a ladder and tune: how many of the smallest rungs to tune")
    base: str | None = Field(
        None, description="a contender every other one is judged against, with an interval, as `cleangpt ablate`"
    )
    known_answer: dict[str, Any] | None = Field(
        None, description="the published finding this comparison reproduces, read by `cleangpt known-answers`"
    )


def comparison_options(path: Path, command_line: dict[str, Any], given: Sequence[str] = ()) -> dict[str, Any]:
    """`build_plan`'s options from a comparison file and the command line.

    The command line's ``--model``, ``--config`` and ``--set`` come after the file's; any other option
    named in `given` (set on the command line, not left at its default) replaces the file's value (``--tune``
    replaces the file's ranges). The file's ``base`` is the plan's ``ablation_base``; its ``known_answer`` is
    not an option of the plan.
    """
    spec = validate_config(ComparisonFile, read_config_file(path), f"comparison file {str(path)!r}")
    written = spec.model_dump(exclude={"known_answer"})
    written["ablation_base"] = written.pop("base")
    written["config_files"] = [path.parent / config for config in written.pop("configs")]
    written["contenders"] = [
        ContenderSpec(
            entry.name,
            str(path.parent / entry.config) if entry.config is not None else None,
            entry.model,
            tuple(entry.overrides),
        )
        for entry in spec.contenders
    ]
    options = dict(command_line)
    for name, value in written.items():
        if isinstance(value, list) and name not in REPLACED_LISTS:
            options[name] = [*value, *command_line.get(name, ())]
        elif name not in given:
            options[name] = value
    return with_tuning(options)


def with_tuning(options: dict[str, Any]) -> dict[str, Any]:
    """`options` with the tuning options (`TUNING_OPTIONS`, any of them absent) made into `build_plan`'s one
    ``tuning`` (None without ``tune``)."""
    options = dict(options)
    tuning = [options.pop(name, None) for name in TUNING_OPTIONS]
    options["tuning"] = tuning_spec(tuning[0] or (), *tuning[1:])
    return options


