"""Fine-tuning from imported weights: a Hugging Face folder whose tokenizer is a tokenizer.json imports, a run
starts from it with `--init-from` at exactly the imported model's loss, and it exports back to transformers.

Slow (about 30 s on a quiet 2-core machine): a tokenizer is trained and a run trains and samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import cleangpt_core
from cleangpt_core.cli.main import cli
from cleangpt_core.config import load_experiment_config
from cleangpt_core.experiments.training_run import initial_weights, prepare_run
from cleangpt_core.model.serialization import load_trained_model
from cleangpt_core.trainers.metrics import read_metrics

SHAKESPEARE = Path(cleangpt_core.__file__).parent / "data" / "tinyshakespeare.txt"
EOS = "<|endoftext|>"
CONTEXT = 32
pytestmark = pytest.mark.slow


def invoke(*arguments: str | Path):
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory) -> Path:
    """A tiny random Llama saved by transformers, with a byte-level BPE tokenizer.json of its own."""
    folder = tmp_path_factory.mktemp("hf") / "tiny-llama"
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator([SHAKESPEARE.read_text(encoding="utf-8")[:200_000]], trainer)
    PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    assert not (folder / "vocab.json").exists() and (folder / "tokenizer.json").is_file()
    return folder


@pytest.fixture(scope="module")
def imported(hf_llama, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "checkpoint"
    invoke("import", hf_llama, out)
    return out


def test_a_folder_whose_tokenizer_is_a_tokenizer_json_imports(hf_llama, imported):
    model, tokenizer, _ = load_trained_model(imported)
    text = "ROMEO: Is the day so young?"
    theirs = AutoTokenizer.from_pretrained(str(hf_llama))
    assert tokenizer.tokenizer_type == "hf" and tokenizer.encode(text) == theirs.encode(text)
    assert tokenizer.eos_token == EOS
    ids = torch.tensor([tokenizer.encode(text)])
    expected = LlamaForCausalLM.from_pretrained(str(hf_llama)).eval()(ids).logits
    torch.testing.assert_close(model.eval()(ids)["logits"], expected, rtol=1e-4, atol=1e-5)


def overrides(run_dir: Path) -> list[str]:
    return [
        "trainer.max_steps=3",
        "trainer.log_interval=1",
        "trainer.eval_interval=null",
        "trainer.checkpoint_interval=null",
        "trainer.mixed_precision=no",
        "schedule.warmup_steps=1",
        "data.batch_size=4",
        "data.eval_tokens=2000",
        "output.sample_tokens=5",
        f"output.dir={run_dir}",
    ]


@pytest.fixture(scope="module")
def fine_tuned(hf_llama, imported, tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("fine-tuned") / "run"
    arguments = [part for item in overrides(run_dir) for part in ("--set", item)]
    return run_dir, invoke("train", "--init-from", imported, *arguments).output


def test_init_from_an_imported_llama_starts_at_the_imported_models_loss(hf_llama, imported, fine_tuned):
    run_dir, output = fine_tuned
    assert f"starting from the weights of {imported}" in output and "3 steps" in output
    first_loss = next(line["loss"] for line in read_metrics(run_dir / "metrics.jsonl") if line.get("step") == 1)
    # the same run, prepared again: its first batch, scored by transformers' own model
    config, model, tokenizer = initial_weights(imported, load_experiment_config(None, overrides(run_dir)))
    run = prepare_run(config, tokenizer=tokenizer, initial_model=model)
    batch = next(iter(run.trainer.batches.epoch(0)))
    hf_model = LlamaForCausalLM.from_pretrained(str(hf_llama)).eval()
    with torch.no_grad():
        expected = hf_model(input_ids=batch["labels"], labels=batch["labels"]).loss  # the window and its next token
    assert first_loss == pytest.approx(expected.item(), rel=1e-5)
    saved = json.loads(next(run_dir.glob("checkpoints/*/experiment.json")).read_text())
    assert saved["init_from"] == str(imported) and saved["model"]["model_type"] == "Llama"
    assert saved["model"]["attention"]["n_kv_head"] == 2  # each part's options in its own section


def test_init_from_refuses_model_changes_the_weights_cannot_take(imported, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--init-from", str(imported), "--set", "model.n_layer=8"])
    assert result.exit_code == 2 and "only model.dropout may be set" in result.output


def test_a_run_with_the_hf_tokenizer_exports_to_transformers(fine_tuned, tmp_path):
    run_dir, _ = fine_tuned
    out = tmp_path / "exported"
    invoke("export", run_dir, out)
    model, tokenizer, _ = load_trained_model(run_dir)
    theirs_tokenizer = AutoTokenizer.from_pretrained(str(out))
    text = "JULIET: Wherefore art thou?" + EOS
    assert theirs_tokenizer.encode(text) == tokenizer.encode(text)
    assert theirs_tokenizer.eos_token == EOS and theirs_tokenizer.decode(tokenizer.encode(text)) == text
    theirs = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, model.eval()(ids)["logits"], rtol=1e-4, atol=1e-5)
