"""Building a comparison's plan from what the user wrote: contenders (architectures, config files, variants,
a comparison file's entries), seeds, the token or step budget, evaluation cadence, tuning and ladder rungs.

Each *contender* (an architecture, a config file, or a *variant*: a base with ``--set``-style overrides, named by
the user) trains once, or once per seed with ``seeds`` > 1: seed
*s*, *s*+1, ... from ``--seed`` or, without it, from the contenders' shared config seed. A run's seed sets
both the experiment seed (initialisation, dropout) and the trainer's (the data order), so the spread over
seeds is what a reader should expect from another seed.

Everything that can be checked is checked here, before anything is written or trained: that the contenders
share their data and seed (a contender's own overrides may not set what the runs share or what the plan sets
per run: its folder, its step budget), that every run's final config validates, that the schedule fits each
budget, that a tuning's ranges are valid at both ends, that a ladder's rungs grow the model, and that the plan
stays within `cleangpt_core.experiments.plan_limits`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cleangpt_core.config.experiment import ExperimentConfig, load_experiment_config
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.ladder import (
    check_mup_head_widths,
    default_tune_rungs,
    expand_contenders,
    parse_ladder,
    rung_parameters,
    rung_tokens,
)
from cleangpt_core.experiments.plan import (
    RUNS_DIR,
    SHARED_KEYS,
    ComparisonPlan,
    PlannedRun,
    config_record,
    tokens_per_step,
)
from cleangpt_core.experiments.plan_limits import MAX_RUNS, MAX_SEEDS, SPLIT
from cleangpt_core.experiments.tuning_spec import TuningSpec

# How a run is fed may differ between contenders (the token budget evens out the batch shape); the text and
# its split, every other field of the data section, may not: the validation losses would not be comparable.
FEEDING_FIELDS = ("batch_size", "eval_batch_size", "windows", "num_workers")


@dataclass(frozen=True)
class ContenderSpec:
    """A contender as written: a base (a config file, an architecture, both or neither) plus overrides.

    `name` is its label where the user chose one (a variant, a comparison file's contender); otherwise the
    label follows from the architecture or the config file's stem.
    """

    name: str | None = None
    config_file: str | None = None
    model: str | None = None
    overrides: tuple[str, ...] = ()


LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_label(name: str, what: str) -> str:
    """A user-chosen label names a run directory: letters, digits, ``_``, ``.`` and ``-`` only."""
    if not LABEL_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{what}: the name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.' "
            "or '-' (it names a folder)"
        )
    return name


def parse_variant(text: str, option: str = "--variant") -> tuple[str, tuple[str, ...]]:
    """``NAME=KEY=VALUE[;KEY=VALUE...]`` as its name and its overrides, each ``KEY=VALUE`` as ``--set`` takes it."""
    name, separator, rest = text.partition("=")
    if not separator or not name.strip() or not rest.strip():
        raise ConfigError(f"{option} {text!r} must look like NAME=KEY=VALUE[;KEY=VALUE...]")
    overrides = tuple(part.strip() for part in rest.split(";"))
    for part in overrides:
        key, equals, _ = part.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{option} {text!r}: {part!r} must look like KEY=VALUE (e.g. model.n_layer=8)")
    return check_label(name.strip(), f"{option} {text!r}"), overrides


def _labels(names: Sequence[str]) -> list[str]:
    """Directory-safe labels, numbered where two runs would share one."""
    labels: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
        label, number = base, 2
        while label in labels:
            label, number = f"{base}-{number}", number + 1
        labels.append(label)
    return labels


def check_target_loss(target_loss: float | None) -> None:
    """A target validation loss must be a positive number (a cross-entropy in nats per token)."""
    if target_loss is not None and not (math.isfinite(target_loss) and target_loss > 0):
        raise ConfigError(f"--target-loss must be a positive validation loss, got {target_loss}")


def build_plan(
    out_dir: Path,
    *,
    models: Sequence[str] = (),
    config_files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    variants: Sequence[str] = (),
    contenders: Sequence[ContenderSpec] = (),
    max_steps: int | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    seeds: int = 1,
    eval_tokens: int | None = None,
    target_loss: float | None = None,
    tuning: TuningSpec | None = None,
    ablation_base: str | None = None,
    ladder: Sequence[str] = (),
    tokens_per_param: float | None = None,
) -> ComparisonPlan:
    """The runs of ``--model``/``--config``/``--variant`` options, checked to share data, seed and token budget.

    Several models with at most one config train each model under that config (or the default recipe);
    several configs without models train each config. Each variant (``NAME=KEY=VALUE[;KEY=VALUE...]``) is
    the one config (or the default recipe) with its overrides, and `contenders` (a comparison file's) name
    their own base. Each contender trains `seeds` times, with seeds
    `seed` (default: the contenders' config seed), `seed` + 1, ... `eval_tokens` evaluates every run about
    every that many tokens (rounded up to whole steps of its batch shape), so that runs with different batch
    shapes measure their curves, and the tokens they need to reach `target_loss`, at the same resolution.
    Every run's overrides end with its run directory and step budget. With `tuning`, each contender's settings
    are tuned first (`cleangpt_core.experiments.tuning`) and these runs train the best of them. With `ladder`
    (``--ladder`` options) every contender trains at every rung, to `tokens_per_param` tokens per parameter or
    `max_tokens` (`cleangpt_core.experiments.ladder`).
    """
    if models and len(config_files) > 1:
        raise ConfigError("give several --model with at most one --config, or several --config without --model")
    if variants and len(config_files) > 1:
        raise ConfigError("a --variant builds on the one --config (or the default recipe): give at most one --config")
    if max_steps is not None and max_tokens is not None:
        raise ConfigError("give --max-steps or --max-tokens, not both")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (runs per contender), got {seeds}")
    if seeds > MAX_SEEDS:
        raise ConfigError(
            f"--seeds must be at most {MAX_SEEDS:,} (runs per contender), got {seeds:,}; a plan is built and saved "
            f"whole before the first run, so {SPLIT}"
        )
    if eval_tokens is not None and eval_tokens < 1:
        raise ConfigError(f"--eval-tokens must be at least 1, got {eval_tokens}")
    if eval_tokens is not None and any(o.startswith("trainer.eval_interval=") for o in overrides):
        raise ConfigError("give --eval-tokens or --set trainer.eval_interval=..., not both")
    check_target_loss(target_loss)
    rungs = parse_ladder(ladder, tokens_per_param=tokens_per_param, max_tokens=max_tokens, max_steps=max_steps)
    if tuning is not None and tuning.rungs is not None and (rungs is None or tuning.rungs > rungs.rungs):
        raise ConfigError(
            f"--tune-rungs {tuning.rungs}: "
            + ("it applies to a ladder (--ladder)" if rungs is None else f"the ladder has {rungs.rungs} rungs")
        )
    if any(o.partition("=")[0].strip() == "output.dir" for o in overrides):
        raise ConfigError("--set output.dir: a comparison's runs are folders of its --out; give --out DIR instead")
    labels, specs = _contenders(models, config_files, overrides, variants, contenders)
    if rungs is not None:
        rungs, labels, specs = expand_contenders(rungs, labels, specs)
    per_contender = seeds + (tuning.max_trials * tuning.tune_seeds if tuning is not None else 0)
    if len(specs) * per_contender > MAX_RUNS:  # before any contender's config is read
        tuned = f" + {tuning.max_trials:,} trials x {tuning.tune_seeds:,} tuning seeds" if tuning is not None else ""
        raise ConfigError(
            f"the comparison would train {len(specs) * per_contender:,} runs ({len(specs):,} contenders x ({seeds:,} "
            f"seeds{tuned})), more than the {MAX_RUNS:,} a plan may hold; it is built and saved whole before the "
            f"first run, so {SPLIT}"
        )
    if len(specs) * seeds < 2:  # one contender over several seeds measures its own spread
        raise ConfigError(
            "a comparison needs at least two runs: give two or more --model or --config, or --seeds 2 or more, or "
            "a --variant"
        )
    if ablation_base is not None and ablation_base not in labels:
        raise ConfigError(f"the ablation's base {ablation_base!r} is not one of the contenders ({', '.join(labels)})")

    # Each contender as its first seed would train it: the batch shape, the step budget, the seed.
    firsts: dict[str, ExperimentConfig] = {}
    for label, (config_file, contender_overrides) in zip(labels, specs, strict=True):
        config = _load_contender(label, config_file, contender_overrides)
        if seed is not None:
            seeding = [f"seed={seed}"]
            config = load_experiment_config(config_file, [*contender_overrides, *seeding])
        firsts[label] = config
    _check_same_setting(firsts)
    model_configs = {label: config.model for label, config in firsts.items()}
    if rungs is not None:
        check_mup_head_widths(rungs, model_configs)
    parameters = rung_parameters(rungs, model_configs) if rungs is not None else {}

    from cleangpt_core.experiments.training_run import sets_warmup  # torch: only once a plan is built
    from cleangpt_core.trainers.optim_factory import check_schedule

    runs, steps, budgets, configs = [], {}, {}, {}
    for label, (config_file, contender_overrides) in zip(firsts, specs, strict=True):
        first = firsts[label]
        per_step = tokens_per_step(first)
        tokens = (rung_tokens(rungs, parameters[label]) if rungs is not None else None) or max_tokens
        fixed = max_steps or first.trainer.options.get("max_steps")
        steps[label] = math.ceil(tokens / per_step) if tokens is not None else fixed
        if steps[label] is None:
            raise ConfigError(f"run {label!r} has no step budget: pass --max-steps or --max-tokens")
        budgets[label] = steps[label] * per_step
        # the schedule fits the budget only once the budget is known: checked here, before any run trains
        shorten = not sets_warmup(contender_overrides)
        check_schedule(first.schedule.name, first.schedule.options, steps[label], shorten_warmup=shorten)
        evaluation = [] if eval_tokens is None else [f"trainer.eval_interval={math.ceil(eval_tokens / per_step)}"]
        for run_seed in range(first.seed, first.seed + seeds):
            seeding = [f"seed={run_seed}"] if seed is not None or seeds > 1 else []
            directory = label if seeds == 1 else f"{label}/seed-{run_seed}"
            run = PlannedRun(
                label,
                config_file,
                (
                    *contender_overrides,
                    *seeding,
                    *evaluation,
                    f"output.dir={out_dir.resolve() / RUNS_DIR / directory}",
                    f"trainer.max_steps={steps[label]}",
                ),
                run_seed,
                directory,
            )
            configs[directory] = config_record(run.load())  # validates each final config before anything trains
            runs.append(run)
    runs = _one_evaluation_size(runs)
    configs = {run.directory: config_record(run.load()) for run in runs}
    # With --max-tokens each run trains on max_tokens rounded up to whole steps: the same budget.
    if max_tokens is None and rungs is None and len(set(budgets.values())) > 1:
        listed = ", ".join(f"{label}: {tokens:,}" for label, tokens in budgets.items())
        raise ConfigError(
            f"the runs would train on different numbers of tokens ({listed}) because their batch_size x block_size "
            "differ; pass --max-tokens to give each the same token budget"
        )
    if rungs is not None and tuning is not None and tuning.rungs is None:
        from cleangpt_core.experiments.flops import training_flops

        flops: dict[str, float] = {}
        for label, config in firsts.items():
            model, tokens = config.model, steps[label] * tokens_per_step(config)
            flops[label] = training_flops(parameters[label], tokens, model.n_layer, model.block_size, model.n_embd)
        tuning = replace(tuning, rungs=default_tune_rungs(rungs, flops, seeds, tuning.trials * tuning.tune_seeds))
    plan = ComparisonPlan(
        tuple(runs),
        steps,
        max_tokens or next(iter(budgets.values())),
        configs,
        seeds,
        target_loss,
        tuning,
        ablation_base,
        rungs,
    )
    if tuning is not None:
        from cleangpt_core.experiments.tuning import check_tuning  # optuna's ranges: checked before anything trains

        check_tuning(plan)
    return plan


def _one_evaluation_size(runs: list[PlannedRun]) -> list[PlannedRun]:
    """Runs compared are scored on the same validation tokens (the head of the split): where every run leaves
    data.eval_tokens to 'auto', which sizes it to the run, and the sizes differ (a ladder's rungs), each scores
    the most any of them would alone."""
    from cleangpt_core.experiments.training_run import evaluation_tokens

    loaded = [run.load() for run in runs]
    sizes = {evaluation_tokens(config) for config in loaded}
    if any(config.data.eval_tokens != "auto" for config in loaded) or len(sizes) == 1:
        return runs
    return [replace(run, overrides=(*run.overrides, f"data.eval_tokens={max(sizes)}")) for run in runs]


def contender_labels(options: dict[str, Any]) -> list[str]:
    """The labels the contenders of `build_plan`'s `options` get (its models, configs, variants and contenders),
    without reading a config file: what a comparison file's other sections may name."""
    keys = ("models", "config_files", "overrides", "variants", "contenders")
    return _contenders(*(options.get(key) or () for key in keys))[0]


def _contenders(
    models: Sequence[str],
    config_files: Sequence[str | Path],
    overrides: Sequence[str],
    variants: Sequence[str],
    contenders: Sequence[ContenderSpec],
) -> tuple[list[str], list[tuple[str | None, list[str]]]]:
    """Each contender's label and what builds its config: a config file (or None) and its overrides.

    The overrides every run shares come first, then the contender's own (its model, then its variant's keys),
    so a contender's setting wins over the shared one.
    """
    written: list[ContenderSpec] = []
    if models:
        config_file = str(config_files[0]) if config_files else None
        written += [ContenderSpec(None, config_file, model) for model in models]
    else:
        written += [ContenderSpec(None, str(path)) for path in config_files]
    written += list(contenders)
    base = str(config_files[0]) if config_files else None
    written += [ContenderSpec(name, base, None, keys) for name, keys in map(parse_variant, variants)]

    from cleangpt_core.registry import get_component

    names, specs = [], []
    for contender in written:
        model = get_component("architecture", contender.model).name if contender.model is not None else None
        config_file = str(Path(contender.config_file).resolve()) if contender.config_file is not None else None
        specs.append(
            (config_file, [*overrides, *([f"model.model_type={model}"] if model else []), *contender.overrides])
        )
        names.append(contender.name or model or (Path(config_file).stem if config_file else "default"))
    labels = _labels(names)
    for contender, label in zip(written, labels, strict=True):
        if contender.name is not None and check_label(contender.name, "contender") != label:
            raise ConfigError(
                f"two contenders are named {contender.name!r}: give each variant or contender its own name"
            )
        _check_own_overrides(label, contender.overrides)
    return labels, specs


def _check_own_overrides(label: str, overrides: Sequence[str]) -> None:
    """A contender's own overrides may change how its data is fed, never what every run shares (the data, the
    seed) or what the plan sets per run (its folder, its step budget): those would be silently replaced, or
    make the runs incomparable."""
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key.startswith(SHARED_KEYS) and key not in {f"data.{name}" for name in FEEDING_FIELDS}:
            raise ConfigError(
                f"contender {label!r}: {override!r} sets {key!r}, which every run of a comparison shares or the "
                "comparison sets itself (data, seed, device, output folder, step budget); set it for all runs with "
                "--set, --out, --seed or --max-steps"
            )


def _load_contender(label: str, config_file: str | None, overrides: Sequence[str]) -> ExperimentConfig:
    """A contender's config, an error naming the contender it belongs to."""
    try:
        return load_experiment_config(config_file, list(overrides))
    except ConfigError as error:
        raise ConfigError(f"contender {label!r}: {error}") from None


def _check_same_setting(configs: dict[str, ExperimentConfig]) -> None:
    """Runs compared must see the same text, split the same way, and start from the same seed."""
    (first_label, first), *others = configs.items()
    ours = first.data.model_dump(exclude=set(FEEDING_FIELDS))
    for label, config in others:
        theirs = config.data.model_dump(exclude=set(FEEDING_FIELDS))
        differing = ["seed"] if config.seed != first.seed else []
        differing += [f"data.{name}" for name in ours if ours[name] != theirs[name]]
        if differing:
            raise ConfigError(
                f"runs {first_label!r} and {label!r} differ in {', '.join(map(repr, differing))}; a comparison trains "
                "every run on the same data and seed (set them with --set FIELD=VALUE for all runs); only how the "
                f"data is fed may differ ({', '.join('data.' + name for name in FEEDING_FIELDS)})"
            )
