"""Registers the built-in tokenizers and the ``analyze-tokens`` command (descriptions only: nothing heavy)."""

from cleangpt_core.plugin_api import PLUGIN_API_VERSION, CommandSpec, Component, hookimpl
from cleangpt_core.tokenizers import schemas

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION

_PACKAGE = "cleangpt_core.tokenizers"


@hookimpl
def cleangpt_register_tokenizers() -> list[Component]:
    """The character, GPT-2, Hugging Face and reduced-vocabulary tokenizers."""
    return [
        Component(
            name="character",
            kind="tokenizer",
            summary="one id per character, vocabulary learned from the corpus (nanoGPT's char model)",
            target=f"{_PACKAGE}.character_tokenizer:CharacterTokenizer",
            config_schema=schemas.CharacterTokenizerConfig,
            aliases=("char",),
        ),
        Component(
            name="gpt2",
            kind="tokenizer",
            summary="GPT-2 byte-level BPE (50,257 ids) from the hub or a local vocab.json + merges.txt",
            target=f"{_PACKAGE}.gpt2_tokenizer:GPT2Tokenizer",
            config_schema=schemas.GPT2TokenizerConfig,
        ),
        Component(
            name="hf",
            kind="tokenizer",
            summary="any Hugging Face tokenizer: a folder's tokenizer.json, or AutoTokenizer without remote code",
            target=f"{_PACKAGE}.hf_tokenizer:HFTokenizer",
            config_schema=schemas.HFTokenizerConfig,
            aliases=("huggingface",),
        ),
        Component(
            name="reduced",
            kind="tokenizer",
            summary="a saved tokenizer cut to the ids token analysis kept; other ids become <unk>",
            target=f"{_PACKAGE}.reduced_tokenizer:ReducedVocabTokenizer",
            config_schema=schemas.ReducedVocabConfig,
        ),
    ]


@hookimpl
def cleangpt_register_commands() -> list[CommandSpec]:
    """analyze-tokens and prepare-data."""
    return [
        CommandSpec(
            "analyze-tokens",
            "Token statistics of a corpus under a tokenizer, with frequency and coverage plots.",
            "cleangpt_core.cli.analyze:analyze_tokens",
        ),
        CommandSpec(
            "prepare-data",
            "Tokenize a corpus of any size into token shards that training reads with --set data.dataset=DIR.",
            "cleangpt_core.cli.prepare:prepare_data_command",
        ),
    ]
