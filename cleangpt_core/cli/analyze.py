"""``cleangpt analyze-tokens``: how a tokenizer covers a corpus, as numbers and two plots."""

from __future__ import annotations

from pathlib import Path

import click

from cleangpt_core.cli.tokenizer_option import tokenizer_from_argument, tokenizer_options


@click.command("analyze-tokens")
@click.option(
    "--tokenizer",
    "tokenizer_name",
    default="character",
    show_default=True,
    help="A registered tokenizer name, a folder saved with save_pretrained, or a folder holding a Hugging Face "
    "tokenizer.json.",
)
@tokenizer_options
@click.option(
    "--data",
    default="tinyshakespeare",
    show_default=True,
    help="'tinyshakespeare', 'python-stdlib', a .txt/.json/.jsonl file or folder, or a Hugging Face hub dataset name.",
)
@click.option("--dataset-config", default=None, help="The hub dataset's configuration name.")
@click.option("--split", default="train", show_default=True, help="Which split to analyse.")
@click.option("--text-field", default="text", show_default=True, help="Column holding the text (JSON, hub).")
@click.option("--max-samples", type=click.IntRange(min=1), default=None, help="Analyse only the first N documents.")
@click.option(
    "--top-n", type=click.IntRange(min=1), default=100, show_default=True, help="Tokens in the frequency plot."
)
@click.option(
    "--coverage",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.95,
    show_default=True,
    help="Report the vocabulary size that covers this share of the tokens.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("token_analysis"),
    show_default=True,
    help="Folder for token_distribution.png and coverage_curve.png.",
)
def analyze_tokens(
    tokenizer_name: str,
    options: tuple[str, ...],
    data: str,
    dataset_config: str | None,
    split: str,
    text_field: str,
    max_samples: int | None,
    top_n: int,
    coverage: float,
    out_dir: Path,
) -> None:
    """Print token statistics of a corpus under a tokenizer and write frequency and coverage plots."""
    from cleangpt_core.data.loading import load_text_documents
    from cleangpt_core.utils.token_statistics import TokenUsageAnalyzer

    tokenizer = tokenizer_from_argument(tokenizer_name, options)
    documents = load_text_documents(
        data, dataset_config=dataset_config, split=split, text_field=text_field, max_samples=max_samples
    )
    analyzer = TokenUsageAnalyzer(tokenizer)
    stats = analyzer.analyze_texts(documents, top_n=10)
    kept = analyzer.kept_token_ids(coverage)

    click.echo(f"tokenizer:           {type(tokenizer).__name__} ({tokenizer.vocab_size:,} ids)")
    click.echo(f"corpus:              {data} [{split}], {stats['num_texts']:,} documents")
    click.echo(f"total tokens:        {stats['total_tokens']:,}")
    click.echo(f"unique tokens:       {stats['unique_tokens']:,}")
    click.echo(f"vocabulary coverage: {stats['vocab_coverage']:.2%}")
    click.echo(f"avg sequence length: {stats['avg_sequence_length']:.2f}")
    click.echo(f"ids covering {coverage:.0%}:   {len(kept):,}")
    click.echo("most common tokens:")
    for token, count in stats["most_common_tokens"]:
        click.echo(f"  {token!r:>16}  {count:,}")
    distribution = analyzer.plot_token_distribution(top_n=top_n, path=out_dir / "token_distribution.png")
    curve = analyzer.plot_coverage_curve(path=out_dir / "coverage_curve.png")
    click.echo(f"wrote {distribution} and {curve}")
