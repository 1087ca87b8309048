"""`python-stdlib`: the running Python's standard-library sources as a built-in corpus, for train, prepare-data
and compare, with a fingerprint that names the Python version.

Most tests read a small standard library made in tmp_path, given as this Python's by replacing the one function
that says where the standard library is (`python_stdlib.stdlib_root`); the slow ones read the real one.
"""

from __future__ import annotations

import json
import math
import platform
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_runs import TINY, set_options

from cleangpt_core.cli.main import cli
from cleangpt_core.data import python_stdlib
from cleangpt_core.data.loading import load_corpus_tokens, load_text_documents
from cleangpt_core.data.prepared_data import PreparedCorpus
from cleangpt_core.data.python_stdlib import corpus_files, stdlib_fingerprint
from cleangpt_core.data.token_cache import tokenize_documents
from cleangpt_core.tokenizers import create_tokenizer, from_pretrained

GPT2 = str(Path(__file__).parent / "fixtures" / "gpt2")
CODE = 'def {name}(path):\n    """Return the {name} of path."""\n    return path.strip() or None\n\n'
# the corpus, in sorted relative-path order; the blank __init__.py is a file of it but no document
SOURCES = {
    "abc.py": CODE.format(name="abstract") * 8,
    "email/__init__.py": "",
    "email/parser.py": CODE.format(name="parse") * 8,
    "json/__init__.py": CODE.format(name="dumps") * 8,
    "json/decoder.py": CODE.format(name="decode") * 8,
    "os.py": CODE.format(name="getcwd") * 8,
    # the validation file (the tail tenth), with characters no training file has, as the real zoneinfo has
    "zipfile.py": "# ├── archive\n# └── member ─ name\n" + CODE.format(name="namelist") * 8,
}
LEFT_OUT = {
    "site-packages/numpy/__init__.py": "third-party code",
    "dist-packages/apt/__init__.py": "a distribution's packages",
    "test/test_os.py": "import unittest\n",
    "idlelib/idle_test/test_run.py": "import unittest\n",
    "lib2to3/tests/data/bom.py": "\ufeffprint('bom')\n",
    "_sysconfigdata__linux_x86_64-linux-gnu.py": "build_time_vars = {'prefix': '/home/me/python'}\n",
    "config-3.11-x86_64-linux-gnu/python-config.py": "prefix = '/home/me/python'\n",
    "LICENSE.txt": "not Python\n",
}


def make_stdlib(root, order_seed=0):
    """A standard-library folder at `root`, its files written in a shuffled order."""
    files = [*SOURCES.items(), *LEFT_OUT.items()]
    random.Random(order_seed).shuffle(files)
    for relative, text in files:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "os.cpython-311.pyc").write_bytes(b"\x00compiled")
    return root


@pytest.fixture
def stdlib(tmp_path, monkeypatch):
    """A small standard library, given as this Python's, and a token cache of the test's own."""
    root = make_stdlib(tmp_path / "lib" / "python3.11")
    monkeypatch.setattr(python_stdlib, "stdlib_root", lambda: root)
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))
    return root


def relative(files, root):
    return [path.relative_to(root).as_posix() for path in files]


# --- the files and the fingerprint ------------------------------------------------------------------------------


def test_the_corpus_is_the_sources_in_sorted_relative_path_order_without_tests_third_party_or_build_records(stdlib):
    assert relative(corpus_files(), stdlib) == list(SOURCES)


def test_the_file_list_does_not_depend_on_the_order_the_files_were_written(stdlib, tmp_path):
    other = make_stdlib(tmp_path / "other", order_seed=1)
    assert relative(corpus_files(other), other) == relative(corpus_files(stdlib), stdlib)


def test_the_fingerprint_names_the_python_version(stdlib, monkeypatch):
    fingerprint = stdlib_fingerprint()
    version, digest = fingerprint.removeprefix("python-stdlib-").rsplit("-", 1)
    assert version == platform.python_version() and len(digest) == 12 and int(digest, 16) >= 0
    monkeypatch.setattr(platform, "python_version", lambda: "3.12.1")
    assert stdlib_fingerprint() == f"python-stdlib-3.12.1-{digest}"


def test_the_fingerprint_changes_with_the_file_set_and_sizes_but_not_with_left_out_files(stdlib):
    first = stdlib_fingerprint()
    (stdlib / "test" / "test_json.py").write_text("import unittest\n", encoding="utf-8")
    (stdlib / "site-packages" / "extra.py").write_text("x = 1\n", encoding="utf-8")
    assert stdlib_fingerprint() == first
    (stdlib / "json" / "encoder.py").write_text(CODE.format(name="encode"), encoding="utf-8")
    added = stdlib_fingerprint()
    assert added != first
    (stdlib / "os.py").write_text(SOURCES["os.py"] + "\n", encoding="utf-8")
    assert stdlib_fingerprint() not in (first, added)


def test_an_empty_standard_library_is_one_clear_error(tmp_path, monkeypatch):
    from cleangpt_core.errors import DataError

    (tmp_path / "lib").mkdir()
    monkeypatch.setattr(python_stdlib, "stdlib_root", lambda: tmp_path / "lib")
    with pytest.raises(DataError, match="holds no .py files; use another dataset"):
        corpus_files()


# --- the splits and the vocabulary --------------------------------------------------------------------------------


def test_the_validation_split_is_the_last_tenth_of_the_files_every_time(stdlib):
    documents = [text for text in SOURCES.values() if text.strip()]
    train = load_text_documents("python-stdlib", split="train")
    validation = load_text_documents("Python-Stdlib", split="validation")
    assert (train, validation) == (documents[:-1], documents[-1:])
    assert load_text_documents("python-stdlib", split="validation") == validation


def test_the_character_vocabulary_covers_validation_characters_no_training_file_has(stdlib):
    tokenizer = create_tokenizer("character")
    validation = load_corpus_tokens("python-stdlib", tokenizer, split="validation")
    assert {"├", "└", "─"} <= set(tokenizer.get_vocab())
    expected = tokenizer.encode_corpus(SOURCES["zipfile.py"])
    assert np.array_equal(np.asarray(validation), expected)


# --- the commands ---------------------------------------------------------------------------------------------------


def test_train_on_it_from_the_command_line_records_the_fingerprint_and_resumes_on_the_same_python(stdlib, tmp_path):
    run = tmp_path / "run"
    options = set_options(*TINY, "data.dataset=python-stdlib", "trainer.max_steps=2", f"output.dir={run}")
    result = CliRunner().invoke(cli, ["train", *options])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "data.json").read_text())
    assert record == {"dataset": "python-stdlib", "fingerprint": stdlib_fingerprint()}
    resumed = CliRunner().invoke(cli, ["train", "--resume", str(run), "--set", "trainer.max_steps=4"])
    assert resumed.exit_code == 0, resumed.output
    assert (run / "latest").read_text().strip() == "checkpoints/step-00000004"


def test_resuming_a_run_on_the_standard_library_of_another_python_is_one_line(stdlib, tmp_path, monkeypatch):
    run = tmp_path / "run"
    options = set_options(*TINY, "data.dataset=python-stdlib", "trainer.max_steps=2", f"output.dir={run}")
    assert CliRunner().invoke(cli, ["train", *options]).exit_code == 0
    trained_on = stdlib_fingerprint()
    checkpoints = sorted((run / "checkpoints").iterdir())
    monkeypatch.setattr(platform, "python_version", lambda: "3.12.1")
    resumed = CliRunner().invoke(cli, ["train", "--resume", str(run), "--set", "trainer.max_steps=4"])
    assert resumed.exit_code == 1 and "Traceback" not in resumed.output
    [line] = resumed.output.strip().splitlines()
    assert "is not the data this run started on" in line
    assert trained_on in line and stdlib_fingerprint() in line and "python-stdlib-3.12.1-" in line
    assert sorted((run / "checkpoints").iterdir()) == checkpoints


@pytest.mark.parametrize("tokenizer", [{"name": "character"}, {"name": "gpt2", "pretrained_model_name_or_path": GPT2}])
def test_prepare_data_on_it_gives_the_stream_and_vocabulary_of_the_in_memory_loader(stdlib, tmp_path, tokenizer):
    out = tmp_path / "prepared"
    options = [part for key, value in tokenizer.items() if key != "name" for part in ("-o", f"{key}={value}")]
    command = ["prepare-data", "python-stdlib", "--tokenizer", tokenizer["name"], *options, "--out", str(out)]
    result = CliRunner().invoke(cli, [*command, "--num-proc", "1"])
    assert result.exit_code == 0, result.output
    index = json.loads((out / "index.json").read_text())
    assert index["settings"]["source"] == stdlib_fingerprint() and index["documents"] == 6
    in_memory = create_tokenizer(**tokenizer)
    train = load_corpus_tokens("python-stdlib", in_memory, split="train")
    assert from_pretrained(out / "tokenizer").get_vocab() == in_memory.get_vocab()
    corpus = PreparedCorpus(out)
    assert np.array_equal(corpus.split("train", 0.1)[:], train)
    assert np.array_equal(corpus.split("validation", 0.1)[:], in_memory.encode_corpus(SOURCES["zipfile.py"]))
    stream = tokenize_documents([text for text in SOURCES.values() if text.strip()], in_memory)
    assert np.array_equal(corpus.tokens()[:], stream)


def test_prepare_data_refuses_a_folder_prepared_from_another_pythons_standard_library(stdlib, tmp_path, monkeypatch):
    out = tmp_path / "prepared"
    command = ["prepare-data", "python-stdlib", "--tokenizer", "character", "--out", str(out), "--num-proc", "1"]
    assert CliRunner().invoke(cli, command).exit_code == 0
    before, prepared_from = (out / "index.json").read_bytes(), stdlib_fingerprint()
    monkeypatch.setattr(platform, "python_version", lambda: "3.12.1")
    again = CliRunner().invoke(cli, command)
    assert again.exit_code == 1 and len(again.output.strip().splitlines()) == 1, again.output
    assert f"already holds data prepared from {prepared_from!r}" in again.output
    assert (out / "index.json").read_bytes() == before


@pytest.mark.slow
def test_compare_trains_on_it(stdlib, tmp_path):
    out = tmp_path / "compare"
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "2", "--out", str(out)]
    result = CliRunner().invoke(cli, [*arguments, *set_options(*TINY, "data.dataset=python-stdlib")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "python-stdlib"
    assert [math.isfinite(run["val_loss"]) for run in report["runs"]] == [True, True]


# --- the real standard library ---------------------------------------------------------------------------------------


def test_this_pythons_corpus_is_utf8_sources_outside_test_suites_and_site_packages():
    files = corpus_files()
    root = python_stdlib.stdlib_root()
    assert files and all(path.suffix == ".py" for path in files)
    folders = {part for path in files for part in path.relative_to(root).parts[:-1]}
    assert not folders & {"site-packages", "dist-packages", "test", "tests", "idle_test"}
    for path in files:
        path.read_bytes().decode("utf-8")  # PEP 8: the standard library is UTF-8; a file that is not fails here


@pytest.mark.slow
def test_train_a_character_model_on_this_pythons_standard_library(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    options = [*TINY, "data.dataset=python-stdlib", "trainer.max_steps=2", "data.eval_tokens=2000"]
    result = CliRunner().invoke(cli, ["train", *set_options(*options, f"output.dir={run}")])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "data.json").read_text())["fingerprint"] == stdlib_fingerprint()
    assert math.isfinite(json.loads((run / "best").read_text())["val_loss"])


@pytest.mark.slow
def test_prepare_data_with_gpt2_on_this_pythons_standard_library_holds_out_the_in_memory_validation_split(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "prepared"
    command = ["prepare-data", "python-stdlib", "--tokenizer", "gpt2", "-o", f"pretrained_model_name_or_path={GPT2}"]
    result = CliRunner().invoke(cli, [*command, "--out", str(out), "--num-proc", "2"])
    assert result.exit_code == 0, result.output
    corpus = PreparedCorpus(out)
    assert corpus.num_documents == len(load_text_documents("python-stdlib", split="train")) + len(
        load_text_documents("python-stdlib", split="validation")
    )
    in_memory = create_tokenizer("gpt2", pretrained_model_name_or_path=GPT2)
    validation = load_corpus_tokens("python-stdlib", in_memory, split="validation")
    assert np.array_equal(corpus.split("validation", 0.1)[:], validation)
