"""The ``--tokenizer NAME_OR_DIR`` and ``-o KEY=VALUE`` options that commands reading a corpus share.

Torch and the tokenizers are imported only when a tokenizer is built, so ``cleangpt --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cleangpt_core.config.experiment import apply_overrides

tokenizer_options = click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A tokenizer option, e.g. -o pretrained_model_name_or_path=path/to/gpt2 (repeatable).",
)


def tokenizer_from_argument(name_or_dir: str, options: tuple[str, ...]) -> Any:
    """A registered tokenizer by name, a saved cleanGPT tokenizer folder, or a Hugging Face tokenizer folder."""
    from cleangpt_core.tokenizers.base_tokenizer import TOKENIZER_FILE
    from cleangpt_core.tokenizers.factory import create_tokenizer, from_pretrained
    from cleangpt_core.tokenizers.hf_tokenizer import BACKEND_FILE

    folder = Path(name_or_dir).expanduser()
    given = apply_overrides({}, list(options))
    if folder.is_dir() and (folder / TOKENIZER_FILE).is_file():
        if options:
            raise click.UsageError("--option applies to a tokenizer name, not to a saved tokenizer folder")
        return from_pretrained(folder)
    if folder.is_dir() and (folder / BACKEND_FILE).is_file():
        return create_tokenizer("hf", name_or_path=str(folder), **given)
    if folder.is_dir():
        raise click.UsageError(
            f"--tokenizer {name_or_dir}: the folder holds neither a saved cleanGPT tokenizer nor a {BACKEND_FILE}"
        )
    return create_tokenizer(name_or_dir, **given)
