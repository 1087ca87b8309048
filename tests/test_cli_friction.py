"""Everyday command-line paths: a run's experiment.json as --config, a dry run, show-config whole and with the
recipe's values, and generate from standard input, several samples, or interactively."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.model import get_model, save_model
from cleangpt_core.tokenizers import CharacterTokenizer


def invoke(*arguments: str | Path, **options):
    return CliRunner().invoke(cli, [str(argument) for argument in arguments], **options)


TINY = {
    "model.n_layer": 1,
    "model.n_head": 2,
    "model.n_embd": 16,
    "model.block_size": 16,
    "trainer.max_steps": 2,
    "schedule.warmup_steps": 1,
    "trainer.eval_interval": "null",
    "trainer.checkpoint_interval": "null",
    "data.eval_tokens": 500,
    "output.sample_tokens": 0,
}


def sets(run_dir: Path, **more: object) -> list[str]:
    pairs = {**TINY, "output.dir": run_dir, **more}
    return [part for key, value in pairs.items() for part in ("--set", f"{key}={value}")]


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path):
    result = invoke("train", "--dry-run", *sets(tmp_path / "run", **{"trainer.max_steps": 7}))
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["trainer"]["max_steps"] == 7 and printed["model"]["n_embd"] == 16
    assert printed["schedule"]["name"] == "cosine" and not (tmp_path / "run").exists()


def test_a_runs_own_experiment_json_is_a_config(tmp_path):
    assert invoke("train", *sets(tmp_path / "first")).exit_code == 0
    saved = next((tmp_path / "first").glob("checkpoints/*/experiment.json"))
    again = invoke("train", "--config", saved, "--set", f"output.dir={tmp_path / 'second'}")
    assert again.exit_code == 0, again.output
    first = json.loads(saved.read_text())
    second = json.loads(next((tmp_path / "second").glob("checkpoints/*/experiment.json")).read_text())
    assert {**first, "output": None} == {**second, "output": None}


def test_show_config_never_cuts_a_description_and_shows_the_recipes_values(monkeypatch):
    monkeypatch.setenv("COLUMNS", "70")
    result = invoke("show-config", "advanced")
    assert result.exit_code == 0 and "…" not in result.output
    words = " ".join(result.output.split())
    assert "stop after this many optimizer steps" in words  # wrapped, whole
    assert re.search(r"max_steps\s+int \| None\s+None\s+2000\s", result.output)  # schema default, the recipe's
    assert "recipe" not in invoke("show-config", "top_p").output  # the recipe samples with `combined`


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generate")
    tokenizer = CharacterTokenizer(vocab=list("abcdefgh "))
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=32)
    save_model(model, root)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def test_generate_reads_the_prompt_from_standard_input(checkpoint):
    piped = invoke("generate", checkpoint, "-n", "5", "--seed", "0", input="abc\n")
    given = invoke("generate", checkpoint, "-p", "abc", "-n", "5", "--seed", "0")
    assert piped.exit_code == 0 and piped.output == given.output and piped.output.startswith("abc")


def test_generate_draws_several_samples_each_seeded_apart(checkpoint):
    result = invoke("generate", checkpoint, "-p", "ab", "-n", "12", "--seed", "3", "--num-samples", "3", "-t", "1.0")
    samples = result.output.strip().split("\n" + "-" * 40 + "\n")
    assert result.exit_code == 0 and len(samples) == 3 and all(s.startswith("ab") for s in samples)
    second = invoke("generate", checkpoint, "-p", "ab", "-n", "12", "--seed", "4", "-t", "1.0").output.strip()
    assert samples[1] == second and len(set(samples)) > 1


def test_generate_interactively_continues_each_line_until_an_empty_one(checkpoint):
    result = invoke("generate", checkpoint, "-i", "-n", "4", "--seed", "0", input="ab\ncd\n\nnever\n")
    lines = [line.removeprefix("> ") for line in result.output.splitlines() if line.strip("> ")]
    assert result.exit_code == 0 and len(lines) == 2
    assert lines[0].startswith("ab") and lines[1].startswith("cd") and "never" not in result.output


def test_the_listing_names_part_kinds_in_plain_english():
    output = invoke("list-components").output
    assert "attention parts" in output.splitlines() and "attentions" not in output


def test_export_of_learned_positions_says_where_transformers_generate_stops(checkpoint, tmp_path):
    result = invoke("export", checkpoint, tmp_path / "hf")
    assert result.exit_code == 0, result.output
    assert "positions are learned for 32 tokens; transformers' generate fails past them" in result.output
