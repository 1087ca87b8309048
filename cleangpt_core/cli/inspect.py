"""`cleangpt inspect RUN --prompt TEXT --out DIR`: per-token loss, the logit lens and attention maps (PNG, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("inspect")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--prompt", "-p", required=True, help="Text to look at (at most the model's block_size tokens).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), help="Folder for the PNGs and JSON.")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Alternatives per token.")
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON on stdout (for scripts).")
@click.option("--device", default="cpu", show_default=True, help="torch device to run on (cpu, cuda, mps, auto).")
def inspect(run: Path, prompt: str, out: Path | None, top_k: int, as_json: bool, device: str) -> None:
    """Show what the model in RUN (a checkpoint or run directory) makes of PROMPT.

    Writes DIR/inspection.json and pictures of it: tokens.png (each token's loss, coloured by its probability),
    logit_lens.png and attention_<part>.png (each head's weights); spaces show as '␣', line breaks as '⏎'.
    With --json alone, prints the JSON and writes nothing. Its keys:

    \b
    text, mean_loss    the prompt, and its tokens' mean loss in nats (the first token has none)
    tokens             per token: id, text, logprob and loss given the tokens before it, top alternatives
    next               the most likely tokens after the prompt
    logit_lens         per layer (embeddings, h.0, ...): its loss and top guess per position, read through
                       the final norm and head
    attention          per attention part (h.0.attn, ...): weights [head][query][key]
    without_attention  attention parts that report no weights: they do not attend through layout.attend
                       (a plugin part computing its own scores), so no map is drawn for them
    """
    if out is None and not as_json:
        raise click.UsageError("give --out DIR for the PNGs and JSON, or --json to print the JSON")
    if out is not None and out.exists() and any(out.iterdir()):
        raise click.BadParameter(f"{str(out)!r} is not empty: give a new or empty folder", param_hint="--out")
    from cleangpt_core.distributed.devices import choose_device
    from cleangpt_core.inspection import inspect_text
    from cleangpt_core.inspection.plots import write_plots
    from cleangpt_core.model.serialization import load_trained_model

    torch_device = choose_device(device)
    model, tokenizer, _ = load_trained_model(run, map_location=torch_device)
    inspection = inspect_text(model, tokenizer, prompt, top_k=top_k)
    text = json.dumps(inspection, ensure_ascii=False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "inspection.json").write_text(text + "\n", encoding="utf-8")
        pictures = write_plots(inspection, out)
        if not as_json:
            click.echo(f"mean loss {inspection['mean_loss']} over {len(inspection['tokens'])} tokens")
            for path in [out / "inspection.json", *pictures]:
                click.echo(f"wrote {path}")
    if as_json:
        click.echo(text)
