"""``cleangpt prepare-data``: a corpus of any size tokenized into shards that ``cleangpt train`` reads.

Torch and the tokenizers are imported inside the command, so ``cleangpt --help`` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from cleangpt_core.cli.tokenizer_option import tokenizer_from_argument, tokenizer_options


@click.command("prepare-data")
@click.argument("source")
@click.option(
    "--tokenizer",
    "tokenizer_name",
    required=True,
    metavar="NAME_OR_DIR",
    help="A registered tokenizer (gpt2, hf...), a folder saved with save_pretrained, or a folder holding a "
    "Hugging Face tokenizer.json.",
)
@tokenizer_options
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder for the shards and index."
)
@click.option(
    "--num-proc", type=click.IntRange(min=1), default=None, help="Tokenizer processes (default: the machine's cores)."
)
@click.option(
    "--shard-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Tokens per shard file (default 100,000,000).",
)
@click.option("--text-field", default="text", show_default=True, help="Field holding the text (JSON, Parquet, hub).")
@click.option("--dataset-config", default=None, help="The hub dataset's configuration name.")
@click.option("--split", default="train", show_default=True, help="Which split of a hub dataset to stream.")
@click.option("--progress/--no-progress", default=None, help="Draw the progress bar (default: on a terminal).")
def prepare_data_command(
    source: str,
    tokenizer_name: str,
    options: tuple[str, ...],
    out_dir: Path,
    num_proc: int | None,
    shard_tokens: int | None,
    text_field: str,
    dataset_config: str | None,
    split: str,
    progress: bool | None,
) -> None:
    """Stream SOURCE (a .txt/.jsonl/.json/.parquet file, a folder of them, 'tinyshakespeare', 'python-stdlib',
    or a Hugging Face dataset name), tokenize it in parallel and write token shards with an index into --out.

    Interrupted, the same command continues from the finished shards. Train on the result with
    --set data.dataset=OUT and the same tokenizer.
    """
    from cleangpt_core.data.document_sources import DocumentSource
    from cleangpt_core.data.prepared_data import is_prepared_dir
    from cleangpt_core.data.shard_writer import DEFAULT_SHARD_TOKENS, prepare_data

    tokenizer = tokenizer_from_argument(tokenizer_name, options)
    documents = DocumentSource.from_argument(source, text_field=text_field, dataset_config=dataset_config, split=split)
    if getattr(tokenizer, "is_fitted", True) is False:
        fit_on_source(tokenizer, documents, text_field)
    if tokenizer.eos_token_id is None:
        click.echo(
            f"warning: the tokenizer {tokenizer_name!r} declares no end-of-text token, so documents are joined with "
            "no separator between them (generation cannot stop at a document's end, and lm-eval refuses the "
            "model); name one with -o eos_token=TOKEN where the tokenizer takes it",
            err=True,
        )
    already = is_prepared_dir(out_dir)
    start = time.perf_counter()
    index = prepare_data(
        documents,
        tokenizer,
        out_dir,
        num_proc=num_proc,
        shard_tokens=shard_tokens or DEFAULT_SHARD_TOKENS,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    megabytes = (documents.total_bytes() or 0) / 1e6
    rate = f", {megabytes / seconds:.1f} MB/s" if megabytes else ""
    if already:
        click.echo(f"{out_dir} was already prepared from this source with this tokenizer: nothing to do")
        return
    click.echo(
        f"{out_dir}: {index['tokens']:,} tokens ({index['dtype']}) of {index['documents']:,} documents in "
        f"{len(index['shards'])} shards ({seconds:.1f} s{rate}); train on it with --set data.dataset={out_dir}"
    )


def fit_on_source(tokenizer: Any, documents: Any, text_field: str) -> None:
    """Fit a tokenizer that learns its vocabulary (the character one) on every document of a local source:
    a first pass over the files, so `--tokenizer character` needs nothing fitted beforehand."""
    from cleangpt_core.data.document_sources import read_unit

    if not documents.is_local:
        raise click.UsageError(
            "a streamed hub dataset cannot be read twice to fit the character tokenizer on it: fit one in Python "
            "(create_tokenizer('character').fit(texts).save_pretrained(DIR)) and pass --tokenizer DIR"
        )
    tokenizer.fit(text for unit in documents.units() for text in read_unit(unit, text_field)[1])
