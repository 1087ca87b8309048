"""Creating and loading tokenizers through the registry, and the reduced-vocabulary tokenizer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cleangpt_core.errors import ConfigError, UnknownComponentError
from cleangpt_core.testing.tokenizer import check_tokenizer_contract
from cleangpt_core.tokenizers import (
    BaseTokenizer,
    CharacterTokenizer,
    GPT2Tokenizer,
    ReducedVocabTokenizer,
    TokenizerFactory,
    TokenizerLoadError,
    create_tokenizer,
    from_pretrained,
)
from cleangpt_core.tokenizers.base_tokenizer import TOKENIZER_FILE

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"


def test_builtin_tokenizers_are_created_by_name():
    assert isinstance(create_tokenizer("character"), CharacterTokenizer)
    assert isinstance(create_tokenizer("char"), CharacterTokenizer)  # alias
    assert isinstance(
        TokenizerFactory.create_tokenizer("GPT2", pretrained_model_name_or_path=str(FIXTURE)), GPT2Tokenizer
    )
    assert {"character", "gpt2", "reduced"} <= set(TokenizerFactory.available())


def test_unknown_tokenizer_name_lists_the_available_ones():
    with pytest.raises(UnknownComponentError, match=r"unknown tokenizer 'charcter'; did you mean 'character'"):
        create_tokenizer("charcter")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"unk_polcy": "unk"}, "did you mean 'unk_policy'"), ({"unk_policy": "maybe"}, "unk_policy")],
)
def test_invalid_options_fail_validation_before_construction(options, message):
    with pytest.raises(ConfigError, match=message):
        create_tokenizer("character", **options)


def test_from_pretrained_rebuilds_the_saved_type(tmp_path):
    CharacterTokenizer().fit("abc").save_pretrained(tmp_path / "char")
    create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE)).save_pretrained(tmp_path / "gpt2")
    assert isinstance(from_pretrained(tmp_path / "char"), CharacterTokenizer)
    assert isinstance(BaseTokenizer.from_pretrained(tmp_path / "gpt2"), GPT2Tokenizer)
    saved = json.loads((tmp_path / "gpt2" / TOKENIZER_FILE).read_text())
    assert saved["tokenizer_type"] == "gpt2"


def test_loading_a_directory_with_the_wrong_class_names_the_saved_type(tmp_path):
    CharacterTokenizer().fit("abc").save_pretrained(tmp_path)
    with pytest.raises(TokenizerLoadError, match="holds a 'character' tokenizer, not 'gpt2'"):
        GPT2Tokenizer.from_pretrained(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerLoadError, match="does not exist; save one with"):
        from_pretrained(tmp_path / "missing")


def test_directory_without_the_type_file_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerLoadError, match=f"has no {TOKENIZER_FILE}"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"config": {}}', "does not name a tokenizer_type"), ("[1]", "tokenizer_type")],
)
def test_corrupt_type_file_is_a_clear_error(tmp_path, content, message):
    (tmp_path / TOKENIZER_FILE).write_text(content)
    with pytest.raises(TokenizerLoadError, match=message):
        from_pretrained(tmp_path)


def test_saved_type_that_is_not_installed_names_what_is(tmp_path):
    (tmp_path / TOKENIZER_FILE).write_text('{"tokenizer_type": "sentencepiece", "config": {}}')
    with pytest.raises(UnknownComponentError, match="Available: .*character"):
        from_pretrained(tmp_path)


def test_registration_imports_nothing_heavy():
    code = (
        "import sys; from cleangpt_core.core_plugins import tokenizers; "
        "tokenizers.cleangpt_register_tokenizers(); tokenizers.cleangpt_register_commands(); "
        "heavy = [m for m in ('numpy', 'torch', 'transformers', 'tiktoken') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def reduced() -> ReducedVocabTokenizer:
    base = CharacterTokenizer().fit("abcdef")
    return ReducedVocabTokenizer(base, kept_ids=base.encode("cab"))


def test_reduced_tokenizer_keeps_the_tokenizer_contract(reduced):
    check_tokenizer_contract(reduced, ["abc", "cab", "ba"])


def test_reduced_tokenizer_renumbers_kept_ids_and_maps_the_rest_to_unk(reduced):
    # kept c, a, b -> 0, 1, 2; the base's <pad>, <eos> -> 3, 4; a new <unk> -> 5
    assert reduced.vocab_size == 6
    assert reduced.encode("abc") == [1, 2, 0]
    assert reduced.encode("adb") == [1, 5, 2]
    assert reduced.decode([1, 5, 2]) == "a<unk>b"
    assert reduced.decode([1, 5, 2], skip_special_tokens=True) == "ab"
    assert (reduced.pad_token_id, reduced.eos_token_id, reduced.unk_token_id) == (3, 4, 5)


def test_reduced_gpt2_gets_its_own_unk_rather_than_endoftext():
    gpt2 = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    reduced = ReducedVocabTokenizer(gpt2, kept_ids=gpt2.encode("Hello, world!"))
    assert reduced.vocab_size == 4 + 1 + 1
    assert reduced.eos_token_id != reduced.unk_token_id
    assert reduced.encode("Hello there") == [0, reduced.unk_token_id]


def test_reduced_tokenizer_saves_its_base_and_loads_through_the_registry(tmp_path, reduced):
    reduced.save_pretrained(tmp_path / "reduced")
    loaded = from_pretrained(tmp_path / "reduced")
    assert isinstance(loaded, ReducedVocabTokenizer) and loaded.kept_ids == reduced.kept_ids
    assert loaded.encode("adb") == reduced.encode("adb")
    again = create_tokenizer("reduced", base=str(tmp_path / "reduced" / "base"), kept_ids=reduced.kept_ids[:3])
    assert again.encode("adb") == reduced.encode("adb")
