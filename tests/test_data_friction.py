"""The paths a user walks with their own corpora: a prepared folder's tokenizer is adopted, a tokenizer with
no end-of-text token is warned about, the character tokenizer prepares a corpus without fitting it first,
and a character it has never seen names where it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer, models, pre_tokenizers

from cleangpt_core.cli.main import cli
from cleangpt_core.data.document_sources import DocumentSource
from cleangpt_core.data.shard_writer import prepare_data
from cleangpt_core.errors import DataError
from cleangpt_core.model.serialization import load_trained_model
from cleangpt_core.tokenizers import CharacterTokenizer, create_tokenizer, from_pretrained
from cleangpt_core.utils import tinyshakespeare_text

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"
TEXT = tinyshakespeare_text()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))


def corpus(tmp_path: Path, documents: list[str]) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": document}) + "\n" for document in documents), encoding="utf-8")
    return path


def shakespeare(tmp_path: Path) -> Path:
    return corpus(tmp_path, [TEXT[i : i + 2000] for i in range(0, 40_000, 2000)])


def invoke(*arguments: str | Path):
    return CliRunner().invoke(cli, [str(argument) for argument in arguments])


def tiny_run(run_dir: Path, dataset: Path) -> list[str]:
    settings = {
        "data.dataset": dataset,
        "model.n_layer": 1,
        "model.n_head": 2,
        "model.n_embd": 32,
        "model.block_size": 16,
        "trainer.max_steps": 2,
        "schedule.warmup_steps": 1,
        "trainer.eval_interval": "null",
        "trainer.checkpoint_interval": "null",
        "data.eval_tokens": 500,
        "output.sample_tokens": 0,
        "output.dir": run_dir,
    }
    return [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]


def test_training_on_a_prepared_folder_adopts_its_tokenizer(tmp_path):
    prepared = tmp_path / "prepared"
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    prepare_data(DocumentSource.from_argument(shakespeare(tmp_path)), tokenizer, prepared, num_proc=1)
    result = invoke("train", *tiny_run(tmp_path / "run", prepared))  # no tokenizer named: the default's place
    assert result.exit_code == 0, result.output
    _, saved, _ = load_trained_model(tmp_path / "run")
    assert saved.tokenizer_type == "gpt2" and saved.fingerprint() == tokenizer.fingerprint()


def test_prepare_data_with_the_character_tokenizer_fits_it_on_the_corpus(tmp_path):
    out = tmp_path / "prepared"
    result = invoke("prepare-data", shakespeare(tmp_path), "--tokenizer", "character", "--out", out, "--num-proc", "1")
    assert result.exit_code == 0, result.output
    tokenizer = from_pretrained(out / "tokenizer")
    assert set(TEXT[:40_000]) <= set(tokenizer.get_vocab())
    trained = invoke("train", *tiny_run(tmp_path / "run", out))
    assert trained.exit_code == 0, trained.output
    assert load_trained_model(tmp_path / "run")[1].get_vocab() == tokenizer.get_vocab()


def test_a_tokenizer_without_an_end_of_text_token_is_warned_about_at_prepare_time(tmp_path):
    folder = tmp_path / "no-eos"
    folder.mkdir()
    backend = Tokenizer(
        models.WordLevel({word: i for i, word in enumerate(["[UNK]", "to", "be", "or", "not"])}, "[UNK]")
    )
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.save(str(folder / "tokenizer.json"))
    result = invoke(
        "prepare-data", corpus(tmp_path, ["to be", "or not"]), "--tokenizer", folder, "--out", tmp_path / "o"
    )
    assert result.exit_code == 0, result.output
    assert "declares no end-of-text token" in result.stderr and "-o eos_token=TOKEN" in result.stderr
    with_eos = invoke(
        "prepare-data",
        corpus(tmp_path, ["to be"]),
        "--tokenizer",
        folder,
        "-o",
        "eos_token=not",
        "--out",
        tmp_path / "p",
    )
    assert with_eos.exit_code == 0 and "end-of-text" not in with_eos.stderr


def test_a_character_the_tokenizer_has_not_seen_names_its_file(tmp_path):
    source = corpus(tmp_path, ["abc", "abc", "abz"])
    tokenizer = CharacterTokenizer().fit("abc")
    with pytest.raises(DataError, match=r"corpus\.jsonl \(the part from byte 0\): character 'z'"):
        prepare_data(DocumentSource.from_argument(source), tokenizer, tmp_path / "out", num_proc=1)
