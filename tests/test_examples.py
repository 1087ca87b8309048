"""The tutorial's end-to-end examples run as written (with `cleangpt_core.` in front), on small sizes.

Example 1 trains SASP with the character tokenizer; Example A2 runs the advanced trainer with a scheduler,
gradient accumulation and mixed precision, reading a local text file where the tutorial downloads wikitext.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cleangpt_core.utils import tinyshakespeare_text

GPT2_FILES = Path(__file__).parent / "fixtures" / "gpt2"


@pytest.mark.slow
def test_example_1_sasp_with_a_character_tokenizer():
    from cleangpt_core.config import GPTConfig
    from cleangpt_core.model import get_model
    from cleangpt_core.tokenizers import create_tokenizer
    from cleangpt_core.trainers import get_trainer
    from cleangpt_core.utils import prepare_causal_lm_dataset

    torch.manual_seed(0)
    # 1. Create tokenizer
    tokenizer = create_tokenizer("character")

    # 2. Prepare dataset (example using a list of texts)
    texts = ["Example text 1", "Example text 2", tinyshakespeare_text()[:6000]]
    dataloader = prepare_causal_lm_dataset(texts=texts, tokenizer=tokenizer, block_size=32, batch_size=16)

    # 3. Create model configuration
    config = GPTConfig(
        model_type="SASP", vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32
    )

    # 4. Initialize model
    model = get_model(config.model_type, config=config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)

    # 5. Setup optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    # 6. Create trainer and train
    trainer = get_trainer(
        trainer_type="simple",
        model=model,
        dataloader=dataloader,
        optimizer=optimizer,
        device=device,
        num_epochs=3,
        progress_bar=False,
    )
    stats = trainer.train()

    # 7. Generate text with the trained model
    from cleangpt_core.inference.generation import run_generation

    generated_ids, generated_text = run_generation(
        model=model, tokenizer=tokenizer, prompt_text="Example", device=device, max_new_tokens=20, temperature=0.7
    )
    assert type(model).__name__ == "SASPTransformerModel"
    assert stats["losses"][-1] < stats["losses"][0] - 0.5
    assert generated_text.startswith("Example") and len(generated_ids) == len("Example") + 20


@pytest.mark.slow
def test_example_a2_advanced_training_on_local_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the analyzer's plots are written to the working directory
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tinyshakespeare_text()[:20000], encoding="utf-8")

    from datasets import load_dataset

    from cleangpt_core.config import GPTConfig
    from cleangpt_core.model import get_model
    from cleangpt_core.tokenizers import create_tokenizer
    from cleangpt_core.trainers import get_trainer
    from cleangpt_core.utils import load_and_prepare_data

    torch.manual_seed(0)
    # 1. Load dataset (a local text file in place of the hub's wikitext)
    dataset = load_dataset("text", data_files=str(corpus), split="train", cache_dir=str(tmp_path / "hf"))
    texts = dataset["text"]

    # 2. Create and analyze tokenizer (GPT-2's vocabulary from a local copy in place of the hub)
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(GPT2_FILES))
    from cleangpt_core.utils.token_statistics import TokenUsageAnalyzer

    analyzer = TokenUsageAnalyzer(tokenizer)
    analyzer.analyze_texts(texts, max_samples=1000)
    analyzer.plot_coverage_curve()  # Visualize vocabulary coverage

    # 3. Prepare data
    dataloader, _ = load_and_prepare_data(
        dataset_name=str(corpus),
        tokenizer=tokenizer,
        max_samples=10000,
        max_seq_length=32,
        batch_size=4,
        cache_dir=tmp_path / "tokens",
    )

    # 4. Configure custom model (SASP with its own options in place of the tutorial's MyTransformer)
    config = GPTConfig(
        model_type="SASP",
        vocab_size=tokenizer.vocab_size,
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=32,
        use_v=True,
        use_proj=True,
    )

    # 5. Initialize model
    model = get_model(config.model_type, config=config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)

    # 6. Advanced training setup
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.999))

    from torch.optim.lr_scheduler import CosineAnnealingLR

    scheduler = CosineAnnealingLR(optimizer, T_max=1000)

    trainer = get_trainer(
        trainer_type="advanced",
        model=model,
        dataloader=dataloader,
        optimizer=optimizer,
        device=device,
        num_epochs=1,
        lr_scheduler=scheduler,
        gradient_accumulation_steps=4,
        mixed_precision=True,
        progress_bar=False,
    )

    # 7. Train and save model
    training_stats = trainer.train()

    # 8. Evaluate performance
    eval_dataloader, _ = load_and_prepare_data(
        dataset_name=str(corpus),
        tokenizer=tokenizer,
        max_samples=1000,
        max_seq_length=32,
        batch_size=16,
        split="validation",
        cache_dir=tmp_path / "tokens",
    )
    eval_stats = trainer.evaluate(eval_dataloader)
    print(f"Perplexity: {eval_stats['perplexity']:.2f}")

    # 9. Generate text with advanced sampling
    from cleangpt_core.inference.generation import run_generation

    generated_text = run_generation(
        model=model,
        tokenizer=tokenizer,
        prompt_text="In recent years, scientists have discovered",
        device=device,
        max_new_tokens=10,
        temperature=0.8,
        top_p=0.92,
    )[1]

    assert (tmp_path / "coverage_curve.png").is_file()
    assert training_stats["steps"] == math.ceil(len(dataloader) / 4)
    assert training_stats["losses"][-1] < training_stats["losses"][0]
    assert eval_stats["perplexity"] == pytest.approx(math.exp(eval_stats["loss"]))
    assert eval_stats["perplexity"] < tokenizer.vocab_size
    assert generated_text.startswith("In recent years, scientists have discovered")
