"""`cleangpt analyze-tokens`: statistics on stdout, two plots on disk, one-line errors."""

from pathlib import Path

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
