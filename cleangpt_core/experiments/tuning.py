"""Per-contender tuning on Optuna: one study per contender, its trials shared out among any number of workers.

Each contender gets two Optuna studies in one storage: ``<id>:<label>:tune`` holds its trials (each a setting of
the ``--tune`` keys, trained as ordinary run directories under ``tuning/<label>/<slot>/seed-<s>`` on the tuning
seeds, scored by the mean of their final validation losses), and ``<id>:<label>:final`` its final runs (the best
setting, trained once per ``--seeds`` seed into ``runs/``, as an untuned comparison's). On a ladder every rung has
its final study but only its smallest rungs (``--tune-rungs``; two by default where the budget allows) a study of
trials: each tuned rung trains its own best setting, the larger rungs the largest tuned rung's (tune small, then
transfer: `cleangpt_core.experiments.ladder`), and each tuned rung above the smallest also trains the best
setting of the rung below (slot ``transfer``), so the report can say whether the optimum moved between them.
``<id>`` is a fingerprint of what the comparison trains, so the same command started on another machine finds the
same studies, and another comparison in the same database never does.

Work is handed out through the storage, never by a home-made queue: every unit of work is a trial *enqueued*
with a ``slot`` (``trial-007``, ``seed-1337``), and a worker claims one by moving it from WAITING to RUNNING,
which the storage grants to exactly one of the workers trying (Optuna's own compare-and-set, the one
``study.ask`` uses). Every setting that can be fixed before training is enqueued fixed: the grid's points,
TPE's start-up points (`TuningSpec.startup_points`), the extensions and the transfer check. The rest of TPE's
trials are enqueued empty and filled when claimed, by a sampler seeded per slot with the constant liar (running
trials are not proposed again), so two workers asking at once never draw the same setting from the same seed.
A claimed trial sends Optuna heartbeats; a worker killed mid-trial stops them, and the next worker to look
fails the trial as stale and re-enqueues it with the same parameters and slot
(``RetryHeartbeatStaleTrialCallback``). The retry trains into the slot's run directories, so it continues from
the killed worker's last checkpoint where the folder is shared (or starts the run over where it is not); the
failed original never counts, since a slot's result is its one COMPLETE trial. A worker that was only stalled
(its heartbeats late, not dead) still holds its run directories' locks: the retry waits for them and then keeps
the result the stalled worker saved, and the stalled worker, finding its trial taken over, stands down quietly.
Should two workers enqueue the same slot at once (both found it missing), the one claimed second sees the first
and stands down.

With ``--tune-extend N``, a study whose best setting lies on the end of what it tried (the lowest or highest
value of a key) goes on past that end, one step of its grid at a time, for at most N rounds: each round is
enqueued once every earlier trial has finished, from their results alone, so every worker adds the same one.

A trial whose training diverges (`TrainingDivergedError`) is a FAIL with its reason in the study, not a crash.

Where the studies are stored, and the heartbeat: `cleangpt_core.experiments.tuning_storage`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleangpt_core.errors import ConfigError, RunLockedError, TrainingDivergedError
from cleangpt_core.experiments.execution import Echo, read_result, run_is_finished, train_run
from cleangpt_core.experiments.ladder import rung_label
from cleangpt_core.experiments.plan import SHARED_KEYS, ComparisonPlan, PlannedRun
from cleangpt_core.experiments.tuning_spec import TunedKey
from cleangpt_core.experiments.tuning_storage import Heartbeat, open_storage

if TYPE_CHECKING:
    import optuna

TUNING_DIR = "tuning"
TUNING_PNG = "tuning.png"
BASIN = 0.01  # a setting is in the basin when its loss is within this of the best (nats per token)
TRANSFER_SLOT = "transfer"  # a tuned rung's trial at the best setting of the rung below


def yaml_number(value: float | int) -> str:
    """A number as an override whose YAML reads back the same float (``1e-05`` is a string to YAML 1.1)."""
    text = repr(value)
    if isinstance(value, float) and "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def setting_overrides(params: dict[str, float | int]) -> list[str]:
    """A trial's setting as ``--set`` overrides."""
    return [f"{key}={yaml_number(value)}" for key, value in params.items()]


def tuning_seeds(plan: ComparisonPlan, label: str) -> list[int]:
    """The seeds a contender's trials train on: the ones after its final runs' seeds, so those stay fresh."""
    assert plan.tuning is not None
    seeds = [run.seed for run in plan.runs if run.label == label]
    return list(range(max(seeds) + 1, max(seeds) + 1 + plan.tuning.tune_seeds))


def trial_runs(plan: ComparisonPlan, out_dir: Path, label: str, slot: str, params: dict[str, Any]) -> list[PlannedRun]:
    """A trial's runs: the contender's first final run at the trial's setting, on each tuning seed."""
    first = next(run for run in plan.runs if run.label == label)
    runs = []
    for seed in tuning_seeds(plan, label):
        directory = f"{label}/{slot}/seed-{seed}"
        overrides = (
            *first.overrides,  # later overrides win: the seed, the folder and the setting replace the final run's
            f"seed={seed}",
            f"output.dir={out_dir.resolve() / TUNING_DIR / directory}",
            *setting_overrides(params),
        )
        runs.append(PlannedRun(label, first.config_file, overrides, seed, directory))
    return runs


def final_run(run: PlannedRun, params: dict[str, Any]) -> PlannedRun:
    """A final run at the contender's best setting."""
    return replace(run, overrides=(*run.overrides, *setting_overrides(params)))


def check_tuning(plan: ComparisonPlan) -> None:
    """Every contender's config at both ends of every range validates, and optuna is there: before any training."""
    assert plan.tuning is not None
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("--tune needs Optuna: pip install 'optuna>=4.9'") from None
    if plan.tuning.storage is not None:  # a database the user named: reachable before the folder is written
        open_storage(plan.tuning, Path("."))
    for key in plan.tuning.keys:
        if key.key.startswith(SHARED_KEYS):
            raise ConfigError(
                f"--tune {key.text}: {key.key!r} is shared by every run of a comparison (data, seed, budget, "
                "output); tune a model, optimizer, schedule or trainer setting"
            )
    for label in plan.labels:
        for end in ("low", "high"):
            params = {key.key: _typed(key, getattr(key, end)) for key in plan.tuning.keys}
            for run in trial_runs(plan, Path("."), label, "check", params):
                try:
                    run.load()
                except ConfigError as error:
                    ranges = " ".join(key.text for key in plan.tuning.keys)
                    raise ConfigError(f"--tune {ranges}: contender {label!r} at the {end} end: {error}") from None


def _typed(key: TunedKey, value: float) -> float | int:
    return round(value) if key.integer else value


class Tuner:
    """One worker's share of a tuned comparison: claims trials and final runs until none is left."""

    def __init__(
        self,
        plan: ComparisonPlan,
        out_dir: Path,
        *,
        echo: Echo = print,
        callbacks: Sequence[object] = (),
    ) -> None:
        import optuna

        assert plan.tuning is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.plan, self.spec, self.out_dir, self.echo, self.callbacks = plan, plan.tuning, out_dir, echo, callbacks
        self.poll_s = min(5.0, self.spec.heartbeat_s / 2)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(self.spec, out_dir)
        prefix = plan.fingerprint()
        self.first_seed = plan.runs[0].seed
        self.studies: dict[tuple[str, str], optuna.Study] = {}
        for label in plan.labels:
            for kind in ("tune", "final") if label in self.tuned_labels else ("final",):
                self.studies[label, kind] = optuna.create_study(
                    study_name=f"{prefix}:{label}:{kind}",
                    storage=self.storage,
                    sampler=optuna.samplers.RandomSampler(seed=self.first_seed),  # replaced per trial: `_sampler`
                    direction="minimize",
                    load_if_exists=True,
                )

    @property
    def tune_rungs(self) -> int:
        """On a ladder, at how many of each contender's smallest rungs it is tuned (1 for a plan from before the
        transfer check)."""
        assert self.plan.ladder is not None
        return min(self.spec.rungs or 1, self.plan.ladder.rungs)

    def tuned_at(self, label: str) -> str:
        """The label whose study tunes `label`'s runs: itself, or on a ladder the largest tuned rung at or below
        it (tune at the smallest rungs, then transfer the largest's best setting to the rungs above)."""
        if self.plan.ladder is None:
            return label
        contender, rung = self.plan.ladder.position(label)
        return rung_label(contender, min(rung, self.tune_rungs - 1))

    def checked_against(self, label: str) -> str | None:
        """The tuned rung below a tuned rung `label`, whose best setting `label` also trains (None for the
        smallest rung, and outside a ladder)."""
        if self.plan.ladder is None:
            return None
        contender, rung = self.plan.ladder.position(label)
        return rung_label(contender, rung - 1) if 0 < rung < self.tune_rungs else None

    @property
    def tuned_labels(self) -> list[str]:
        """The labels that have a study of trials, in plan order."""
        return [label for label in self.plan.labels if self.tuned_at(label) == label]

    # -- the work ---------------------------------------------------------------------------------------------

    def base_slots(self) -> dict[str, dict[str, Any]]:
        """The trials every study starts with, by slot: the grid's points, or TPE's fixed start-up points and
        then empty ones (sampled when claimed)."""
        if self.spec.sampler == "grid":
            return {f"trial-{i:03d}": params for i, params in enumerate(self.spec.grid())}
        startup = self.spec.startup_points(self.first_seed)
        return {f"trial-{i:03d}": startup[i] if i < len(startup) else {} for i in range(self.spec.trials)}

    def tune_slots(self, label: str) -> dict[str, dict[str, Any]]:
        """Every trial's slot in `label`'s study and its fixed setting (empty where TPE samples it when claimed)."""
        return self._slot_plan(label)[0]

    def edge_report(self, label: str) -> tuple[dict[str, dict[str, Any]], int]:
        """Per key where `label`'s best setting lies on an end of what was tried: the side, and why the study
        cannot go past it (None where only ``--tune-extend`` rounds ran out, or none was asked for); and how many
        extension rounds the study ran."""
        slots, rounds = self._slot_plan(label)
        trials = self.trials(label)
        _, blocked = self._extension(label, slots)
        return {
            key: {"side": side_name(directions), "blocked": blocked.get(key)}
            for key, directions in edges(trials, self.spec.keys).items()
        }, rounds

    def _slot_plan(self, label: str) -> tuple[dict[str, dict[str, Any]], int]:
        """The study's slots as far as its results decide them, and how many extension rounds they hold.

        Each part is added only once everything before it has finished, from finished results alone, so every
        worker computes the same slots: the transfer check once the rung below is done, each extension round
        once every earlier trial of the study is.
        """
        slots = self.base_slots()
        below = self.checked_against(label)
        if below is not None:
            if not self._slots_done(self.studies[below, "tune"], self.tune_slots(below)):
                return slots, 0
            best = best_trial(self.trials(below))
            if best is not None and not any(same_setting(best["params"], fixed) for fixed in slots.values()):
                slots[TRANSFER_SLOT] = best["params"]
        rounds = 0
        study = self.studies[label, "tune"]
        while rounds < self.spec.extend and self._slots_done(study, slots):
            added, _ = self._extension(label, slots)
            if not added:
                break
            slots.update(added)
            rounds += 1
        return slots, rounds

    def _extension(
        self, label: str, slots: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """The settings one step past each end of a key where the best trial lies (for the grid, a new slice
        of it), by slot, and why an end cannot be passed (the range would cross zero, or the config refuses).
        It reads the trials of `slots` only: each round follows from the rounds before it alone."""
        trials = [t for t in self.trials(label) if t["slot"] in slots]
        best = best_trial(trials)
        on_edges = edges(trials, self.spec.keys)
        if best is None or not on_edges:
            return {}, {}
        beyond: dict[str, list[float | int]] = {}
        blocked: dict[str, str] = {}
        for key in self.spec.keys:
            for direction in on_edges.get(key.key, []):
                value = key.step_beyond(best["params"][key.key], direction, self.spec.points)
                side = "below" if direction < 0 else "above"
                if value is None:
                    blocked[key.key] = f"the range {key.text} does not go on {side} {_shown(best['params'][key.key])}"
                elif (problem := self._invalid(label, {**best["params"], key.key: value})) is not None:
                    blocked[key.key] = f"{key.key}={_shown(value)} is refused: {problem}"
                else:
                    beyond.setdefault(key.key, []).append(value)
        if self.spec.sampler == "grid":
            grid = [params for slot, params in slots.items() if slot != TRANSFER_SLOT]
            axes = [sorted({*(params[key.key] for params in grid), *beyond.get(key.key, [])}) for key in self.spec.keys]
            names = [key.key for key in self.spec.keys]
            settings = [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]
        else:
            settings = [{**best["params"], key: value} for key, values in beyond.items() for value in values]
        fixed = [params for params in slots.values() if params]
        settings = [setting for setting in settings if not any(same_setting(setting, done) for done in fixed)]
        settings = [setting for setting in settings if self._invalid(label, setting) is None]
        first = sum(slot.startswith("trial-") for slot in slots)
        return {f"trial-{first + i:03d}": setting for i, setting in enumerate(settings)}, blocked

    def _invalid(self, label: str, params: dict[str, Any]) -> str | None:
        """Why the contender's config refuses a setting (None when it takes it)."""
        try:
            trial_runs(self.plan, self.out_dir, label, "check", params)[0].load()
        except ConfigError as error:
            return str(error)
        return None

    def final_slots(self, label: str) -> dict[str, dict[str, Any]]:
        return {f"seed-{run.seed}": {} for run in self.plan.runs if run.label == label}

    def work(self, poll_s: float | None = None) -> None:
        """Train what is left, claiming one trial or final run at a time, until every one has finished."""
        import optuna

        self.poll_s = poll_s if poll_s is not None else self.poll_s
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                for study in self.studies.values():
                    optuna.storages.fail_stale_trials(study)  # a killed worker's trials go back to WAITING
            if self._claim_and_train():
                continue
            if self.finished():
                return
            time.sleep(self.poll_s)  # what is left is running elsewhere (or a stale trial's grace is not over yet)

    def _claim_and_train(self) -> bool:
        for label in self.tuned_labels:
            study = self.studies[label, "tune"]
            slots = self.tune_slots(label)
            self._enqueue_missing(study, slots)
            if (trial := self._claim(study)) is not None:
                self._train_trial(label, study, trial, slots[trial.user_attrs["slot"]])
                return True
        for label in self.plan.labels:
            tuned_at = self.tuned_at(label)
            if not self._slots_done(self.studies[tuned_at, "tune"], self.tune_slots(tuned_at)):
                continue
            best = self.best(tuned_at)
            if best is None:  # every trial failed: nothing to train the final runs at
                continue
            study = self.studies[label, "final"]
            self._enqueue_missing(study, self.final_slots(label))
            if (trial := self._claim(study)) is not None:
                self._train_final(label, study, trial, best["params"])
                return True
        return False

    def finished(self) -> bool:
        """Whether every contender's trials, and the final runs of those with a best setting, have finished."""
        for label in self.plan.labels:
            tuned_at = self.tuned_at(label)
            if not self._slots_done(self.studies[tuned_at, "tune"], self.tune_slots(tuned_at)):
                return False
            if self.best(tuned_at) is not None and not self._slots_done(
                self.studies[label, "final"], self.final_slots(label)
            ):
                return False
        return True

    # -- slots: enqueue once, claim once, finish once ----------------------------------------------------------

    @staticmethod
    def _counted(trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a trial is its slot's result, or is working toward one (a stood-down duplicate or a killed
        worker's stale trial is neither)."""
        from optuna.trial import TrialState

        if trial.state in (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE):
            return True
        return trial.state == TrialState.FAIL and "failure" in trial.user_attrs

    def _enqueue_missing(self, study: optuna.Study, slots: dict[str, dict[str, Any]]) -> None:
        covered = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False) if self._counted(t)}
        for slot, params in slots.items():
            if slot not in covered:
                study.enqueue_trial(params, user_attrs={"slot": slot})

    def _slots_done(self, study: optuna.Study, slots: dict[str, dict[str, Any]]) -> bool:
        from optuna.trial import TrialState

        done = {
            t.user_attrs.get("slot")
            for t in study.get_trials(deepcopy=False)
            if self._counted(t) and t.state in (TrialState.COMPLETE, TrialState.FAIL)
        }
        return set(slots) <= done

    def _claim(self, study: optuna.Study) -> optuna.Trial | None:
        """A WAITING trial moved to RUNNING by this worker (the storage grants each to one), heartbeat started.

        A slot has one owner: its finished trial if it has one, else its lowest-numbered waiting or running
        trial; a claimed trial that is not its slot's owner (a slot enqueued twice) stands down untrained.
        """
        import optuna
        from optuna.trial import TrialState

        study_id = self.storage.get_study_id_from_name(study.study_name)
        for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
            try:
                if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    continue  # another worker took it first
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # ... and has finished it already (a duplicate it stood down)
            slot = waiting.user_attrs["slot"]
            study.sampler = self._sampler(slot)  # before the trial exists: it samples through the study's sampler
            trial = optuna.Trial(study, trial_id)
            self._heartbeat = Heartbeat(self.storage, trial_id, self.spec.heartbeat_s)
            twins = [
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("slot") == slot and t.number != waiting.number and self._counted(t)
            ]
            done = (TrialState.COMPLETE, TrialState.FAIL)
            if any(t.state in done or t.number < waiting.number for t in twins):
                self._finish(study, trial, duplicate=True)
                continue
            return trial
        return None

    def _sampler(self, slot: str) -> optuna.samplers.BaseSampler:
        """The sampler of one slot's trial, seeded by the comparison's first seed and the slot: the same slot draws
        the same way in every worker and every run of the command, and two slots never from the same seed."""
        import optuna

        seed = int.from_bytes(hashlib.sha256(f"{self.first_seed}:{slot}".encode()).digest()[:4], "big")
        if self.spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=self.spec.startup)
        return optuna.samplers.RandomSampler(seed=seed)

    def _give_back(self, study: optuna.Study, trial: optuna.Trial) -> None:
        """An interrupted trial: failed without a result, and enqueued again with its setting and slot, so the
        next worker continues its runs from their checkpoints at once rather than after the heartbeat's grace."""
        import optuna

        if self._finish(study, trial):
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)

    def _finish(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        value: float | None = None,
        *,
        failure: str | None = None,
        duplicate: bool = False,
        attrs: dict[str, Any] | None = None,
    ) -> bool:
        """Record a claimed trial's end; False, and nothing recorded, where another worker has taken it over
        meanwhile (this worker's heartbeats were late: it stands down, and the retry keeps what it saved)."""
        import optuna
        from optuna.trial import TrialState

        self._heartbeat.stop()
        try:
            for key, attr in {**(attrs or {}), **({"duplicate": True} if duplicate else {})}.items():
                trial.set_user_attr(key, attr)
            if failure is not None:
                trial.set_user_attr("failure", failure)
            if value is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as error:
            # an attribute set on a finished trial raises the first; telling one ("Cannot tell a FAIL trial") the second
            now = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            if isinstance(error, ValueError) and now.state == TrialState.RUNNING:
                raise
            label = study.study_name.split(":")[1]
            self.echo(
                f"[{label} {now.user_attrs.get('slot')}] another worker took this trial over while this one sent no "
                "heartbeat (stalled or paused); standing down: what it saved is kept by that worker"
            )
            return False
        return True

    def _suggest(self, trial: optuna.Trial, fixed: dict[str, Any]) -> dict[str, float | int]:
        """The trial's setting: its fixed one (a grid point, a start-up point, an extension past the range),
        recorded in a range that holds it, or for TPE's other trials the sampler's."""
        params: dict[str, float | int] = {}
        for key in self.spec.keys:
            low, high = key.low, key.high
            if key.key in fixed:
                low, high = min(low, fixed[key.key]), max(high, fixed[key.key])
            if key.integer:
                params[key.key] = trial.suggest_int(key.key, round(low), round(high), log=key.log)
            else:
                params[key.key] = trial.suggest_float(key.key, low, high, log=key.log)
        return params

    def _train(self, run: PlannedRun, position: str) -> dict[str, Any]:
        """Train a run to its budget, or keep the result it has, under its run directory's lock (held until the
        result is saved). A directory another process holds (a stalled worker whose trial this one took over)
        is waited for, then its result kept or its run continued."""
        from cleangpt_core.checkpoints.run_dir import RunDirectory

        run_dir = Path(run.load().output.dir)
        said = False
        while True:
            try:
                with RunDirectory(run_dir).lock():
                    if run_is_finished(run_dir):  # a retried trial keeps the seeds its earlier worker finished
                        return read_result(run_dir)
                    return train_run(run, position, echo=self.echo, callbacks=self.callbacks)
            except RunLockedError as error:
                if not said:  # "run directory ... is in use by process ...", without the advice to a user
                    self.echo(f"{position} waiting: {str(error).partition(';')[0]}; its result is kept once it is done")
                    said = True
                time.sleep(self.poll_s)

    def _train_trial(self, label: str, study: optuna.Study, trial: optuna.Trial, fixed: dict[str, Any]) -> None:
        slot = trial.user_attrs["slot"]
        params = self._suggest(trial, fixed)
        shown = ", ".join(f"{key}={value:.4g}" for key, value in params.items())
        self.echo(f"[{label} {slot}] tuning {shown}")
        try:
            results = [
                self._train(run, f"[{label} {slot}]")
                for run in trial_runs(self.plan, self.out_dir, label, slot, params)
            ]
        except TrainingDivergedError as error:
            self.echo(f"[{label} {slot}] failed: {error}")
            self._finish(study, trial, failure=str(error))
            return
        except BaseException:
            self._give_back(study, trial)  # interrupted (Ctrl-C): continued by the next worker, or on resume
            raise
        losses = [r["val_loss"] for r in results]
        if any(loss is None or not math.isfinite(loss) for loss in losses):
            self._finish(study, trial, failure="a run ended without a finite validation loss")
            return
        self._finish(study, trial, math.fsum(losses) / len(losses), attrs={"results": results})

    def _train_final(self, label: str, study: optuna.Study, trial: optuna.Trial, params: dict[str, Any]) -> None:
        slot = trial.user_attrs["slot"]
        run = next(run for run in self.plan.runs if run.label == label and f"seed-{run.seed}" == slot)
        try:
            result = self._train(final_run(run, params), f"[{label} final {slot}]")
        except TrainingDivergedError as error:
            self._finish(study, trial, failure=str(error))
            return
        except BaseException:
            self._give_back(study, trial)
            raise
        loss = result.get("val_loss")
        finite = loss is not None and math.isfinite(loss)
        self._finish(
            study,
            trial,
            loss if finite else None,
            failure=None if finite else "no finite validation loss",
            attrs={"result": result},
        )

    # -- what the studies say ------------------------------------------------------------------------------------

    def trials(self, label: str) -> list[dict[str, Any]]:
        """Each tuning slot's outcome: its setting, its loss (None when it failed) and why it failed."""
        from optuna.trial import TrialState

        outcome: dict[str, dict[str, Any]] = {}
        for trial in self.studies[label, "tune"].get_trials(deepcopy=False):
            if self._counted(trial) and trial.state in (TrialState.COMPLETE, TrialState.FAIL):
                outcome[trial.user_attrs["slot"]] = {
                    "slot": trial.user_attrs["slot"],
                    "number": trial.number,
                    "params": dict(trial.params),
                    "loss": trial.value if trial.state == TrialState.COMPLETE else None,
                    "failure": trial.user_attrs.get("failure"),
                    "runs": [
                        {"seed": r["seed"], "val_loss": r["val_loss"]} for r in trial.user_attrs.get("results", [])
                    ],
                }
        return [outcome[slot] for slot in sorted(outcome)]

    def best(self, label: str) -> dict[str, Any] | None:
        """The trial with the lowest loss (the first slot among equals); None when none completed."""
        return best_trial(self.trials(label))

    def results(self) -> list[dict[str, Any]]:
        """The final runs' results, in plan order (a contender whose trials all failed has none)."""
        from optuna.trial import TrialState

        found: dict[tuple[str, str], dict[str, Any]] = {}
        for label in self.plan.labels:
            for trial in self.studies[label, "final"].get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                found[label, trial.user_attrs["slot"]] = trial.user_attrs["result"]
        return [found[key] for run in self.plan.runs if (key := (run.label, f"seed-{run.seed}")) in found]

    def summary(self) -> dict[str, Any]:
        """The tuning as report.json records it: per contender its trials, best setting, basin, where the best
        lies on the ends of what was tried, and on a ladder whether the best moved between the tuned rungs."""
        contenders = {}
        for label in self.tuned_labels:
            trials = self.trials(label)
            on_edges, rounds = self.edge_report(label)
            contenders[label] = {
                "best": best_trial(trials),
                "basin": basin(trials, self.spec.keys),
                "edges": on_edges,
                "extended": rounds,
                "trials": trials,
            }
        summary: dict[str, Any] = {
            "sampler": self.spec.sampler,
            "trials": self.spec.trials,
            "extend": self.spec.extend,
            "keys": [vars(key) for key in self.spec.keys],
            "tune_seeds": {label: tuning_seeds(self.plan, label) for label in self.tuned_labels},
            "contenders": contenders,
        }
        if self.plan.ladder is not None:
            summary["transfer"] = self.transfer()
        return summary

    def transfer(self) -> dict[str, Any]:
        """Per ladder contender: the rungs tuned, the rungs that trained the largest tuned rung's best setting, and
        for each tuned rung above the smallest whether its optimum moved from the rung below (`transfer_check`)."""
        ladder = self.plan.ladder
        assert ladder is not None
        found = {}
        for contender in ladder.contenders:
            labels = ladder.labels(contender)
            tuned = labels[: self.tune_rungs]
            found[contender] = {
                "tuned": tuned,
                "transferred": labels[self.tune_rungs :],
                "checks": [
                    transfer_check(below, self.trials(below), label, self.trials(label))
                    for below, label in itertools.pairwise(tuned)
                ],
            }
        return found


def same_setting(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two settings are the same point (floats equal to rounding error: a setting read back from storage)."""
    return one.keys() == other.keys() and all(math.isclose(one[k], other[k], rel_tol=1e-9) for k in one)


def best_trial(trials: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The trial with the lowest loss (the first slot among equals); None when none completed."""
    completed = [t for t in trials if t["loss"] is not None]
    return min(completed, key=lambda t: (t["loss"], t["slot"])) if completed else None


def edges(trials: Sequence[dict[str, Any]], keys: Sequence[TunedKey]) -> dict[str, list[int]]:
    """Per key where the best trial's setting is the lowest (-1) or highest (+1) of the settings tried, the
    directions in which nothing was measured past it: there the optimum may lie beyond what was tried. A failed
    trial (diverged) counts as tried: it bounds the optimum from its side."""
    best = best_trial(trials)
    if best is None:
        return {}
    found = {}
    for key in keys:
        values = [t["params"][key.key] for t in trials if key.key in t["params"]]
        value = best["params"][key.key]
        directions = [direction for direction, end in ((-1, min(values)), (1, max(values))) if value == end]
        if directions:
            found[key.key] = directions
    return found


def side_name(directions: Sequence[int]) -> str:
    """``low``, ``high`` or ``only`` (the one setting tried) for `edges`' directions."""
    return "only" if len(directions) == 2 else "low" if directions[0] < 0 else "high"


def transfer_check(
    below: str, below_trials: Sequence[dict[str, Any]], label: str, trials: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Whether a tuned rung's optimum moved from the rung below's: its best setting, the rung below's, and its own
    loss at the rung below's best setting against its best loss. It moved when that gap exceeds `BASIN` (or the
    rung below's setting failed here); a gap within `BASIN` is the same optimum at this resolution."""
    best_below, best = best_trial(below_trials), best_trial(trials)
    check: dict[str, Any] = {"from": below, "to": label, "moved": None, "gap": None, "loss_at_from_best": None}
    check["from_best"] = best_below["params"] if best_below is not None else None
    check["to_best"] = best["params"] if best is not None else None
    check["to_best_loss"] = best["loss"] if best is not None else None
    if best_below is None or best is None:
        return check
    there = next((t for t in trials if same_setting(t["params"], best_below["params"])), None)
    if there is None:
        return check
    check["loss_at_from_best"] = there["loss"]
    if there["loss"] is None:
        check["moved"] = True  # the rung below's best failed here (diverged)
        return check
    check["gap"] = there["loss"] - best["loss"]
    check["moved"] = check["gap"] > BASIN
    return check


def _shown(value: float | int) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def basin(trials: Sequence[dict[str, Any]], keys: Sequence[TunedKey]) -> dict[str, list[float]] | None:
    """Per key, the lowest and highest setting among the trials within `BASIN` of the best loss."""
    completed = [t for t in trials if t["loss"] is not None]
    if not completed:
        return None
    best = min(t["loss"] for t in completed)
    near = [t for t in completed if t["loss"] <= best + BASIN]
    return {key.key: [min(t["params"][key.key] for t in near), max(t["params"][key.key] for t in near)] for key in keys}
