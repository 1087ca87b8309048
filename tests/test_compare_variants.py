"""`cleangpt compare` contenders as a base plus overrides: --variant and a comparison file's `contenders:`.

Plans only (nothing trains, but for one slow test of the report's budget): each variant is the base config with
its keys, labelled by its name, and every bad key, value or name is one line before anything is written; a
contender's own keys may not set what the runs share or what the plan sets (its folder, seed, step budget).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.config.experiment import ExperimentConfig
from cleangpt_core.config.model import model_description
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.comparison_file import comparison_options
from cleangpt_core.experiments.plan import RUNS_DIR
from cleangpt_core.experiments.planning import build_plan, parse_variant
from cleangpt_core.experiments.report import contender_table
from cleangpt_core.experiments.summary import summarize_contender

TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16", "schedule.warmup_steps=1"]


def test_a_variant_is_its_name_and_its_overrides():
    assert parse_variant("wide=model.n_embd=64;model.n_head=4") == ("wide", ("model.n_embd=64", "model.n_head=4"))
    assert parse_variant("lr=optimizer.lr=1e-3") == ("lr", ("optimizer.lr=1e-3",))


def test_variants_build_on_the_one_config_and_are_labelled_by_their_names(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n", encoding="utf-8")
    plan = build_plan(
        tmp_path / "out",
        config_files=[base],
        overrides=["schedule.warmup_steps=1"],
        variants=["wide=model.n_embd=32;model.n_head=4", "deep=model.n_layer=2"],
        max_steps=4,
    )
    assert plan.labels == ["base", "wide", "deep"]
    configs = {run.label: run.load() for run in plan.runs}
    assert (configs["base"].model.n_embd, configs["wide"].model.n_embd, configs["deep"].model.n_embd) == (16, 32, 16)
    assert configs["wide"].model.n_head == 4 and configs["base"].model.n_head == 2
    assert (configs["base"].model.n_layer, configs["deep"].model.n_layer) == (1, 2)
    assert configs["wide"].output.dir == (tmp_path / "out").resolve() / RUNS_DIR / "wide"


def test_variants_alone_build_on_the_default_recipe(tmp_path):
    plan = build_plan(tmp_path, overrides=TINY, variants=["a=optimizer.lr=1e-3", "b=optimizer.lr=3e-3"], max_steps=4)
    assert plan.labels == ["a", "b"]
    assert [run.load().optimizer.options["lr"] for run in plan.runs] == [1e-3, 3e-3]


def test_a_variant_beside_models_keeps_its_own_name(tmp_path):
    plan = build_plan(
        tmp_path, models=["Vanilla", "Llama"], overrides=TINY, variants=["deep=model.n_layer=2"], max_steps=4
    )
    assert plan.labels == ["Vanilla", "Llama", "deep"]
    assert plan.runs[2].load().model.n_layer == 2


def test_comparison_file_contenders_each_name_their_base_and_overrides(tmp_path):
    (tmp_path / "small.yaml").write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n")
    path = tmp_path / "comparison.yaml"
    path.write_text(
        "set: [schedule.warmup_steps=1, model.block_size=16]\nmax_steps: 4\n"
        "contenders:\n"
        "  - {name: small, config: small.yaml}\n"
        "  - {name: small-llama, config: small.yaml, model: llama, set: [model.n_kv_head=1]}\n"
        "  - {model: Vanilla, set: [model.n_layer=1, model.n_head=2, model.n_embd=16]}\n",
        encoding="utf-8",
    )
    plan = build_plan(tmp_path / "out", **comparison_options(path, {}))
    assert plan.labels == ["small", "small-llama", "Vanilla"]
    small, llama, vanilla = (run.load() for run in plan.runs)
    assert (small.model.model_type, llama.model.model_type, vanilla.model.model_type) == ("Vanilla", "Llama", "Vanilla")
    assert llama.model.n_embd == 16 and llama.model.n_kv_head == 1
    assert plan.runs[1].config_file == str((tmp_path / "small.yaml").resolve())


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        (["wide"], "--variant 'wide' must look like NAME=KEY=VALUE"),
        (["wide=model.n_embd"], "'model.n_embd' must look like KEY=VALUE"),
        (["a b=model.n_layer=2"], "the name 'a b' must start with a letter or digit"),
        (["x=model.n_layr=2"], "contender 'x': invalid experiment config"),
        (["x=model.n_head=3"], "contender 'x': invalid experiment config"),
        (["a=model.n_layer=2", "a=model.n_layer=3"], "two contenders are named 'a'"),
        (["Vanilla=model.n_layer=2"], "two contenders are named 'Vanilla'"),
        # issue 35: a contender's own output.dir was a silent no-op (the plan sets every run's folder)
        (["a=output.dir=/tmp/elsewhere"], "contender 'a': 'output.dir=/tmp/elsewhere' sets 'output.dir', which every"),
        (["a=seed=5"], "contender 'a': 'seed=5' sets 'seed', which every run of a comparison shares"),
        (["a=trainer.max_steps=9"], "contender 'a': 'trainer.max_steps=9' sets 'trainer.max_steps'"),
        (["a=data.val_fraction=0.2"], "contender 'a': 'data.val_fraction=0.2' sets 'data.val_fraction'"),
    ],
)
def test_a_bad_variant_is_one_line_and_nothing_is_written(variants, message, tmp_path):
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--max-steps", "2", "--out", str(out)]
    for option in TINY:
        arguments += ["--set", option]
    for variant in variants:
        arguments += ["--variant", variant]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: ") and message in line
    assert not out.exists()


def test_a_contender_may_feed_its_data_its_own_way_but_not_choose_its_folder(tmp_path):
    variants = ["a=data.batch_size=2", "b=data.batch_size=4"]
    plan = build_plan(tmp_path, overrides=TINY, variants=variants, max_tokens=256)
    assert plan.max_steps == {"a": 8, "b": 4}  # the same tokens, in whole steps of each batch
    with pytest.raises(ConfigError, match=r"^--set output.dir: a comparison's runs are folders of its --out; give"):
        build_plan(tmp_path, overrides=[*TINY, "output.dir=/tmp/x"], variants=["a=optimizer.lr=1e-3"], max_steps=2)


def test_an_ablation_lever_may_not_set_its_folder(tmp_path):
    config = tmp_path / "base.yaml"
    config.write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["ablate", str(config), "--lever", "a=output.dir=/tmp/x", "--out", str(out)])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: contender 'a': 'output.dir=/tmp/x' sets 'output.dir', which every run of a comparison shares or the "
        "comparison sets itself (data, seed, device, output folder, step budget); set it for all runs with --set, "
        "--out, --seed or --max-steps"
    ]
    assert not out.exists()


@pytest.mark.slow
def test_the_report_states_what_was_trained_when_the_data_ends_a_run_before_its_budget(tmp_path):
    """Issue 35: the report stated 5.1e17 "tokens per run" where trainer.num_epochs stopped every run far earlier."""
    from cleangpt_core.utils import tinyshakespeare_text

    corpus = tmp_path / "small.txt"
    corpus.write_text(tinyshakespeare_text()[:3000], encoding="utf-8")
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-tokens", "510000000000000000"]
    for option in [*TINY, f"data.dataset={corpus}", "data.batch_size=4", "trainer.num_epochs=1"]:
        arguments += ["--set", option]
    arguments += ["--set", "trainer.progress_bar=false", "--set", "output.sample_tokens=0", "--out", str(out)]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert "comparing Vanilla on up to 510,000,000,000,000,000 tokens per run" in result.output
    report = json.loads((out / "report.json").read_text())
    trained = {run["tokens"] for run in report["runs"]}
    [tokens] = trained
    assert tokens < 10**6  # one pass over 3,000 characters of text, not 5.1e17
    stated = (
        "510,000,000,000,000,000 tokens asked, but 2 of 2 runs stopped before it, ended by trainer.num_epochs passes "
        f"over the data or by early stopping: the runs trained {tokens:,} tokens"
    )
    assert report["budget"] == stated
    assert f"token budget ({stated}, in whole steps" in (out / "report.md").read_text()


def test_a_variant_builds_on_at_most_one_config(tmp_path):
    configs = [Path(__file__).parents[1] / "configs" / name for name in ("default.yaml", "shakespeare_char.yaml")]
    with pytest.raises(ConfigError, match="a --variant builds on the one --config"):
        build_plan(tmp_path, config_files=configs, variants=["a=model.n_layer=2"], max_steps=2)


@pytest.mark.parametrize(
    ("model", "description"),
    [
        ({"model_type": "Llama", "n_layer": 2, "n_head": 4, "n_embd": 64}, "Llama"),  # size is the parameter column's
        ({"model_type": "Llama", "feedforward": "gelu", "qk_norm": True}, "Llama + qk_norm=true, feedforward=gelu"),
        ({"model_type": "Vanilla", "tie_embeddings": False}, "Vanilla + tie_embeddings=false"),
        ({"model_type": "Llama", "n_head": 4, "n_embd": 64, "attention": {"n_kv_head": 2}}, "Llama + n_kv_head=2"),
    ],
)
def test_a_contender_s_model_is_its_architecture_and_what_it_changes(model, description):
    assert model_description(ExperimentConfig.model_validate({"model": model}).model) == description


def test_the_report_tells_apart_contenders_of_one_architecture_that_differ_in_a_part(tmp_path):
    variants = ["llama=model.model_type=Llama", "gelu=model.model_type=Llama;model.feedforward=gelu"]
    plan = build_plan(tmp_path / "cmp", variants=variants, overrides=TINY)
    configs = {run.label: run.load().model for run in plan.runs}
    results = [
        {"label": label, "model_type": "Llama", "model": model_description(model), "tokens_per_step": 16, "wall_s": 1.0}
        for label, model in configs.items()
    ]
    table = contender_table([summarize_contender([result], None) for result in results])
    assert "| llama | Llama |" in table and "| gelu | Llama + feedforward=gelu |" in table
