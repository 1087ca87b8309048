"""`cleangpt generate CHECKPOINT --prompt ...`: sample from a trained model, streaming to the terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import click

# The default sampler's temperature here: a little below 1, which reads better than the raw distribution.
DEFAULT_TEMPERATURE = 0.8


def _flag(option: str) -> str:
    """A sampling option as this command spells it: top_k -> --top-k."""
    return "--" + option.replace("_", "-")


@click.command("generate")
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--prompt", "-p", default=None, help="Text to continue; '-' (or leaving it out) reads it from standard input."
)
@click.option("--num-samples", "-k", default=1, show_default=True, type=click.IntRange(min=1), help="Samples to draw.")
@click.option(
    "--interactive", "-i", is_flag=True, help="Read one prompt per line and continue each, until an empty line or EOF."
)
@click.option(
    "--sampler", default=None, help="Registered sampler name (default: combined temperature/top-k/top-p/min-p)."
)
@click.option("--max-new-tokens", "-n", default=200, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--temperature",
    "-t",
    default=None,
    type=float,
    help=f"Divide the logits by this; 0 is greedy (default: {DEFAULT_TEMPERATURE} with the default sampler).",
)
@click.option("--top-k", default=None, type=int, help="Keep the k most likely tokens.")
@click.option("--top-p", default=None, type=float, help="Keep the smallest set of tokens whose probability reaches p.")
@click.option("--min-p", default=None, type=float, help="Keep tokens at least min-p times as likely as the best one.")
@click.option("--seed", default=None, type=int, help="Seed for reproducible sampling.")
@click.option(
    "--device", default="cpu", show_default=True, help="torch device to run on (cpu, cuda, cuda:1, mps, auto)."
)
def generate(
    checkpoint: Path,
    prompt: str | None,
    num_samples: int,
    interactive: bool,
    sampler: str | None,
    max_new_tokens: int,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    min_p: float | None,
    seed: int | None,
    device: str,
) -> None:
    """Continue PROMPT with the model in CHECKPOINT (a checkpoint or run directory).

    The tokenizer is read from CHECKPOINT/tokenizer; text is printed as it is generated. A sampler takes the
    options its schema has (`cleangpt show-config NAME`); giving one it does not take is an error. Several
    samples (--num-samples) are separated by a line of dashes; with --seed S, sample i is seeded S + i.
    """
    from cleangpt_core.distributed.devices import choose_device
    from cleangpt_core.inference.decoding import DEFAULT_SAMPLER, bind_sampler
    from cleangpt_core.inference.generation import run_generation
    from cleangpt_core.model.serialization import load_trained_model

    if sampler is None and temperature is None:
        temperature = DEFAULT_TEMPERATURE
    # Everything that can be checked is checked before the prompt is printed.
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p}
    next_token = bind_sampler(sampler or DEFAULT_SAMPLER, options, spell=_flag)
    torch_device = choose_device(device)
    model, tokenizer, _ = load_trained_model(checkpoint, map_location=torch_device)
    model.eval()

    stdin = sys.stdin
    if interactive and prompt is not None:
        raise click.UsageError("--interactive reads its prompts from standard input; leave out --prompt")
    if not interactive and prompt in (None, "-"):
        if stdin.isatty():
            raise click.UsageError("give --prompt TEXT, pipe the prompt on standard input, or use --interactive")
        prompt = stdin.read().removesuffix("\n")  # the newline `echo` ends a line with is no part of it

    def sample(text: str, seed: int | None) -> None:
        printed = False

        def stream(piece: str) -> None:
            # The prompt goes out with the first new text, so an error before any token prints nothing.
            nonlocal printed
            click.echo(piece if printed else text + piece, nl=False)
            printed = True

        run_generation(
            model,
            tokenizer,
            text,
            device=torch_device,
            max_new_tokens=max_new_tokens,
            sampler=next_token,
            seed=seed,
            stream=stream,
        )
        if not printed:  # nothing printable was generated: the prompt alone
            click.echo(text, nl=False)
        click.echo()

    def samples(text: str) -> None:
        for index in range(num_samples):
            if index:
                click.echo("-" * 40)
            sample(text, None if seed is None else seed + index)

    if not interactive:
        samples(prompt)
        return
    while True:
        click.echo("> ", nl=False, err=True)
        line = stdin.readline()
        if not line.strip():
            return
        samples(line.rstrip("\n"))
