"""Training on prepared data that was changed or tampered with: each fault is named in one line before any
work, never trained on silently or ended in a traceback (issue 25)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.data.document_sources import DocumentSource
from cleangpt_core.data.prepared_data import PreparedCorpus
from cleangpt_core.data.shard_writer import prepare_data
from cleangpt_core.errors import DataError
from cleangpt_core.tokenizers import create_tokenizer
from cleangpt_core.utils import tinyshakespeare_text

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"
LINES = tinyshakespeare_text().splitlines()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))


def prepare(tmp_path: Path, out: Path, first_line: int = 0, count: int = 40) -> Path:
    documents = ["\n".join(LINES[first_line + i * 8 : first_line + (i + 1) * 8]) for i in range(count)]
    corpus = tmp_path / f"corpus-{first_line}.jsonl"
    corpus.write_text("".join(json.dumps({"text": document}) + "\n" for document in documents))
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    prepare_data(DocumentSource.from_argument(corpus), tokenizer, out, num_proc=1, shard_tokens=1000)
    return out


def train_sets(prepared: Path, run: Path, *extra: str) -> list[str]:
    sets = [
        f"data.dataset={prepared}", "tokenizer.name=gpt2", f"tokenizer.pretrained_model_name_or_path={FIXTURE}",
        "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16", "data.batch_size=2",
        "trainer.max_steps=2", "schedule.warmup_steps=1", "trainer.eval_interval=2", "trainer.eval_max_batches=1",
        "trainer.progress_bar=false",
        "output.sample_tokens=0", f"output.dir={run}", *extra,
    ]
    return [part for value in sets for part in ("--set", value)]


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


# --- 4: resume on changed data ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_resuming_on_prepared_data_prepared_again_from_another_corpus_is_refused(tmp_path):
    prepared, run = prepare(tmp_path, tmp_path / "prepared"), tmp_path / "run"
    first = CliRunner().invoke(cli, ["train", *train_sets(prepared, run)])
    assert first.exit_code == 0, first.output
    shutil.rmtree(prepared)
    prepare(tmp_path, prepared, first_line=400)  # another corpus, the same folder and tokenizer
    resumed = CliRunner().invoke(cli, ["train", "--resume", str(run), "--set", "trainer.max_steps=4"])
    assert "is not the data this run started on" in one_line_error(resumed)


@pytest.fixture
def prepared(tmp_path):
    return prepare(tmp_path, tmp_path / "prepared")


def edit_index(prepared: Path, edit) -> None:
    index = json.loads((prepared / "index.json").read_text())
    edit(index)
    (prepared / "index.json").write_text(json.dumps(index))


# --- 8: paths from data stay inside their folder ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["ABSOLUTE", "../outside.bin", "sub/../../outside.bin", "LINK"])
def test_a_shard_file_named_outside_the_folder_is_refused(prepared, tmp_path, name):
    outside = tmp_path / "outside.bin"
    outside.write_bytes((prepared / "shard_000000.bin").read_bytes())
    if name == "LINK":
        (prepared / "link.bin").symlink_to(outside)
        name = "link.bin"
    name = str(outside) if name == "ABSOLUTE" else name
    edit_index(prepared, lambda index: index["shards"][0].update(file=name))
    with pytest.raises(DataError, match="which is not a file of"):
        PreparedCorpus(prepared)


# --- 9: a damaged index, state or shard is named ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda index: index.pop("shards"), "'shards' must be a list"),
        (lambda index: index.update(tokens="abc"), "'tokens' is 'abc', not a count"),
        (lambda index: index.update(dtype="float64"), "dtype 'float64' is not uint16 or uint32"),
        (lambda index: index["shards"][0].update(tokens=-1), "'shards' must be a list"),
        (lambda index: index.pop("tokenizer"), "'tokenizer' must hold"),
        (lambda index: index.update(eos=None), "'eos' must hold"),
    ],
)
def test_a_damaged_index_is_named_before_training(prepared, tmp_path, edit, problem):
    edit_index(prepared, edit)
    with pytest.raises(DataError, match=f"index.json is damaged \\({problem}"):
        PreparedCorpus(prepared)
    result = CliRunner().invoke(cli, ["train", *train_sets(prepared, tmp_path / "run")])
    assert "is damaged" in one_line_error(result)
    assert not (tmp_path / "run").exists()


def test_an_index_whose_vocabulary_differs_from_its_tokenizers_is_refused(prepared):
    edit_index(prepared, lambda index: index["tokenizer"].update(vocab_size=1000))
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    with pytest.raises(DataError, match="says 1,000 ids stored as uint16, but its tokenizer has 50,257 ids"):
        PreparedCorpus(prepared).check_tokenizer(tokenizer)


def test_ids_beyond_the_vocabulary_in_a_shard_are_named_not_an_index_error(prepared):
    shard = prepared / "shard_000001.bin"
    tokens = np.fromfile(shard, dtype=np.uint16)
    tokens[10] = 60_000  # beyond GPT-2's 50,257 ids
    tokens.tofile(shard)
    stream = PreparedCorpus(prepared).tokens()
    stream[:900]  # shard 0 alone is fine
    with pytest.raises(DataError, match=r"shard .*shard_000001.bin holds id 60000, beyond the vocabulary of 50,257"):
        stream[990:1020]


def test_a_damaged_prepare_state_is_named(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": "hello"}) + "\n")
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    damages = ('{not json', '{"settings": {}}', '{"settings": {}, "finished_shards": 0, "boundary": {"unit": "x"}}')
    for damage in damages:
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        (out / "prepare-state.json").write_text(damage)
        with pytest.raises(DataError, match="prepare-state.json is damaged"):
            prepare_data(DocumentSource.from_argument(corpus), tokenizer, out, num_proc=1)
        assert (out / "prepare-state.json").read_text() == damage


def test_a_record_nested_too_deeply_is_named(tmp_path):
    corpus = tmp_path / "deep.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    with pytest.raises(DataError, match="deep.jsonl line 2: the record nests too deeply"):
        prepare_data(DocumentSource.from_argument(corpus), tokenizer, tmp_path / "out", num_proc=1)


# --- 12: blank documents split alike on both paths ------------------------------------------------------------------


def test_blank_documents_are_held_out_alike_by_the_in_memory_and_the_prepared_path(tmp_path):
    from cleangpt_core.data.loading import load_corpus_tokens

    documents = ["\n".join(LINES[i * 8 : (i + 1) * 8]) for i in range(8)] + ["", "   \n"]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": document}) + "\n" for document in documents))
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    prepare_data(DocumentSource.from_argument(corpus), tokenizer, tmp_path / "prepared", num_proc=1)
    for split in ("train", "validation"):
        in_memory = load_corpus_tokens(corpus, tokenizer, split, use_cache=False)
        prepared = load_corpus_tokens(tmp_path / "prepared", tokenizer, split)
        assert np.array_equal(np.asarray(in_memory), np.asarray(prepared)), split
