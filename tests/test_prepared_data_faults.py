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
