"""``cleangpt compare --ladder``: the same comparison at several model sizes, each trained to its own token budget.

A ladder is one or more ``--ladder model.KEY=V1,V2,...`` options, zipped: rung *i* sets every key to its *i*-th
value (``--ladder model.n_embd=64,128,192,256 --ladder model.n_head=2,4,6,8`` is four rungs). Every contender
trains at every rung, so the plan's runs are ``<contender>/rung-<i>`` (1 the smallest, in the order written),
each an ordinary run of the comparison (``runs/<contender>/rung-<i>/seed-<s>``), trained, resumed and reported
like any other. A rung's token budget is ``--tokens-per-param R`` times its non-embedding
parameters N, the same N the FLOPs count (`cleangpt_core.experiments.flops`; R = 20 by default: Chinchilla's
compute-optimal ratio, which counted every parameter, so counted over every parameter a small model whose
embeddings and head are a large share of it sees fewer than 20), in whole optimizer steps:
``max_steps = ceil(R·N / tokens_per_step)``; or one ``--max-tokens`` for every rung.

Every rung's config is built and validated when the plan is, so a rung whose width does not divide by its heads
fails before anything trains or any folder is written; so is every rung's N (counted by formula, no model
built), which must grow from rung to rung (two rungs of one size, or a ladder over a setting that leaves the size
alone, such as ``model.dropout``, measure no scaling) and stay within `plan_limits.MAX_PARAMETERS`. A ladder
has at least three rungs: the power law fitted per contender (`cleangpt_core.experiments.scaling_fit`) has three
parameters.

With ``--tune``, each contender is tuned at its smallest rungs, and the rungs above train the largest tuned
rung's best setting: *tune small, then transfer*. Learning rates transfer across widths under muP
(``model.parametrization=mup``); under the standard parametrization the best rate drifts with width, so the
larger rungs would train off their optimum. Whether it transferred is checked per study, not assumed: by default
the two smallest rungs are tuned where that costs at most `CHECK_SHARE` more compute (``--tune-rungs`` sets
it), and the report says whether the optimum moved between them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.plan_limits import MAX_PARAMETERS
from cleangpt_core.experiments.scaling_fit import MIN_RUNGS

if TYPE_CHECKING:
    from cleangpt_core.config.model import ModelConfig

DEFAULT_TOKENS_PER_PARAM = 20.0  # Hoffmann et al. (2022): about 20 tokens per parameter (theirs: all parameters)
RUNG = "rung-"
# A tuned ladder also tunes its second rung (the transfer check) by default where that adds at most this share
# to the compute of everything else it trains (final runs and the smallest rung's trials)
CHECK_SHARE = 0.5


@dataclass(frozen=True)
class LadderSpec:
    """The rungs (`keys` zipped with `values`: one tuple of values per key) and how each rung's budget is set:
    `tokens_per_param` (None: the comparison's ``--max-tokens`` for every rung). `contenders` are the comparison's
    contenders, each of which trains at every rung (filled in when the plan is built)."""

    keys: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]
    tokens_per_param: float | None = DEFAULT_TOKENS_PER_PARAM
    contenders: tuple[str, ...] = ()

    @property
    def rungs(self) -> int:
        return len(self.values[0])

    def overrides(self, rung: int) -> list[str]:
        """Rung `rung`'s (0-based) settings as ``--set`` overrides."""
        return [f"{key}={values[rung]}" for key, values in zip(self.keys, self.values, strict=True)]

    def describe(self, rung: int) -> str:
        """``n_embd=64, n_head=2``: what rung `rung` (0-based) sets."""
        return ", ".join(override.removeprefix("model.") for override in self.overrides(rung))

    def labels(self, contender: str) -> list[str]:
        """The run labels of `contender`, smallest rung first."""
        return [rung_label(contender, rung) for rung in range(self.rungs)]

    def position(self, label: str) -> tuple[str, int]:
        """The contender and the 0-based rung of a run label."""
        contender, _, number = label.rpartition(f"/{RUNG}")
        return contender, int(number) - 1

    def same_rung(self, label: str, other: str) -> bool:
        """Whether two run labels are at the same rung (the pairs whose losses a reader compares)."""
        return self.position(label)[1] == self.position(other)[1]

    def smallest(self, label: str) -> str:
        """The label of the same contender at the smallest rung (where a tuned ladder tunes)."""
        return rung_label(self.position(label)[0], 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "values": [list(values) for values in self.values],
            "tokens_per_param": self.tokens_per_param,
            "contenders": list(self.contenders),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LadderSpec:
        return cls(
            tuple(data["keys"]),
            tuple(tuple(values) for values in data["values"]),
            data["tokens_per_param"],
            tuple(data["contenders"]),
        )


def rung_label(contender: str, rung: int) -> str:
    """A contender's label at a 0-based rung: ``Vanilla/rung-1`` for the smallest."""
    return f"{contender}/{RUNG}{rung + 1}"


def parse_ladder(
    texts: Sequence[str],
    *,
    tokens_per_param: float | None = None,
    max_tokens: int | None = None,
    max_steps: int | None = None,
) -> LadderSpec | None:
    """The ladder of the ``--ladder`` options (None without any), every malformed one a one-line error."""
    if not texts:
        if tokens_per_param is not None:
            raise ConfigError("--tokens-per-param sets a ladder's budgets: give it with --ladder model.KEY=V1,V2,...")
        return None
    if max_steps is not None:
        raise ConfigError("a ladder's rungs train different numbers of steps: give --tokens-per-param or --max-tokens")
    if tokens_per_param is not None and max_tokens is not None:
        raise ConfigError("give --tokens-per-param (a budget per rung) or --max-tokens (one for every rung), not both")
    if tokens_per_param is not None and not (math.isfinite(tokens_per_param) and tokens_per_param > 0):
        raise ConfigError(f"--tokens-per-param must be a positive number, got {tokens_per_param}")
    keys, values = [], []
    for text in texts:
        key, separator, listed = text.partition("=")
        key = key.strip()
        rungs = tuple(value.strip() for value in listed.split(","))
        if not separator or not key or not all(rungs):
            raise ConfigError(f"--ladder {text!r} must look like model.KEY=V1,V2,... (e.g. model.n_embd=64,128,256)")
        if not key.startswith("model.") or key == "model.model_type":
            raise ConfigError(
                f"--ladder {text!r}: {key!r} is not a model field; a ladder varies the model's size (e.g. "
                "model.n_embd, model.n_layer, model.n_head); compare architectures with --model"
            )
        if key in keys:
            raise ConfigError(f"--ladder names {key!r} twice; give each key one list of values")
        keys.append(key)
        values.append(rungs)
    lengths = {len(rungs) for rungs in values}
    if len(lengths) > 1:
        listed = ", ".join(f"{key} {len(rungs)}" for key, rungs in zip(keys, values, strict=True))
        raise ConfigError(f"every --ladder needs one value per rung, but they have different lengths ({listed})")
    if lengths.pop() < MIN_RUNGS:
        raise ConfigError(
            f"a ladder needs at least {MIN_RUNGS} rungs (its power-law fit has three parameters), got "
            f"{len(values[0])}: give --ladder {keys[0]}=V1,V2,V3,..."
        )
    settings = list(zip(*values, strict=True))
    for later, setting in enumerate(settings):
        if setting in settings[:later]:
            same = ", ".join(f"{key.removeprefix('model.')}={value}" for key, value in zip(keys, setting, strict=True))
            raise ConfigError(
                f"--ladder: rungs {settings.index(setting) + 1} and {later + 1} are the same model ({same}); each "
                "rung needs a size of its own"
            )
    budget = None if max_tokens is not None else (tokens_per_param or DEFAULT_TOKENS_PER_PARAM)
    return LadderSpec(tuple(keys), tuple(values), budget)


def expand_contenders(
    ladder: LadderSpec, labels: Sequence[str], specs: Sequence[tuple[str | None, list[str]]]
) -> tuple[LadderSpec, list[str], list[tuple[str | None, list[str]]]]:
    """Every contender at every rung: its labels and config sources (the rung's settings after the contender's
    own overrides), and the ladder with its contenders recorded."""
    rung_labels, rung_specs = [], []
    for label, (config_file, overrides) in zip(labels, specs, strict=True):
        for rung in range(ladder.rungs):
            rung_labels.append(rung_label(label, rung))
            rung_specs.append((config_file, [*overrides, *ladder.overrides(rung)]))
    return replace(ladder, contenders=tuple(labels)), rung_labels, rung_specs


def rung_parameters(ladder: LadderSpec, models: dict[str, ModelConfig]) -> dict[str, int]:
    """N of every contender at every rung (`models` by run label), counted without building a model, each within
    `MAX_PARAMETERS` and growing from rung to rung; every breach one line naming the contender and the rungs."""
    from cleangpt_core.experiments.flops import model_parameters

    counts = {}
    for label, model in models.items():
        rung = ladder.position(label)[1]
        try:
            counts[label] = model_parameters(model)
        except ConfigError as error:
            raise ConfigError(f"contender {label!r} ({ladder.describe(rung)}): {error}") from None
        if counts[label] > MAX_PARAMETERS:
            raise ConfigError(
                f"contender {label!r} ({ladder.describe(rung)}) would have {counts[label]:.3g} non-embedding "
                f"parameters, more than the {MAX_PARAMETERS:.0e} a ladder's rung may have; choose smaller rungs"
            )
    for contender in ladder.contenders:
        labels = ladder.labels(contender)
        for rung in range(1, ladder.rungs):
            below, here = counts[labels[rung - 1]], counts[labels[rung]]
            rungs = f"rungs {rung} ({ladder.describe(rung - 1)}) and {rung + 1} ({ladder.describe(rung)})"
            if here == below:
                raise ConfigError(
                    f"--ladder: {rungs} give {contender} the same size (N = {here:,} non-embedding parameters); a "
                    "ladder varies the model's size: compare settings that keep it with --variant"
                )
            if here < below:
                raise ConfigError(
                    f"--ladder: {rungs} shrink {contender} (N = {below:,}, then {here:,}); list the rungs from the "
                    "smallest model up (a tuned ladder tunes at the smallest)"
                )
    return counts


def rung_tokens(ladder: LadderSpec, parameters: int) -> int | None:
    """A rung's token budget with ``--tokens-per-param``: R·N (None when ``--max-tokens`` sets every rung's)."""
    if ladder.tokens_per_param is None:
        return None
    return math.ceil(ladder.tokens_per_param * parameters)


def default_tune_rungs(ladder: LadderSpec, flops: dict[str, float], seeds: int, runs_per_study: int) -> int:
    """At how many smallest rungs a tuned ladder is tuned unless told (``--tune-rungs``): two, so that the report
    can say whether the best setting moved between them, where tuning the second costs at most `CHECK_SHARE` of
    the compute of the rest (every rung's `seeds` final runs and the smallest rung's trials, `runs_per_study`
    trainings each); else one. `flops` is each run label's training compute."""
    rest = check = 0.0
    for contender in ladder.contenders:
        labels = ladder.labels(contender)
        rest += seeds * sum(flops[label] for label in labels) + runs_per_study * flops[labels[0]]
        check += runs_per_study * flops[labels[1]]
    return 2 if check <= CHECK_SHARE * rest else 1


def check_mup_head_widths(ladder: LadderSpec, models: dict[str, ModelConfig]) -> None:
    """Refuse a muP ladder whose rungs would scale attention from different base head widths, in one line.

    muP's attention scale is sqrt(d0)/d_head with one base head width d0 for every width. Its default,
    mup_base_width / n_head, divides by each rung's own head count, so a ladder that grows n_head would give every
    rung another d0 (and shrink the scores of the wider rungs) unless mup_base_head_dim states it.
    """
    from cleangpt_core.model.parametrization import base_head_dim

    for contender in ladder.contenders:
        labels = [rung_label(contender, rung) for rung in range(ladder.rungs)]
        bases = {base_head_dim(models[label]) for label in labels if label in models}
        if len(bases - {None}) > 1:
            raise ConfigError(
                f"contender {contender!r}: under muP the rungs' head counts differ, so the default base head width "
                f"(mup_base_width / n_head) differs too ({', '.join(map(str, sorted(bases - {None})))}); set "
                "model.mup_base_head_dim to the head width of the model the learning rate was tuned at"
            )
