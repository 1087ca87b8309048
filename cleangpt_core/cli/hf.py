"""``cleangpt export RUN OUT`` and ``cleangpt import DIR OUT``: Hugging Face folders out and in."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
def export(run: Path, out: Path) -> None:
    """Write RUN's model (a checkpoint or run directory) and tokenizer to OUT as a Hugging Face folder.

    transformers loads it with AutoModelForCausalLM.from_pretrained(OUT) and AutoTokenizer.from_pretrained(OUT),
    with no custom code. Vanilla becomes GPT-2; an architecture without a transformers counterpart is refused.
    """
    import json

    from cleangpt_core.huggingface.folder import CONFIG_FILE, export_hf

    click.echo(f"exported {run} to {export_hf(run, out)}")
    exported = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8"))
    if exported.get("model_type") == "gpt2":  # learned positions: a table of n_positions rows, nothing past it
        click.echo(
            f"note: its positions are learned for {exported['n_positions']} tokens; transformers' generate fails "
            "past them, where `cleangpt generate` crops the context: keep prompt + new tokens within that"
        )


@click.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path), required=False)
def import_(folder: Path, out: Path | None) -> None:
    """Turn a Hugging Face FOLDER (from `cleangpt export`, or a GPT-2 one) into a cleanGPT checkpoint.

    The checkpoint goes to OUT, by default FOLDER-cleangpt beside FOLDER; `cleangpt generate OUT` samples from it.
    """
    from cleangpt_core.huggingface.folder import import_hf

    folder = folder.absolute()  # "." has no name to put "-cleangpt" after
    out = out or folder.with_name(f"{folder.name}-cleangpt")
    click.echo(f"imported {folder} as the checkpoint {import_hf(folder, out)}")
