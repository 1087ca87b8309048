"""``cleangpt export`` / ``import``: folders that transformers' Auto classes load, and back, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from cleangpt_core.cli.main import cli
from cleangpt_core.config import GPTConfig
from cleangpt_core.huggingface import export_hf, import_hf
from cleangpt_core.model import get_model, load_model, save_model
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import create_tokenizer

GPT2_FILES = Path(__file__).parent / "fixtures" / "gpt2"
PROMPTS = ("ROMEO:", "\n", "What light through yonder")


def invoke(*arguments: object):
    return CliRunner().invoke(cli, [str(argument) for argument in arguments])


def tiny_checkpoint(directory: Path, model_type: str = "Vanilla", tokenizer=None, **fields) -> Path:
    """A checkpoint folder (model + tokenizer/) of a small random model."""
    tokenizer = tokenizer or create_tokenizer("character").fit("abcdefgh ROMEO:\n")
    config = GPTConfig(
        model_type=model_type, vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=24, **fields
    )
    torch.manual_seed(0)
    model = perturb_parameters(get_model(model_type, config=config), seed=1)
    save_model(model, directory)
    tokenizer.save_pretrained(directory / "tokenizer")
    return directory


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """The default recipe (block_size 64), shrunk to seconds."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    settings = {
        "model.n_layer": 2,
        "model.n_embd": 32,
        "trainer.max_steps": 30,
        "schedule.warmup_steps": 2,
        "trainer.eval_interval": 30,
        "trainer.eval_max_batches": 2,
        "output.sample_tokens": 0,
        "output.dir": run_dir,
    }
    result = invoke("train", *[part for key, value in settings.items() for part in ("--set", f"{key}={value}")])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.mark.slow
def test_an_exported_trained_run_generates_greedily_in_transformers_as_cleangpt_generate_does(trained_run, tmp_path):
    out = tmp_path / "hf"
    assert invoke("export", trained_run, out).exit_code == 0
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "GPT2LMHeadModel"
    for prompt in PROMPTS:  # prompt and continuation fit the context: GPT-2 has no sliding window
        ours = invoke("generate", trained_run, "--prompt", prompt, "--sampler", "greedy", "-n", 36)
        assert ours.exit_code == 0, ours.output
        input_ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            theirs = model.generate(input_ids, max_new_tokens=36, do_sample=False)
        assert tokenizer.decode(theirs[0], skip_special_tokens=True) + "\n" == ours.output


@pytest.mark.slow
def test_export_then_import_gives_back_the_checkpoint_bit_for_bit(trained_run, tmp_path):
    export_hf(trained_run, tmp_path / "hf")
    result = invoke("import", tmp_path / "hf")  # OUT defaults to FOLDER-cleangpt
    assert result.exit_code == 0, result.output
    imported = tmp_path / "hf-cleangpt"
    original = load_model(trained_run)
    assert load_model(imported).config == original.config
    checkpoint = Path(trained_run) / (Path(trained_run) / "latest").read_text().strip()
    before, after = load_file(checkpoint / "model.safetensors"), load_file(imported / "model.safetensors")
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    generated = invoke("generate", imported, "--prompt", "ROMEO:", "--sampler", "greedy", "-n", 20)
    assert (
        generated.output
        == invoke("generate", trained_run, "--prompt", "ROMEO:", "--sampler", "greedy", "-n", 20).output
    )


def test_a_vanilla_without_biases_exports_with_zero_biases_and_imports_bit_for_bit(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", bias=False, dropout=0.1)
    export_hf(checkpoint, tmp_path / "hf")
    ours = load_model(checkpoint).eval()
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tokens = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits, ours(tokens)["logits"], atol=1e-5, rtol=1e-5)
    back = load_model(import_hf(tmp_path / "hf", tmp_path / "back"))
    assert back.config == ours.config  # bias=False and dropout=0.1 survive GPT-2's spelling
    for name, tensor in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_a_llama_exports_as_transformers_llama_and_imports_bit_for_bit(tie_embeddings, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", model_type="Llama", n_kv_head=1, tie_embeddings=tie_embeddings)
    assert invoke("export", checkpoint, tmp_path / "hf").exit_code == 0
    ours = load_model(checkpoint).eval()
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(theirs).__name__ == "LlamaForCausalLM"
    tokens = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits, ours(tokens)["logits"], atol=1e-5, rtol=1e-5)
        theirs.generation_config.eos_token_id = None  # all 12 tokens, as ours without an eos_token_id
        greedy = theirs.generate(tokens[:1, :4], max_new_tokens=12, do_sample=False)
    assert torch.equal(ours.generate(tokens[:1, :4], 12, temperature=0.0), greedy)
    back = load_model(import_hf(tmp_path / "hf", tmp_path / "back"))
    assert back.config == ours.config
    for name, tensor in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


@pytest.mark.parametrize("kind", ["character", "gpt2", "byte"])
def test_every_built_in_tokenizer_encodes_and_decodes_the_same_through_auto_tokenizer(kind, tmp_path):
    texts = ["ROMEO: But soft!\n", "  two  spaces", "<eos> is text here"]
    if kind == "character":
        tokenizer = create_tokenizer("character").fit("".join(texts))
    elif kind == "gpt2":
        tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(GPT2_FILES))
        texts.append("naïve café — ünïcödé")
    else:
        tokenizer = create_tokenizer("byte")
        texts.append("naïve café — ünïcödé 😀")
    export_hf(tiny_checkpoint(tmp_path / "ckpt", tokenizer=tokenizer), tmp_path / "hf")
    theirs = AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in texts:
        ids = tokenizer.encode(text)
        assert theirs.encode(text) == ids, text
        assert theirs.decode(ids) == tokenizer.decode(ids), text
    assert theirs.eos_token_id == tokenizer.eos_token_id
    assert theirs.model_max_length == 24


def test_an_architecture_without_a_transformers_family_is_refused_with_one_line(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", model_type="SASP")
    result = invoke("export", checkpoint, tmp_path / "hf")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: architecture 'SASP' has no Hugging Face transformers counterpart, so it cannot be exported; "
        "exportable architectures: Vanilla (-> gpt2), Llama (-> llama)"
    ]
    assert not (tmp_path / "hf").exists()


def test_export_refuses_a_folder_that_is_not_empty_and_leaves_it_alone(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "notes.txt").write_text("mine")
    result = invoke("export", checkpoint, tmp_path / "hf")
    assert result.exit_code == 1
    assert "already exists and is not empty" in result.output
    assert [path.name for path in (tmp_path / "hf").iterdir()] == ["notes.txt"]


def test_import_refuses_a_folder_of_another_model_family(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "bert"}')
    result = invoke("import", tmp_path / "hf", tmp_path / "out")
    assert result.exit_code == 1
    assert "transformers model_type 'bert' cannot be imported; importable: gpt2, llama, qwen2, mistral" in result.output
    assert not (tmp_path / "out").exists()
