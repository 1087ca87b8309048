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


@pytest.mark.parametrize("option", ["--temperature", "--top-p"])
def test_a_vanishing_temperature_or_top_p_generates_the_greedy_text(run_dir, option):
    greedy = _generate(run_dir, "--prompt", "ab", "-n", "12", "--sampler", "greedy")
    tiny = _generate(run_dir, "--prompt", "ab", "-n", "12", "--seed", "1", option, "1e-300")
    assert tiny.exit_code == 0, tiny.output
    assert tiny.output == greedy.output


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


def _one_error_line(result) -> str:
    """The single line a user error prints, after checking that nothing else was printed."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    return lines[0]


def test_a_misspelled_sampler_is_rejected_before_the_prompt_is_printed(run_dir):
    line = _one_error_line(_generate(run_dir, "--prompt", "abc", "--sampler", "topp"))
    assert "unknown sampler 'topp'; did you mean 'top_p'?" in line


def test_min_p_can_be_set_for_the_min_p_sampler(run_dir):
    greedy = _generate(run_dir, "--prompt", "ab", "-n", "12", "--sampler", "greedy").output
    # min_p=1 keeps only the most likely token: whatever the seed, the text is greedy's
    result = _generate(run_dir, "--prompt", "ab", "-n", "12", "--sampler", "min_p", "--min-p", "1", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.output == greedy


@pytest.mark.parametrize(
    ("sampler", "option", "value", "takes"),
    [
        ("greedy", "--temperature", "0.5", "greedy takes no options"),
        ("top_p", "--top-k", "5", "top_p takes --temperature, --top-p"),
        ("min_p", "--top-p", "0.9", "min_p takes --temperature, --min-p"),
        ("top_k", "--min-p", "0.1", "top_k takes --temperature, --top-k"),
    ],
)
def test_an_option_the_sampler_does_not_take_is_an_error(run_dir, sampler, option, value, takes):
    line = _one_error_line(_generate(run_dir, "--prompt", "ab", "--sampler", sampler, option, value))
    assert f"sampler {sampler!r} does not take {option}" in line
    assert takes in line


def test_an_invalid_sampler_option_names_the_option(run_dir):
    line = _one_error_line(_generate(run_dir, "--prompt", "ab", "--sampler", "min_p", "--min-p", "1.5"))
    assert "min_p" in line and "1.5" in line


def test_the_default_sampler_takes_every_option(run_dir):
    options = ["--temperature", "0.7", "--top-k", "3", "--top-p", "0.9", "--min-p", "0.05", "--seed", "1"]
    result = _generate(run_dir, "--prompt", "ab", "-n", "5", *options)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("bogus", "device 'bogus' is not a torch device"),
        pytest.param(
            "cuda",
            "device 'cuda' was asked for but CUDA is not available here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_an_unusable_device_is_one_line_naming_it(run_dir, device, message):
    assert message in _one_error_line(_generate(run_dir, "--prompt", "ab", "--device", device))


def test_an_absurd_number_of_new_tokens_is_one_line_naming_the_option(run_dir):
    line = _one_error_line(_generate(run_dir, "--prompt", "ab", "-n", "99999999999999999999"))
    assert "max_new_tokens=99999999999999999999 is more than memory holds" in line


def test_listing_commands_shows_generate_without_importing_torch():
    code = (
        "import sys; from click.testing import CliRunner; from cleangpt_core.cli.main import cli; "
        "out = CliRunner().invoke(cli, ['--help']).output; "
        "assert 'generate' in out, out; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
