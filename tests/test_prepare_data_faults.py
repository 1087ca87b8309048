"""`prepare-data` and prepared folders under attack: concurrent prepares, dead workers, giant lines, foreign
paths, damaged indexes. Each test is the regression test of one fault of issue 25."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleangpt_core.cli.main import cli
from cleangpt_core.data import document_sources, shard_writer
from cleangpt_core.data.document_sources import DocumentSource
from cleangpt_core.data.prepared_data import PreparedCorpus
from cleangpt_core.data.shard_writer import STATE_FILE, prepare_data
from cleangpt_core.errors import DataError, RunLockedError
from cleangpt_core.tokenizers import create_tokenizer
from cleangpt_core.utils import tinyshakespeare_text, tokenize_documents

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"
LINES = tinyshakespeare_text().splitlines()


def gpt2():
    return create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))


def write_jsonl(path: Path, count: int, lines: int = 8) -> Path:
    documents = ["\n".join(LINES[i * lines : (i + 1) * lines]) for i in range(count)]
    path.write_text("".join(json.dumps({"text": document}) + "\n" for document in documents))
    return path


def all_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))


# --- 1: one prepare at a time ---------------------------------------------------------------------------------

# A first prepare that stops, mid-way, after its first unit (as a slow tokenizer would) and waits there.
FIRST_PREPARE = textwrap.dedent(
    """
    import sys, time
    from cleangpt_core.data import document_sources, shard_writer
    from cleangpt_core.data.document_sources import DocumentSource
    from cleangpt_core.tokenizers import create_tokenizer

    document_sources.UNIT_BYTES = 4096
    tokenized = shard_writer._tokenized_units

    def slow(*args):
        for number, item in enumerate(tokenized(*args)):
            if number == 1:
                print("working", flush=True)
                time.sleep(120)
            yield item

    shard_writer._tokenized_units = slow
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=sys.argv[3])
    shard_writer.prepare_data(DocumentSource.from_argument(sys.argv[1]), tokenizer, sys.argv[2], num_proc=1)
    """
)


def test_a_second_prepare_into_a_folder_being_prepared_is_refused_and_deletes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 200)
    out = tmp_path / "prepared"
    first = subprocess.Popen(
        [sys.executable, "-c", FIRST_PREPARE, str(corpus), str(out), str(FIXTURE)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "working"
        before = all_files(out)
        assert {"tokenizer/tokenizer.json", "documents.bin", STATE_FILE} <= set(before)
        with pytest.raises(RunLockedError, match=f"{out} is being prepared by process {first.pid} on "):
            prepare_data(DocumentSource.from_argument(corpus), gpt2(), out, num_proc=1)  # the same command
        assert all_files(out) == before
    finally:
        first.kill()
        first.wait()


def test_a_failed_prepare_into_a_new_folder_leaves_no_folder_and_no_lock(tmp_path):
    (tmp_path / "blank.txt").write_text("   \n")
    out = tmp_path / "prepared"
    with pytest.raises(DataError, match="holds no text"):
        prepare_data(DocumentSource.from_argument(tmp_path / "blank.txt"), gpt2(), out, num_proc=1)
    assert not out.exists()


# --- 10: --out inside the source ------------------------------------------------------------------------------


def test_an_out_folder_inside_the_source_folder_is_refused_before_anything_is_written(tmp_path):
    source = tmp_path / "corpus"
    source.mkdir()
    write_jsonl(source / "a.jsonl", 20)
    result = CliRunner().invoke(
        cli,
        ["prepare-data", str(source), "--tokenizer", "gpt2", "-o", f"pretrained_model_name_or_path={FIXTURE}",
         "--out", str(source / "prepared"), "--num-proc", "1"],
    )
    assert result.exit_code != 0
    assert "lies inside the source folder" in result.output
    assert sorted(p.name for p in source.iterdir()) == ["a.jsonl"]


# --- 2: a dead worker ------------------------------------------------------------------------------------------

# prepare-data where the worker that takes the third unit is killed, as the out-of-memory killer would
KILLED_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from cleangpt_core.cli.main import main
    from cleangpt_core.data import document_sources, shard_writer

    document_sources.UNIT_BYTES = 4096
    tokenize, parent = shard_writer._tokenize_unit, os.getpid()

    def dies_on_the_third_unit(unit):
        if os.getpid() != parent and unit.start >= 2 * 4096:
            os.kill(os.getpid(), signal.SIGKILL)
        return tokenize(unit)

    shard_writer._tokenize_unit = dies_on_the_third_unit
    sys.argv = ["cleangpt", "prepare-data", *sys.argv[1:]]
    main()
    """
)


def test_a_worker_killed_midway_fails_the_prepare_in_one_line_and_a_rerun_completes(tmp_path, monkeypatch):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 300)
    args = [str(corpus), "--tokenizer", "gpt2", "-o", f"pretrained_model_name_or_path={FIXTURE}", "--num-proc", "2",
            "--shard-tokens", "3000"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WORKER, *args, "--out", str(tmp_path / "prepared")],
        capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == 1
    assert killed.stderr.count("\n") == 1 and "a tokenizer worker process died" in killed.stderr
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    rerun = CliRunner().invoke(cli, ["prepare-data", *args, "--out", str(tmp_path / "prepared")])
    assert rerun.exit_code == 0, rerun.output
    fresh = CliRunner().invoke(cli, ["prepare-data", *args, "--out", str(tmp_path / "fresh")])
    assert fresh.exit_code == 0, fresh.output
    assert all_files(tmp_path / "prepared") == all_files(tmp_path / "fresh")


# --- 3: units bounded whatever the line ------------------------------------------------------------------------


def test_text_without_spaces_is_cut_into_bounded_units_on_character_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    path = tmp_path / "spaceless.txt"
    path.write_text("é€ab" * 6000, encoding="utf-8")  # 54 KB, no space: once a single unit
    units = list(DocumentSource.from_argument(path).units())
    assert max(unit.size for unit in units) <= 4 * 4096
    assert sum(unit.size for unit in units) == path.stat().st_size
    for unit in units:
        document_sources.unit_bytes(unit).decode("utf-8")  # no cut inside a character
    with pytest.warns(RuntimeWarning, match="no space for over"):
        index = prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / "prepared", num_proc=1)
    assert index["documents"] == 1


def test_a_document_that_opens_with_a_long_blank_stretch_stays_a_document_of_its_own(tmp_path, monkeypatch):
    """Its first piece is cut short and blank: dropped as a blank document, its next pieces (which continue it)
    were glued to the previous file's document."""
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("the first document")
    (tmp_path / "corpus" / "b.txt").write_text(" " * 20_000 + "the second")
    tokenizer = gpt2()
    with pytest.warns(RuntimeWarning, match="no space for over"):
        index = prepare_data(DocumentSource.from_argument(tmp_path / "corpus"), tokenizer, tmp_path / "out", num_proc=1)
    assert index["documents"] == 2
    expected = tokenize_documents(["the first document", " " * 20_000 + "the second"], tokenizer)
    assert len(PreparedCorpus(tmp_path / "out").tokens()) == len(expected)


def _long_record_corpus(path: Path, text: str) -> list[str]:
    """A short record, one record with `text` between other fields, a short record; returns the three texts."""
    texts = ["a short one", text, "and a last one"]
    records = [
        {"text": texts[0]},
        {"id": 1, "text": text, "meta": {"source": "play", "tags": ["x"]}},
        {"text": texts[2]},
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return texts


def test_a_jsonl_record_longer_than_the_unit_limit_is_cut_into_bounded_units_that_tokenize_as_its_text(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    path = tmp_path / "corpus.jsonl"
    texts = _long_record_corpus(path, tinyshakespeare_text()[:60_000])  # escapes ("\n") all along
    units = list(DocumentSource.from_argument(path).units())
    assert sum(unit.size for unit in units) == path.stat().st_size
    assert len(units) > 10 and max(unit.size for unit in units) <= 5 * 4096
    assert not any(unit.forced for unit in units)
    tokenizer = gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cut only where GPT-2 gives the pieces the ids of the whole: no warning
        index = prepare_data(DocumentSource.from_argument(path), tokenizer, tmp_path / "prepared", num_proc=2)
    assert index["documents"] == 3
    assert np.array_equal(
        np.asarray(PreparedCorpus(tmp_path / "prepared").tokens()), tokenize_documents(texts, tokenizer)
    )


_RECORD_ALPHABET = ["a", "z", "é", "€", "😀", " ", "  ", "\n", "\t", "\\", '"', "/", "u", "d83d", "\u2028"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.lists(st.sampled_from(_RECORD_ALPHABET), max_size=400).map("".join), min_size=1, max_size=4),
    ascii_only=st.booleans(),
    unit=st.integers(16, 64),  # more than the record without its text
)
def test_long_records_are_cut_only_between_characters_and_escapes(tmp_path, monkeypatch, texts, ascii_only, unit):
    """Whatever the escapes (surrogate pairs from ensure_ascii included) and wherever the reads end, the pieces of
    a long record parse, each as a JSON string of its own, to pieces of its text."""
    monkeypatch.setattr(document_sources, "UNIT_BYTES", unit)
    monkeypatch.setattr(document_sources, "_SCAN_BYTES", 7)
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=ascii_only) + "\n" for t in texts), encoding="utf-8")
    units = list(DocumentSource.from_argument(path).units())
    assert sum(u.size for u in units) == path.stat().st_size
    documents: list[str] = []
    for u in units:
        found = document_sources.read_unit(u, "text")[1]
        if u.continues:
            documents[-1] += found.pop(0)
        documents += found
    assert documents == [t for t in texts if t.strip()]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{{"text": "short", "blob": "{long}"}}', "a string of the record longer than 4,096 bytes is not its 'text'"),
        ('{{"text": "{long}", "blob": "{long}"}}', "holds more than one string longer than 4,096 bytes"),
        ('{{"text": "{long}", "n": [{many}]}}', "longer than 4,096 bytes outside its 'text' field"),
        ('{{"text": "{long}", "n": tru}}', "line 2: not valid JSON"),
        ('{{"body": "{long}"}}', "line 2: the record has no field 'text'"),
        ('{{"text": "{long}', "line 2: not valid JSON (a string is not closed before the line ends)"),
        ('{{"text": "{long}\u0001 more words"}}', "line 2: not valid JSON"),
    ],
)
def test_a_long_record_that_is_not_one_long_text_is_one_line(tmp_path, monkeypatch, record, message):
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    path = tmp_path / "corpus.jsonl"
    long = "words and more " * 2000  # 30 KB: no newline within four units
    path.write_text('{"text": "fine"}\n' + record.format(long=long, many="1, " * 3000 + "1") + "\n")
    with pytest.raises(DataError, match=re.escape(message)):
        prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / "prepared", num_proc=1)
    assert not (tmp_path / "prepared").exists()


def test_a_prepare_of_a_long_record_interrupted_midway_resumes_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    path = tmp_path / "corpus.jsonl"
    _long_record_corpus(path, tinyshakespeare_text()[:100_000])
    add = shard_writer._ShardWriter.add
    calls = []

    def interrupted(self, unit, result):
        calls.append(unit)
        if len(calls) == 15:
            raise KeyboardInterrupt
        return add(self, unit, result)

    monkeypatch.setattr(shard_writer._ShardWriter, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / "resumed", shard_tokens=2000, num_proc=1)
    assert calls[-1].kind == "record" and calls[-1].continues
    assert (tmp_path / "resumed" / STATE_FILE).is_file()
    monkeypatch.setattr(shard_writer._ShardWriter, "add", add)
    prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / "resumed", shard_tokens=2000, num_proc=1)
    prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / "straight", shard_tokens=2000, num_proc=1)
    assert all_files(tmp_path / "resumed") == all_files(tmp_path / "straight")


# --- 12: a cut that changes the ids is said --------------------------------------------------------------------


def _bpe_across_spaces(folder: Path) -> Path:
    """A tokenizer.json whose BPE merges run across spaces (no pre-tokenizer), as SentencePiece's may."""
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.train_from_iterator([tinyshakespeare_text()[:20000]], trainers.BpeTrainer(vocab_size=300))
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def test_a_long_text_cut_for_a_tokenizer_whose_ids_change_at_a_cut_is_warned_about(tmp_path, monkeypatch):
    monkeypatch.setattr(document_sources, "UNIT_BYTES", 4096)
    from cleangpt_core.cli.tokenizer_option import tokenizer_from_argument

    path = tmp_path / "long.txt"
    path.write_text(tinyshakespeare_text()[:20000], encoding="utf-8")
    across = tokenizer_from_argument(str(_bpe_across_spaces(tmp_path / "bpe")), ())
    with pytest.warns(RuntimeWarning, match="gives pieces of a text other ids than the whole text"):
        prepare_data(DocumentSource.from_argument(path), across, tmp_path / "across", num_proc=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # GPT-2 tokenizes the pieces as the whole: no warning
        prepare_data(DocumentSource.from_argument(path), gpt2(), tmp_path / "gpt2", num_proc=1)


# --- 9: a full disk while the Rust tokenizer writer saves ----------------------------------------------------------

FULL_DISK_CLI = textwrap.dedent(
    """
    import resource, signal, sys
    from cleangpt_core.cli.main import main

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write then fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    sys.argv = ["cleangpt", "prepare-data", *sys.argv[1:]]
    main()
    """
)


def test_a_full_disk_while_the_rust_tokenizer_writer_saves_is_one_line(tmp_path):
    folder = _bpe_across_spaces(tmp_path / "bpe")
    assert (folder / "tokenizer.json").stat().st_size > 4096  # the file that meets the limit
    corpus = write_jsonl(tmp_path / "corpus.jsonl", 20)
    failed = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CLI, str(corpus), "--tokenizer", str(folder), "--out", str(tmp_path / "out"),
         "--num-proc", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert failed.returncode == 1
    # the Rust writer's bare `Exception: File too large (os error 27)` is the OSError it is, handled as one
    assert "File too large" in failed.stderr and "unexpected" not in failed.stderr, failed.stderr
    # one line of error (this tokenizer, declaring no end-of-text token, is also warned about on a line of its own)
    assert [line for line in failed.stderr.splitlines() if not line.startswith("warning:")] == [
        failed.stderr.strip().splitlines()[-1]
    ], failed.stderr
