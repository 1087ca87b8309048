"""The `hf` tokenizer: any Hugging Face tokenizer.json, batch-encoded by the Rust backend, saved like the built-ins."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from cleangpt_core.cli.main import cli
from cleangpt_core.config.experiment import load_experiment_config
from cleangpt_core.data.prepared_data import PreparedCorpus
from cleangpt_core.errors import TokenizerError, TokenizerLoadError
from cleangpt_core.experiments.training_run import prepare_run
from cleangpt_core.testing.tokenizer import check_tokenizer_contract
from cleangpt_core.tokenizers import HFTokenizer, create_tokenizer, from_pretrained
from cleangpt_core.utils import tinyshakespeare_text

TEXT = tinyshakespeare_text()[:100_000]


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    """A byte-level BPE tokenizer.json trained here on Tiny Shakespeare, with a tokenizer_config.json."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|end|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(TEXT.splitlines(), trainer=trainer)
    folder = tmp_path_factory.mktemp("bpe")
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<|end|>"}}))
    return folder


def test_a_tokenizer_json_made_here_round_trips_text(bpe_folder):
    tokenizer = create_tokenizer("hf", name_or_path=str(bpe_folder))
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.vocab_size == 600
    assert tokenizer.eos_token == "<|end|>" and tokenizer.eos_token_id == 0  # from tokenizer_config.json
    for text in ("First Citizen:\nBefore we proceed any further, hear me speak.", "naïve café — ünïcode ✓ 🙂"):
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert np.array_equal(tokenizer.encode_corpus(text), ids)
    batch = tokenizer.encode_corpus_batch(["to be", "or not", ""])
    assert [list(ids) for ids in batch] == [tokenizer.encode("to be"), tokenizer.encode("or not"), []]
    assert tokenizer.corpus_dtype == np.uint16


def test_it_keeps_the_tokenizer_contract(bpe_folder):
    samples = ["First Citizen:\nBefore we proceed", "naïve café — ünïcode ✓ 🙂", "to be, or not to be"]
    check_tokenizer_contract(create_tokenizer("hf", name_or_path=str(bpe_folder), pad_token="<|pad|>"), samples)


def test_it_saves_and_reloads_offline_to_the_same_ids(bpe_folder, tmp_path):
    tokenizer = create_tokenizer("hf", name_or_path=str(bpe_folder), pad_token="<|pad|>")
    tokenizer.save_pretrained(tmp_path / "saved")
    again = from_pretrained(tmp_path / "saved")
    assert isinstance(again, HFTokenizer) and again.pad_token_id == tokenizer.pad_token_id == 1
    assert again.encode(TEXT[:5000]) == tokenizer.encode(TEXT[:5000])
    assert again.fingerprint() == tokenizer.fingerprint()
    padded = tokenizer(["to be", "or not to be"], padding=True, return_tensors="pt")
    assert padded["input_ids"].shape[0] == 2 and padded["attention_mask"][0, -1] == 0


def test_unknown_ids_tokens_and_folders_are_clear_errors(bpe_folder, tmp_path):
    tokenizer = create_tokenizer("hf", name_or_path=str(bpe_folder))
    with pytest.raises(TokenizerError, match="token id 600 is outside the vocabulary"):
        tokenizer.decode([600])
    with pytest.raises(TokenizerLoadError, match="eos_token '<nope>' is not in the vocabulary"):
        create_tokenizer("hf", name_or_path=str(bpe_folder), eos_token="<nope>")
    with pytest.raises(TokenizerLoadError, match="does not exist"):
        create_tokenizer("hf", name_or_path=str(tmp_path / "missing"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerLoadError, match="is not a valid Hugging Face tokenizer file"):
        create_tokenizer("hf", name_or_path=str(tmp_path / "broken"))


def test_it_trains_a_few_steps_and_the_run_keeps_it(bpe_folder, tmp_path):
    (tmp_path / "play.txt").write_text(TEXT[:30_000])
    overrides = [
        f"data.dataset={tmp_path / 'play.txt'}",
        "tokenizer.name=hf",
        f"tokenizer.name_or_path={bpe_folder}",
        "model.n_layer=1",
        "model.n_head=2",
        "model.n_embd=32",
        "model.block_size=32",
        "data.batch_size=4",
        "trainer.max_steps=3",
        "schedule.warmup_steps=1",
        "trainer.eval_interval=3",
        "trainer.eval_max_batches=1",
        "trainer.checkpoint_interval=3",
        "trainer.progress_bar=false",
        f"output.dir={tmp_path / 'run'}",
    ]
    config = load_experiment_config(None, overrides)
    run = prepare_run(config)
    assert run.config.model.vocab_size == 600
    stats = run.trainer.train()
    assert stats["steps"] == 3 and np.isfinite(stats["train_loss"])
    saved = from_pretrained(tmp_path / "run" / "checkpoints" / "step-00000003" / "tokenizer")
    assert isinstance(saved, HFTokenizer) and saved.fingerprint() == run.tokenizer.fingerprint()


def test_prepare_data_takes_a_tokenizer_json_folder_and_training_accepts_the_same_tokenizer(bpe_folder, tmp_path):
    out = tmp_path / "prepared"
    result = CliRunner().invoke(
        cli, ["prepare-data", "tinyshakespeare", "--tokenizer", str(bpe_folder), "--out", str(out), "--num-proc", "1"]
    )
    assert result.exit_code == 0, result.output
    corpus = PreparedCorpus(out)
    assert corpus.index["tokenizer"]["type"] == "hf" and corpus.num_documents == 1
    tokenizer = create_tokenizer("hf", name_or_path=str(bpe_folder))
    corpus.check_tokenizer(tokenizer)  # the same tokenizer.json: accepted
    assert np.array_equal(np.asarray(corpus.tokens()), tokenizer.encode_corpus(tinyshakespeare_text()))
    assert isinstance(from_pretrained(out / "tokenizer"), HFTokenizer)
