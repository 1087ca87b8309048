"""`cleangpt prepare-data`: corpora streamed into token shards, resumable, and read back by training."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleangpt_core.cli.main import cli
from cleangpt_core.config.experiment import load_experiment_config
from cleangpt_core.data import document_sources, shard_writer
from cleangpt_core.data.document_sources import DocumentSource, read_unit
from cleangpt_core.data.prepared_data import MAX_OPEN_SHARDS, PreparedCorpus
from cleangpt_core.data.shard_writer import STATE_FILE, prepare_data
from cleangpt_core.errors import DataError, TokenizerError
from cleangpt_core.experiments.training_run import prepare_run
from cleangpt_core.tokenizers import CharacterTokenizer, create_tokenizer
from cleangpt_core.utils import tinyshakespeare_text, tokenize_documents

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"
LINES = tinyshakespeare_text().splitlines()


def gpt2():
    return create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))


def shakespeare_documents(count: int, seed: int = 0, lines: tuple[int, int] = (3, 30)) -> list[str]:
    """Documents of recombined Tiny Shakespeare lines, the same for the same seed."""
    rng = random.Random(seed)
    return ["\n".join(rng.choice(LINES) for _ in range(rng.randint(*lines))) for _ in range(count)]


def write_jsonl(path: Path, documents: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: document, "id": i}) + "\n" for i, document in enumerate(documents)))
    return path


def all_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def small_units(monkeypatch):
    """Work units of about 4 KB, so a small corpus spans many units and shards."""
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)


# --- what is written ------------------------------------------------------------------------------------------


def test_jsonl_parquet_and_folders_give_the_in_memory_token_stream(tmp_path, small_units):
    documents = shakespeare_documents(200)
    tokenizer = gpt2()
    expected = tokenize_documents(documents, tokenizer)
    write_jsonl(tmp_path / "corpus.jsonl", documents)
    pq.write_table(pa.table({"text": documents}), tmp_path / "corpus.parquet", row_group_size=37)
    (tmp_path / "folder").mkdir()
    write_jsonl(tmp_path / "folder" / "a.jsonl", documents[:120])
    pq.write_table(pa.table({"text": documents[120:]}), tmp_path / "folder" / "b.parquet")
    for name in ("corpus.jsonl", "corpus.parquet", "folder"):
        out = tmp_path / f"out-{name}"
        index = prepare_data(
            DocumentSource.from_argument(tmp_path / name), tokenizer, out, num_proc=2, shard_tokens=997
        )
        corpus = PreparedCorpus(out)
        assert np.array_equal(np.asarray(corpus.tokens()), expected), name
        assert index["documents"] == 200 and index["tokens"] == len(expected)


def test_units_of_only_blank_documents_leave_no_eos_before_the_first_document(tmp_path, small_units):
    """The workers put an eos before every document; the writer drops the one before the stream's first,
    which here comes only after several units with no document at all."""
    documents = shakespeare_documents(40)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "  "}\n' * 2000 + "".join(json.dumps({"text": d}) + "\n" for d in documents))
    tokenizer = gpt2()
    index = prepare_data(
        DocumentSource.from_argument(corpus), tokenizer, tmp_path / "out", num_proc=2, shard_tokens=997
    )
    lengths = [len(tokenizer.encode_corpus(document)) for document in documents]
    expected_starts = np.cumsum([0] + [length + 1 for length in lengths[:-1]])
    starts = np.fromfile(tmp_path / "out" / "documents.bin", dtype="<i8")
    assert index["documents"] == 40 and np.array_equal(starts, expected_starts)
    assert np.array_equal(
        np.asarray(PreparedCorpus(tmp_path / "out").tokens()), tokenize_documents(documents, tokenizer)
    )


def test_ids_beyond_a_shared_slot_come_back_by_pipe(tmp_path, small_units, monkeypatch):
    """Forked workers leave a unit's ids in shared memory when they fit its slot, else send them by pipe."""
    documents = shakespeare_documents(200)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", documents)
    tokenizer = gpt2()
    shard_writer._init_worker(tokenizer, "text")
    sizes = sorted(shard_writer._tokenize_unit(unit)[2].nbytes for unit in DocumentSource.from_argument(corpus).units())
    monkeypatch.setattr(shard_writer, "SLOT_BYTES", sizes[len(sizes) // 2])  # half the units fit, half do not
    prepare_data(DocumentSource.from_argument(corpus), tokenizer, tmp_path / "out", num_proc=2, shard_tokens=997)
    expected = tokenize_documents(documents, tokenizer)
    assert np.array_equal(np.asarray(PreparedCorpus(tmp_path / "out").tokens()), expected)


def test_a_long_text_file_streamed_in_pieces_tokenizes_as_the_whole_text(tmp_path, small_units):
    text = tinyshakespeare_text()[:200_000]
    (tmp_path / "play.txt").write_text(text)
    for tokenizer in (gpt2(), CharacterTokenizer().fit(text)):
        out = tmp_path / f"out-{tokenizer.tokenizer_type}"
        index = prepare_data(DocumentSource.from_argument(tmp_path / "play.txt"), tokenizer, out, num_proc=1)
        assert index["documents"] == 1
        assert np.array_equal(np.asarray(PreparedCorpus(out).tokens()), tokenizer.encode_corpus(text))


def test_shards_have_a_fixed_size_and_the_index_describes_them(tmp_path):
    documents = shakespeare_documents(50)
    out = tmp_path / "out"
    index = prepare_data(
        DocumentSource.from_argument(write_jsonl(tmp_path / "c.jsonl", documents)), gpt2(), out, shard_tokens=1000
    )
    sizes = [(out / shard["file"]).stat().st_size for shard in index["shards"]]
    assert all(size == 2000 for size in sizes[:-1]) and 0 < sizes[-1] <= 2000  # uint16: 2 bytes a token
    assert sum(shard["tokens"] for shard in index["shards"]) == index["tokens"]
    assert index["dtype"] == "uint16" and index["eos"] == {"id": 50256, "placement": "between documents"}
    assert index["tokenizer"]["type"] == "gpt2" and (out / "tokenizer" / "cleangpt_tokenizer.json").is_file()
    assert index["tokenizer"]["fingerprint"] == gpt2().fingerprint()
    assert not (out / STATE_FILE).exists()
    starts = np.fromfile(out / "documents.bin", dtype="<i8")
    assert len(starts) == 50 and starts[0] == 0
    stream = np.asarray(PreparedCorpus(out).tokens())
    assert all(stream[s - 1] == 50256 for s in starts[1:])  # one eos before every document but the first


def test_the_fingerprint_changes_with_the_corpus_and_the_tokenizer(tmp_path):
    documents = shakespeare_documents(20)
    source = DocumentSource.from_argument(write_jsonl(tmp_path / "c.jsonl", documents))
    first = prepare_data(source, gpt2(), tmp_path / "a")["fingerprint"]
    char = CharacterTokenizer().fit("".join(documents))
    other_tokenizer = prepare_data(source, char, tmp_path / "b")["fingerprint"]
    write_jsonl(tmp_path / "c.jsonl", [*documents[:-1], documents[-1] + "!"])
    other_corpus = prepare_data(source, gpt2(), tmp_path / "c")["fingerprint"]
    assert first["corpus"] == other_tokenizer["corpus"] != other_corpus["corpus"]
    assert len({first["combined"], other_tokenizer["combined"], other_corpus["combined"]}) == 3


def test_the_corpus_fingerprint_of_a_fixed_corpus_stays_the_same(tmp_path, small_units):
    """Units and their hashes are part of the prepared-data format: an interrupted prepare continues only when
    the fingerprint up to its boundary matches, so a new version must cut and hash the same source the same way.
    (The values are those of the first version of the format.)"""
    (tmp_path / "play.txt").write_text(tinyshakespeare_text()[:200_000])
    expected = {
        write_jsonl(tmp_path / "corpus.jsonl", shakespeare_documents(200)): "14f17226ee8c690da09c4cbd804f9940a502623f",
        tmp_path / "play.txt": "3244c5e5a8acdf6187429567b0ea9a797984773b",
    }
    for path, fingerprint in expected.items():
        index = prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / f"out-{path.name}", num_proc=1)
        assert index["fingerprint"]["corpus"][:40] == fingerprint, path.name


def test_preparing_again_into_a_finished_folder_changes_nothing(tmp_path):
    source = DocumentSource.from_argument(write_jsonl(tmp_path / "c.jsonl", shakespeare_documents(20)))
    prepare_data(source, gpt2(), tmp_path / "out", shard_tokens=500)
    before = all_files(tmp_path / "out")
    prepare_data(source, gpt2(), tmp_path / "out", shard_tokens=500)
    assert all_files(tmp_path / "out") == before
    with pytest.raises(DataError, match="already holds data prepared from .* with other settings"):
        prepare_data(source, gpt2(), tmp_path / "out", shard_tokens=400)


def test_a_vocabulary_beyond_uint16_is_stored_as_uint32(tmp_path):
    vocab = [chr(0x10000 + i) for i in range(70_000)]  # beyond the surrogates
    tokenizer = CharacterTokenizer(vocab=vocab)
    documents = ["".join(vocab[i] for i in range(start, 70_000, 997)) for start in range(40)]
    out = tmp_path / "out"
    index = prepare_data(
        DocumentSource.from_argument(write_jsonl(tmp_path / "c.jsonl", documents)), tokenizer, out, shard_tokens=300
    )
    assert index["dtype"] == "uint32"
    assert (out / "shard_000000.bin").stat().st_size == 300 * 4
    stream = np.asarray(PreparedCorpus(out).tokens())
    assert stream.dtype == np.uint32 and stream.max() > 65_535
    assert np.array_equal(stream, tokenize_documents(documents, tokenizer))


# --- a kill, and a rerun ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_prepare_killed_midway_and_run_again_ends_byte_identical(tmp_path, wait_for):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", shakespeare_documents(20_000, lines=(10, 60)))  # about 20 MB
    command = [
        sys.executable,
        "-m",
        "cleangpt_core",
        "prepare-data",
        str(corpus),
        "--tokenizer",
        "gpt2",
        "-o",
        f"pretrained_model_name_or_path={FIXTURE}",
        "--num-proc",
        "2",
        "--shard-tokens",
        "50000",
        "--out",
    ]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, str(killed)])
    try:
        wait_for(process, (killed / "shard_000003.bin").is_file, "the fourth shard", poll=0.005)
        workers = [
            int(pid)
            for task in Path(f"/proc/{process.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    deadline = time.monotonic() + 10
    while any(
        Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
        for pid in workers
    ):
        assert time.monotonic() < deadline, "the killed prepare's workers outlived it"
        time.sleep(0.05)
    assert not (killed / "index.json").exists(), "the kill must come before the end"
    assert (killed / STATE_FILE).is_file()

    subprocess.run([*command, str(killed)], check=True)
    subprocess.run([*command, str(tmp_path / "straight")], check=True)
    straight, resumed = all_files(tmp_path / "straight"), all_files(killed)
    assert len([name for name in straight if name.startswith("shard_")]) > 20
    assert resumed.keys() == straight.keys()
    assert all(resumed[name] == straight[name] for name in straight)


# --- training from a prepared directory -----------------------------------------------------------------------


def tiny_config(tmp_path: Path, dataset: Path, *extra: str):
    overrides = [
        f"data.dataset={dataset}",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "tokenizer.name=gpt2",
        f"tokenizer.pretrained_model_name_or_path={FIXTURE}",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=32",
        "model.block_size=32",
        "trainer.max_steps=4",
        "schedule.warmup_steps=1",
        "trainer.eval_interval=2",
        "trainer.eval_max_batches=2",
        "trainer.checkpoint_interval=100",
        "trainer.progress_bar=false",
        f"output.dir={tmp_path / 'runs' / dataset.name}",
        *extra,
    ]
    config = load_experiment_config(None, overrides)
    return config


@pytest.mark.slow
def test_training_from_a_prepared_directory_matches_the_in_memory_path(tmp_path, small_units):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", shakespeare_documents(60))
    prepared = tmp_path / "prepared"
    prepare_data(DocumentSource.from_argument(corpus), gpt2(), prepared, num_proc=2, shard_tokens=777)
    runs = [prepare_run(tiny_config(tmp_path, dataset)) for dataset in (corpus, prepared)]
    in_memory, from_shards = runs
    assert isinstance(from_shards.train_loader.dataset.tokens, type(PreparedCorpus(prepared).tokens()))
    for split in ("train_loader", "val_loader"):
        a, b = getattr(in_memory, split).dataset.tokens, getattr(from_shards, split).dataset.tokens
        assert np.array_equal(np.asarray(a), np.asarray(b)), split
    batches = [[b["input_ids"] for b in run.trainer.batches.epoch(0, start=5)][:3] for run in runs]
    assert all(torch.equal(x, y) for x, y in zip(*batches, strict=True))
    stats = [run.trainer.train() for run in runs]
    assert stats[0]["losses"] == stats[1]["losses"] and stats[0]["val_loss"] == stats[1]["val_loss"]


def test_validation_is_the_tail_of_the_documents_and_max_samples_the_head(tmp_path):
    documents = shakespeare_documents(30)
    tokenizer = gpt2()
    prepared = tmp_path / "prepared"
    prepare_data(DocumentSource.from_argument(write_jsonl(tmp_path / "c.jsonl", documents)), tokenizer, prepared)
    corpus = PreparedCorpus(prepared)
    assert np.array_equal(np.asarray(corpus.split("train", 0.1)), tokenize_documents(documents[:27], tokenizer))
    assert np.array_equal(np.asarray(corpus.split("validation", 0.2)), tokenize_documents(documents[24:], tokenizer))
    head = corpus.split("train", 0.1, max_documents=5)
    assert np.array_equal(np.asarray(head), tokenize_documents(documents[:5], tokenizer))


def test_windows_drawn_from_everywhere_keep_only_a_few_shards_mapped(tmp_path):
    documents = shakespeare_documents(40)
    prepared = tmp_path / "prepared"
    prepare_data(
        DocumentSource.from_argument(write_jsonl(tmp_path / "c.jsonl", documents)), gpt2(), prepared, shard_tokens=100
    )
    tokens = PreparedCorpus(prepared).tokens()
    flat = np.asarray(tokens)
    assert len(tokens.paths) > 50
    rng = np.random.default_rng(0)
    for start in rng.integers(0, len(flat) - 250, size=200):
        assert np.array_equal(tokens[start : start + 250], flat[start : start + 250])  # across shard edges
        assert len(tokens._open) <= MAX_OPEN_SHARDS
    assert tokens[-1] == flat[-1] and tokens.view(10, 20)[:].tolist() == flat[10:20].tolist()


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.fixture
def prepared(tmp_path):
    out = tmp_path / "prepared"
    corpus = write_jsonl(tmp_path / "corpus.jsonl", shakespeare_documents(40))
    prepare_data(DocumentSource.from_argument(corpus), gpt2(), out, shard_tokens=1000)
    return out


def test_a_shard_whose_size_disagrees_with_the_index_is_named(prepared, tmp_path):
    shard = prepared / "shard_000002.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"shard .*shard_000002\.bin has 1,998 bytes, but the index says 1,000"):
        PreparedCorpus(prepared)
    result = CliRunner().invoke(cli, ["train", *_sets(tmp_path, prepared)])
    assert result.exit_code == 1 and "shard_000002.bin has 1,998 bytes" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def _sets(tmp_path, prepared, tokenizer=("gpt2", f"pretrained_model_name_or_path={FIXTURE}")):
    sets = [f"data.dataset={prepared}", f"tokenizer.name={tokenizer[0]}", f"output.dir={tmp_path / 'run'}"]
    sets += [f"tokenizer.{option}" for option in tokenizer[1:]]
    return [part for value in sets for part in ("--set", value)]


def test_a_run_whose_tokenizer_differs_from_the_prepared_datas_is_refused(prepared, tmp_path):
    # naming no tokenizer (or the default one) adopts the prepared one: see test_data_friction.py
    result = CliRunner().invoke(cli, ["train", *_sets(tmp_path, prepared, ("character", "unk_policy=unk"))])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "was prepared with the 'gpt2' tokenizer, but tokenizer.name='character'" in result.output
    assert not (tmp_path / "run").exists()


def test_a_text_field_missing_from_a_record_names_the_file_and_line_and_keeps_finished_shards(tmp_path, small_units):
    documents = shakespeare_documents(150)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", documents)
    lines = corpus.read_text().splitlines(keepends=True)
    lines[120] = json.dumps({"body": documents[120]}) + "\n"
    corpus.write_text("".join(lines))
    out = tmp_path / "out"
    with pytest.raises(
        DataError, match=r"corpus\.jsonl line 121: the record has no field 'text' \(it has \['body'\]\)"
    ):
        prepare_data(DocumentSource.from_argument(corpus), gpt2(), out, num_proc=2, shard_tokens=2000)
    kept = {name: data for name, data in all_files(out).items() if name.startswith("shard_")}
    assert len(kept) > 5 and (out / STATE_FILE).is_file()

    write_jsonl(corpus, documents)  # fixed: the rerun continues after the finished shards
    prepare_data(DocumentSource.from_argument(corpus), gpt2(), out, num_proc=2, shard_tokens=2000)
    assert all((out / name).read_bytes() == data for name, data in kept.items())
    prepare_data(DocumentSource.from_argument(corpus), gpt2(), tmp_path / "straight", shard_tokens=2000)
    assert all_files(out) == all_files(tmp_path / "straight")


def test_the_cli_reports_a_missing_field_in_one_line(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "to be"}\n{"txt": "or not"}\n')
    result = CliRunner().invoke(
        cli,
        [
            "prepare-data",
            str(corpus),
            "--tokenizer",
            "gpt2",
            "-o",
            f"pretrained_model_name_or_path={FIXTURE}",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: {corpus} line 2: the record has no field 'text' (it has ['txt']); fix the record, or name the text "
        "field with --text-field"
    ]
    assert not (tmp_path / "out").exists()


FULL_DISK_PREPARE = """
import sys
from cleangpt_core.errors import DataError
from cleangpt_core.tokenizers import from_pretrained
from cleangpt_core.data import document_sources
from cleangpt_core.data.document_sources import DocumentSource, read_unit
from cleangpt_core.data.shard_writer import prepare_data

document_sources.UNIT_BYTES = 4096
corpus, tokenizer, out = sys.argv[1:]
try:
    prepare_data(DocumentSource.from_argument(corpus), from_pretrained(tokenizer), out, num_proc=1, shard_tokens=10_000)
except DataError as error:
    sys.exit(str(error))
"""


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write then fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return apply


@pytest.mark.slow
def test_a_full_disk_mid_shard_keeps_the_finished_shards_and_a_rerun_completes(tmp_path, small_units):
    """A file-size limit (RLIMIT_FSIZE) makes the kernel refuse a write as a full disk does (EFBIG, not ENOSPC).

    The prepare runs in its own process, so the limit binds nothing else; documents.bin (8 bytes a document)
    is the file that reaches it, after several shards of 20 KB are finished.
    """
    documents = [f"doc {i:05d} " for i in range(12_000)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", documents)
    tokenizer = CharacterTokenizer().fit("".join(documents))
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    out = tmp_path / "out"
    arguments = [sys.executable, "-c", FULL_DISK_PREPARE, str(corpus), str(tmp_path / "tokenizer"), str(out)]
    failed = subprocess.run(arguments, capture_output=True, text=True, preexec_fn=_limit_file_size(64 * 1024))
    assert failed.returncode == 1, failed.stderr
    assert re.fullmatch(
        r"no space left to write .*documents\.bin \(File too large\); the \d+ finished shards are kept: free some "
        r"space and run the same command again to continue\n",
        failed.stderr,
    ), failed.stderr
    kept = {name: data for name, data in all_files(out).items() if name.startswith("shard_")}
    assert len(kept) >= 3 and not any(name.endswith(".tmp") for name in all_files(out))
    # what a writer killed while saving the state aside leaves behind; the rerun must not keep it
    (out / ".partial-prepare-state.json-4242-beef").write_text("{half")

    subprocess.run(arguments, check=True)
    assert all((out / name).read_bytes() == data for name, data in kept.items())
    prepare_data(DocumentSource.from_argument(corpus), tokenizer, tmp_path / "straight", shard_tokens=10_000)
    assert all_files(out) == all_files(tmp_path / "straight")


def test_an_empty_source_is_refused_and_leaves_nothing(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": ""}\n{"text": "   "}\n')
    with pytest.raises(DataError, match=r"empty\.jsonl holds no text \(every document is empty\)"):
        prepare_data(DocumentSource.from_argument(empty), gpt2(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="holds no .txt/.jsonl/.json/.parquet files"):
        prepare_data(DocumentSource.from_argument(tmp_path / "folder"), gpt2(), tmp_path / "out")


def test_an_unfitted_character_tokenizer_and_a_foreign_folder_are_refused(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", ["to be"])
    with pytest.raises(TokenizerError, match="has no vocabulary yet"):
        prepare_data(DocumentSource.from_argument(corpus), CharacterTokenizer(), tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="busy exists and is not an empty folder"):
        prepare_data(DocumentSource.from_argument(corpus), gpt2(), tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_hub_dataset_that_cannot_be_streamed_is_one_clear_error(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    source = DocumentSource.from_argument("Skylion007/openwebtext")
    assert source.describe()["split"] == "train" and source.total_bytes() is None
    with pytest.raises(DataError, match=r"could not stream dataset 'Skylion007/openwebtext', split 'train'"):
        prepare_data(source, gpt2(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_progress_bar_counts_documents_tokens_and_megabytes(tmp_path, capsys):
    documents = shakespeare_documents(30)
    source = DocumentSource.from_argument(write_jsonl(tmp_path / "c.jsonl", documents))
    index = prepare_data(source, gpt2(), tmp_path / "out", num_proc=1, progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "30 docs" in bar and f"{index['tokens']:,} tokens" in bar and "B/s" in bar
    assert f"{source.total_bytes() / 1e3:.1f}k/" in bar.replace(" ", "")


def test_a_text_file_that_is_not_utf8_is_named_with_the_offset_of_the_bad_byte(tmp_path, small_units):
    path = tmp_path / "latin1.txt"
    path.write_bytes(("to be or not " * 1000).encode() + "café".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt is not valid UTF-8 \(byte 0xe9 at offset 13003\)"):
        prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / "out", num_proc=1)


def test_a_file_that_shrinks_while_it_is_prepared_is_named(tmp_path, small_units):
    """The workers read a unit's bytes from the file themselves: a file cut short under them is an error."""
    path = write_jsonl(tmp_path / "corpus.jsonl", shakespeare_documents(100))
    units = list(DocumentSource.from_argument(path).units())
    assert len(units) > 2 and sum(unit.size for unit in units) == path.stat().st_size
    path.write_bytes(path.read_bytes()[: units[-1].start + 10])
    with pytest.raises(DataError, match=r"corpus\.jsonl changed while it was being prepared"):
        read_unit(units[-1], "text")


def test_jsonl_records_the_fast_parser_refuses_read_as_the_standard_library_reads_them(tmp_path):
    lines = [
        '{"text": "lone \\ud800 surrogate"}',  # orjson refuses lone surrogates
        '{"text": "after NaN", "score": NaN}',
        '\ufeff{"text": "after a byte-order mark"}',
        '{"text": "kept", "id": 123456789012345678901234567890}',
        '{"text": null}',
        '{"text": "last"}',
    ]
    path = tmp_path / "odd.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    unit = next(DocumentSource.from_argument(path).units())
    expected = [json.loads(line.encode())["text"] for line in lines]
    assert read_unit(unit, "text")[1] == [text for text in expected if text]
    path.write_text('{"text": "fine"}\n{"text": 123456789012345678901234567890}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"odd\.jsonl line 2: field 'text' holds int, not text"):
        read_unit(next(DocumentSource.from_argument(path).units()), "text")


def _expected_cuts(data: bytes, unit_bytes: int, safe: bool) -> list[int] | None:
    """Where units end, by the rule read off the whole file: the first safe place at least unit_bytes on, and
    at most MAX_UNIT_SCALE units on (a .txt piece is cut there; a JSON Lines line that long must be one record
    with a long text, which these bytes are not: None)."""
    cuts, offset = [], 0
    while len(data) - offset > unit_bytes:
        rest = range(offset + unit_bytes, len(data))
        if safe:  # a space after a non-space byte
            cut = next((p for p in rest if data[p : p + 1] == b" " and not data[p - 1 : p].isspace()), None)
        else:  # just after a newline
            cut = next((p + 1 for p in rest if data[p : p + 1] == b"\n"), None)
        limit = offset + document_sources.MAX_UNIT_SCALE * unit_bytes
        if (cut is None or cut > limit) and limit < len(data):
            if not safe:
                return None
            cut = limit
        if cut is None or cut == len(data):
            break
        cuts.append(cut)
        offset = cut
    return cuts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.text(alphabet="ab \n\t", max_size=300).map(str.encode), unit=st.integers(1, 40))
def test_units_end_at_the_first_safe_place_whatever_the_reads(tmp_path, monkeypatch, data, unit):
    """The main process reads the file only in small pieces around each cut; the cuts are those of the rule."""
    monkeypatch.setattr(document_sources, "UNIT_BYTES", unit)
    monkeypatch.setattr(document_sources, "_SCAN_BYTES", 7)  # cuts far from where the search starts
    for suffix, safe in ((".txt", True), (".jsonl", False)):
        path = tmp_path / f"corpus{suffix}"
        path.write_bytes(data)
        expected = _expected_cuts(data, unit, safe)
        if expected is None:
            with pytest.raises(DataError, match="outside its 'text' field"):
                list(DocumentSource.from_argument(path).units())
            continue
        units = list(DocumentSource.from_argument(path).units())
        assert [u.start for u in units[1:]] == expected, suffix
        assert sum(u.size for u in units) == len(data)
