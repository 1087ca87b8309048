"""`cleangpt analyze-tokens`: statistics on stdout, two plots on disk, one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.tokenizers import CharacterTokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"


def run(*args: str):
    return CliRunner().invoke(cli, ["analyze-tokens", *args])


def test_prints_statistics_and_writes_both_plots(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 20)
    result = run("--data", str(corpus), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "total tokens:        774" in result.output  # 90% of 860 characters: the train split
    assert "unique tokens:       17" in result.output
    assert (tmp_path / "out" / "token_distribution.png").is_file()
    assert (tmp_path / "out" / "coverage_curve.png").is_file()


def test_gpt2_options_and_the_embedded_corpus(tmp_path):
    result = run(
        "--tokenizer",
        "gpt2",
        "-o",
        f"pretrained_model_name_or_path={FIXTURE}",
        "--split",
        "validation",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert "total tokens:        36,059" in result.output  # shared/data/README.md: GPT-2 tokens of the val split
    assert "' the'" in result.output


def test_a_saved_tokenizer_folder_can_be_analysed(tmp_path):
    CharacterTokenizer().fit("abc ").save_pretrained(tmp_path / "tok")
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc cab " * 10)
    result = run("--tokenizer", str(tmp_path / "tok"), "--data", str(corpus), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path):
    missing = run("--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path))
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [
        f"Error: data file or folder '{tmp_path / 'missing.txt'}' does not exist"
    ]
    unknown = run("--tokenizer", "nope", "--out", str(tmp_path))
    assert unknown.exit_code == 1 and "unknown tokenizer 'nope'" in unknown.output
    bad_option = run("-o", "unk_polcy=unk", "--out", str(tmp_path))
    assert bad_option.exit_code == 1 and "did you mean 'unk_policy'" in bad_option.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value"),
    [("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_HUB_OFFLINE", "1")],  # a closed port: refused at once
    ids=["hub unreachable", "HF_HUB_OFFLINE"],
)
def test_a_hub_tokenizer_offline_fails_at_once_saying_how_to_pass_a_folder(tmp_path, variable, value):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), variable: value}  # an empty cache
    command = [sys.executable, "-m", "cleangpt_core", "analyze-tokens", "--tokenizer", "gpt2", "--out", str(tmp_path)]
    # Before the fix the hub client retried for about 4 minutes, then blamed a corrupt vocab.json.
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: the GPT-2 tokenizer 'gpt2' is not in the local Hugging Face cache")
    assert "-o pretrained_model_name_or_path=DIR" in line
    assert "corrupt" not in line
