"""The character tokenizer: learned or given vocabularies, the unknown-character policies, saving."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleangpt_core.errors import UnknownTokenError
from cleangpt_core.testing.tokenizer import check_tokenizer_contract
from cleangpt_core.tokenizers import CharacterTokenizer, TokenizerError, TokenizerLoadError, from_pretrained
from cleangpt_core.utils import tinyshakespeare_text

SAMPLES = ["Hello, world!", "To be, or not to be: that is the question.", "é ✓ 日本 🙂 <pad>"]
ALPHABET = sorted(set("".join(SAMPLES)))


@pytest.fixture
def fitted() -> CharacterTokenizer:
    return CharacterTokenizer().fit(SAMPLES)


def test_fitted_tokenizer_keeps_the_tokenizer_contract(fitted):
    check_tokenizer_contract(fitted, SAMPLES)


def test_tokenizer_with_unk_policy_keeps_the_tokenizer_contract():
    check_tokenizer_contract(CharacterTokenizer(unk_policy="unk").fit(SAMPLES), SAMPLES)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_any_text_over_the_vocabulary_round_trips(text):
    tokenizer = CharacterTokenizer(vocab=ALPHABET)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode_corpus(text).tolist() == ids


def test_fit_learns_sorted_characters_then_appends_pad_and_eos():
    tokenizer = CharacterTokenizer().fit(["bca", "cab"])
    assert tokenizer.is_fitted
    assert tokenizer.encode("abc") == [0, 1, 2]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (3, 4, None)
    assert tokenizer.vocab_size == 5


def test_tinyshakespeare_gives_nanogpts_65_characters_plus_two_specials():
    text = tinyshakespeare_text()
    tokenizer = CharacterTokenizer().fit(text)
    assert tokenizer.vocab_size == 65 + 2
    assert np.array_equal(tokenizer.encode_corpus(text[:50_000]), np.array(tokenizer.encode(text[:50_000])))


def test_special_token_text_in_the_corpus_is_encoded_as_characters_not_as_the_special_token(fitted):
    ids = fitted.encode("<pad>")
    assert len(ids) == 5 and fitted.pad_token_id not in ids
    assert fitted.decode(ids, skip_special_tokens=True) == "<pad>"


def test_unknown_character_raises_by_default_naming_it(fitted):
    with pytest.raises(UnknownTokenError, match=r"'Z' \(U\+005A\) at position 1.*unk_policy='unk'"):
        fitted.encode("aZ")
    with pytest.raises(UnknownTokenError, match="'Z'"):
        fitted.encode_corpus("aZ")


def test_unknown_character_becomes_unk_under_the_unk_policy():
    tokenizer = CharacterTokenizer(unk_policy="unk").fit("ab")
    ids = tokenizer.encode("aZb")
    assert ids == [0, tokenizer.unk_token_id, 1]
    assert tokenizer.encode_corpus("aZb").tolist() == ids
    assert tokenizer.decode(ids) == "a<unk>b"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "ab"


def test_unfitted_tokenizer_says_how_to_get_a_vocabulary():
    tokenizer = CharacterTokenizer()
    assert not tokenizer.is_fitted
    with pytest.raises(TokenizerError, match=r"no vocabulary yet: call tokenizer.fit"):
        tokenizer.encode("abc")
    with pytest.raises(TokenizerError, match="no vocabulary yet"):
        _ = tokenizer.vocab_size


def test_fitting_on_an_empty_corpus_is_an_error():
    with pytest.raises(TokenizerError, match="empty corpus"):
        CharacterTokenizer().fit(["", ""])


def test_vocab_list_ids_are_positions_and_a_dict_is_taken_as_is():
    assert CharacterTokenizer(vocab=["x", "y"]).encode("yx") == [1, 0]
    tokenizer = CharacterTokenizer(vocab={"y": 0, "<eos>": 1, "x": 2})
    assert tokenizer.encode("xy") == [2, 0]
    assert tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 3


@pytest.mark.parametrize(
    ("vocab", "message"),
    [
        ({"a": 0, "b": 2}, "each id 0..n-1 exactly once"),
        (["a", "ab"], "neither one character"),
        (["a", "a"], "more than once"),
        ("abc", "not a str"),
        ({"a": 0, "b": 1.0}, r"entry 'b' has the id 1.0, which is not an integer"),
        ({"a": 0, "b": "1"}, r"entry 'b' has the id '1', which is not an integer"),
        ({"a": 0, "b": True}, r"entry 'b' has the id True, which is not an integer"),
        ({"a": 0, "b": None}, r"entry 'b' has the id None, which is not an integer"),
    ],
)
def test_invalid_vocabularies_are_rejected_with_the_reason(vocab, message):
    with pytest.raises(TokenizerError, match=message):
        CharacterTokenizer(vocab=vocab)


def test_invalid_unk_policy_is_rejected():
    with pytest.raises(TokenizerError, match="unk_policy must be one of"):
        CharacterTokenizer(unk_policy="ignore")


def test_out_of_range_id_in_decode_is_an_error(fitted):
    with pytest.raises(TokenizerError, match=r"token id 999 is outside"):
        fitted.decode([0, 999])


def test_saved_vocabulary_and_policy_come_back(tmp_path):
    tokenizer = CharacterTokenizer(unk_policy="unk").fit("hello")
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text())["h"] == tokenizer.encode("h")[0]
    loaded = from_pretrained(tmp_path)
    assert isinstance(loaded, CharacterTokenizer)
    assert loaded.get_vocab() == tokenizer.get_vocab() and loaded.unk_policy == "unk"


def test_saving_an_unfitted_tokenizer_is_an_error(tmp_path):
    with pytest.raises(TokenizerError, match="no vocabulary yet"):
        CharacterTokenizer().save_pretrained(tmp_path)


def test_corrupt_vocabulary_file_is_reported(tmp_path):
    CharacterTokenizer().fit("abc").save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": ')
    with pytest.raises(TokenizerLoadError, match=r"vocab.json.*not valid JSON"):
        from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 5}')
    with pytest.raises(TokenizerLoadError, match="is corrupt"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize("value", ["x", 1.5, None, [1]])
def test_a_saved_vocabulary_with_a_non_integer_id_is_one_line_naming_the_file_and_entry(tmp_path, value):
    CharacterTokenizer().fit("abc").save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": value, "c": 2}))
    with pytest.raises(TokenizerLoadError, match=r"is corrupt: .*entry 'b' has the id .*, which is not an integer"):
        from_pretrained(tmp_path)


def test_a_missing_or_unreadable_vocabulary_names_it_once(tmp_path):
    CharacterTokenizer().fit("abc").save_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text("[")
    with pytest.raises(TokenizerLoadError, match="it should hold the character vocabulary;") as error:
        from_pretrained(tmp_path)
    assert "the the" not in str(error.value)
    (tmp_path / "vocab.json").unlink()
    with pytest.raises(TokenizerLoadError, match=r"lacks vocab.json \(the character vocabulary\)"):
        from_pretrained(tmp_path)
