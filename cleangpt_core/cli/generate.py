"""`cleangpt generate CHECKPOINT --prompt ...`: sample from a trained model, streaming to the terminal."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("generate")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prompt", "-p", required=True, help="Text to continue.")
@click.option("--sampler", default=None, help="Registered sampler name (default: combined temperature/top-k/top-p).")
@click.option("--max-new-tokens", "-n", default=200, show_default=True, type=click.IntRange(min=0))
@click.option("--temperature", "-t", default=0.8, show_default=True, type=click.FloatRange(min=0.0))
@click.option("--top-k", default=None, type=click.IntRange(min=1), help="Keep the k most likely tokens.")
@click.option("--top-p", default=None, type=click.FloatRange(min=0.0, max=1.0, min_open=True), help="Nucleus mass.")
@click.option("--seed", default=None, type=int, help="Seed for reproducible sampling.")
@click.option("--device", default="cpu", show_default=True, help="torch device to run on (cpu, cuda, mps).")
def generate(
    checkpoint: Path,
    prompt: str,
    sampler: str | None,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    device: str,
) -> None:
    """Continue PROMPT with the model in CHECKPOINT (a checkpoint or run directory).

    The tokenizer is read from CHECKPOINT/tokenizer; text is printed as it is generated.
    """
    import torch  # imported here so that `cleangpt --help` stays fast

    from cleangpt_core.inference.generation import run_generation
    from cleangpt_core.model.serialization import load_trained_model

    model, tokenizer, _ = load_trained_model(checkpoint, map_location=device)
    model.eval()
    tokenizer.encode(prompt)  # fail on an unencodable prompt before printing anything
    click.echo(prompt, nl=False)
    run_generation(
        model,
        tokenizer,
        prompt,
        device=torch.device(device),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        sampler=sampler,
        seed=seed,
        stream=lambda piece: click.echo(piece, nl=False),
    )
    click.echo()
