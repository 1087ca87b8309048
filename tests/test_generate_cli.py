"""`cleangpt generate`: loads a checkpoint and its tokenizer, streams text, reports user errors in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.model import get_model, save_model
from cleangpt_core.tokenizers import CharacterTokenizer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory whose `latest` names a checkpoint with a model and its tokenizer."""
    root = tmp_path_factory.mktemp("run")
    tokenizer = CharacterTokenizer(vocab=list("abcdefgh "))
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=32)
    checkpoint = root / "checkpoints" / "step-00000010"
    save_model(model, checkpoint)
    tokenizer.save_pretrained(checkpoint / "tokenizer")
    (root / "latest").write_text("step-00000010\n")
    return root


def _generate(*args):
    return CliRunner().invoke(cli, ["generate", *map(str, args)])


def test_generate_prints_the_prompt_and_its_continuation(run_dir):
    result = _generate(run_dir, "--prompt", "abc", "--max-new-tokens", "10", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("abc")
    assert len(result.output.strip()) > 3


def test_the_same_seed_gives_the_same_text(run_dir):
    first = _generate(run_dir, "--prompt", "abc", "-n", "20", "--seed", "5", "--temperature", "1.0")
    second = _generate(run_dir, "--prompt", "abc", "-n", "20", "--seed", "5", "--temperature", "1.0")
    assert first.output == second.output


def test_a_checkpoint_directory_works_as_well_as_a_run_directory(run_dir):
    greedy = ["--prompt", "ab", "-n", "8", "--sampler", "greedy"]
    assert _generate(run_dir, *greedy).output == _generate(run_dir / "checkpoints" / "step-00000010", *greedy).output


def test_an_unknown_sampler_is_one_line_naming_the_choices(run_dir):
    result = _generate(run_dir, "--prompt", "ab", "--sampler", "nucleus2")
    assert result.exit_code == 1
    assert "unknown sampler 'nucleus2'" in result.output and "top_p" in result.output


def test_a_directory_that_is_not_a_checkpoint_is_one_line(tmp_path):
    result = _generate(tmp_path, "--prompt", "ab")
    assert result.exit_code == 1
    assert "neither a model directory" in result.output and "Traceback" not in result.output


def test_an_unencodable_prompt_fails_before_printing(run_dir):
    result = _generate(run_dir, "--prompt", "xyz")
    assert result.exit_code == 1
    assert result.output.startswith("Error")


def test_listing_commands_shows_generate_without_importing_torch():
    code = (
        "import sys; from click.testing import CliRunner; from cleangpt_core.cli.main import cli; "
        "out = CliRunner().invoke(cli, ['--help']).output; "
        "assert 'generate' in out, out; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
