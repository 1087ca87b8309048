"""Registers the byte tokenizer with cleanGPT (entry point ``cleangpt``: ``bytetok``)."""

from cleangpt_bytetok.config import ByteLevelTokenizerConfig
from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.0"


@hookimpl
def cleangpt_register_tokenizers() -> list[Component]:
    """The "byte" tokenizer."""
    return [
        Component(
            name="byte",
            kind="tokenizer",
            summary="UTF-8 bytes as ids 0-255, plus <pad>, <bos>, <eos>; no vocabulary to learn",
            target="cleangpt_bytetok.tokenizer:ByteLevelTokenizer",
            config_schema=ByteLevelTokenizerConfig,
            aliases=("bytes", "byte_level"),
        )
    ]
