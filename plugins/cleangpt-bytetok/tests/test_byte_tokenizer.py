"""The byte-level tokenizer plugin: registration, the tokenizer contract, lossless UTF-8, forgiving decode."""

import subprocess
import sys

import pytest
from cleangpt_bytetok import ByteLevelTokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from cleangpt_core.errors import ConfigError
from cleangpt_core.registry import get_component, reset_registry
from cleangpt_core.testing.tokenizer import check_tokenizer_contract
from cleangpt_core.tokenizers import TokenizerError, create_tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> ByteLevelTokenizer:
    return ByteLevelTokenizer()


def test_registered_through_the_entry_point():
    reset_registry()
    component = get_component("tokenizer", "byte")
    assert component.distribution == "cleangpt-bytetok"
    assert isinstance(create_tokenizer("byte"), ByteLevelTokenizer)


def test_plugin_module_imports_nothing_heavy():
    code = (
        "import sys; import cleangpt_bytetok.plugin; "
        "heavy = [m for m in ('numpy', 'torch', 'transformers') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_options_are_rejected():
    with pytest.raises(ConfigError, match="unknown field 'vocab'"):
        create_tokenizer("byte", vocab=["a"])


def test_keeps_the_tokenizer_contract(tokenizer):
    check_tokenizer_contract(tokenizer, ["Hello, world!", "é ✓ 日本 🙂 and more", "<pad> is text here"])


def test_ids_are_the_utf8_bytes_then_three_special_tokens(tokenizer):
    assert tokenizer.encode("hé") == [104, 0xC3, 0xA9]
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (256, 257, 258)
    assert tokenizer.vocab_size == 259 and tokenizer.unk_token_id is None
    assert tokenizer.encode("hi", add_special_tokens=True) == [257, 104, 105]
    assert tokenizer.tokenize("hi") == [104, 105]  # tokens are the byte values, as in the tutorial


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100))
def test_any_unicode_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode_corpus(text).tolist() == ids


def test_invalid_utf8_is_replaced_not_raised(tokenizer):
    assert tokenizer.decode([0xFF, 104, 0xC3]) == "\ufffdh\ufffd"
    cut = tokenizer.encode("日本")[:4]  # the second character cut after its first byte
    assert tokenizer.decode(cut) == "日\ufffd"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=258), max_size=50))
def test_decoding_any_ids_in_range_never_raises(tokenizer, ids):
    assert isinstance(tokenizer.decode(ids), str)


def test_special_tokens_decode_by_name_or_are_skipped(tokenizer):
    ids = [257, 104, 105, 258, 256]
    assert tokenizer.decode(ids) == "<bos>hi<eos><pad>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hi"


def test_out_of_range_ids_are_an_error(tokenizer):
    with pytest.raises(TokenizerError, match="token id 300 is outside the byte vocabulary"):
        tokenizer.decode([104, 300])


def test_token_display_shows_non_ascii_bytes_as_hex(tokenizer):
    assert [tokenizer.token_display(i) for i in (104, 0xC3, 258)] == ["h", "<0xC3>", "<eos>"]
