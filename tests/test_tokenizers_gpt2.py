"""The GPT-2 tokenizer: exact GPT-2 ids offline, Hugging Face's batch semantics, the tiktoken corpus path."""

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from transformers import GPT2TokenizerFast

from cleangpt_core.testing.tokenizer import check_tokenizer_contract
from cleangpt_core.tokenizers import GPT2Tokenizer, TokenizerError, TokenizerLoadError, create_tokenizer
from cleangpt_core.utils import tinyshakespeare_text

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"
BATCH = ["Hello, world!", "First sentence", "A much longer second sentence, with punctuation; and more.", "x"]


@pytest.fixture(scope="module")
def gpt2() -> GPT2Tokenizer:
    return create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))


@pytest.fixture(scope="module")
def hf() -> GPT2TokenizerFast:
    reference = GPT2TokenizerFast.from_pretrained(str(FIXTURE))
    reference.pad_token = reference.eos_token
    return reference


def test_hello_world_gives_the_gpt2_ids(gpt2):
    assert gpt2.encode("Hello, world!") == [15496, 11, 995, 0]
    assert gpt2.decode([15496, 11, 995, 0]) == "Hello, world!"


def test_gpt2_keeps_the_tokenizer_contract(gpt2):
    check_tokenizer_contract(gpt2, ["Hello, world!", "To be, or not to be: that is the question.", "é ✓ 日本 🙂"])


def test_special_tokens_follow_gpt2_conventions(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.eos_token_id == 50256 and gpt2.pad_token_id == 50256  # GPT-2 pads with <|endoftext|>
    assert gpt2.encode("Hello", add_special_tokens=True) == gpt2.encode("Hello")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_any_unicode_text_round_trips_and_the_corpus_path_agrees(gpt2, text):
    ids = gpt2.encode(text)
    assert gpt2.decode(ids) == text
    assert gpt2.encode_corpus(text).tolist() == ids


def test_corpus_path_gives_the_hf_ids_on_all_of_tinyshakespeare(gpt2, hf):
    text = tinyshakespeare_text()
    assert gpt2.tiktoken_encoding is not None
    ids = gpt2.encode_corpus(text)
    assert ids.dtype == np.uint16 and ids.size == 338_025
    assert np.array_equal(ids, np.asarray(hf.encode(text)))
    assert gpt2.decode(ids) == text


def test_endoftext_written_in_the_text_becomes_its_id_on_both_paths(gpt2):
    assert gpt2.encode("a<|endoftext|>b") == [64, 50256, 65]
    assert gpt2.encode_corpus("a<|endoftext|>b").tolist() == [64, 50256, 65]


def test_a_lone_surrogate_from_a_json_escape_is_encoded_as_tiktoken_repairs_it(gpt2):
    text = json.loads('"a\\ud800b"')  # valid JSON, but no valid UTF-8: tiktoken's encode() replaces it
    assert gpt2.encode_corpus(text).tolist() == gpt2.tiktoken_encoding.encode(text, allowed_special="all")
    assert gpt2.encode_corpus(text).tolist() == gpt2.encode_corpus("a\ufffdb").tolist()


TRICKY_PIECES = st.text(max_size=20) | st.sampled_from(
    ["<|endoftext|>", "<|endoftext", "|>", "  ", " \n", "\n\n", "\ud800", "\udc00", "'s", " 12", "é"]
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(TRICKY_PIECES, max_size=4).map("".join), max_size=6))
@example(["a<|endoftext|>b", "c"])  # a text that spells the eos token: encoded text by text
@example(["x  ", " y", "", "\ud800z"])
def test_a_batch_gives_each_texts_own_ids(gpt2, texts):
    """The batch is one tiktoken call over the texts joined by eos; the cuts must give each text's own ids."""
    batch = gpt2.encode_corpus_batch(texts)
    assert [ids.tolist() for ids in batch] == [gpt2.encode_corpus(text).tolist() for text in texts]
    assert all(ids.dtype == np.uint16 for ids in batch)


PADDING = [False, True, "longest", "max_length"]
TRUNCATION = [False, True]
MAX_LENGTH = [None, 3, 6, 40]


@pytest.mark.parametrize(("side", "truncation_side"), [("right", "right"), ("left", "right"), ("right", "left")])
@pytest.mark.filterwarnings("ignore::UserWarning")  # HF warns that max_length is unused without truncation
def test_batch_call_matches_hugging_face_for_padding_truncation_and_masks(gpt2, hf, side, truncation_side):
    gpt2.padding_side = hf.padding_side = side
    gpt2.truncation_side = hf.truncation_side = truncation_side
    try:
        for padding, truncation, max_length in itertools.product(PADDING, TRUNCATION, MAX_LENGTH):
            if padding == "max_length" and max_length is None:
                continue  # HF pads to its 10^30 model_max_length; ours asks for max_length (tested below)
            kwargs = {"padding": padding, "truncation": truncation, "max_length": max_length}
            ours, theirs = gpt2(BATCH, **kwargs), hf(BATCH, **kwargs)
            assert ours["input_ids"] == theirs["input_ids"], kwargs
            assert ours["attention_mask"] == theirs["attention_mask"], kwargs
            single_ours, single_theirs = gpt2(BATCH[2], **kwargs), hf(BATCH[2], **kwargs)
            assert single_ours["input_ids"] == single_theirs["input_ids"], kwargs
            if len({len(ids) for ids in theirs["input_ids"]}) > 1:  # ragged: neither can make a tensor
                with pytest.raises(ValueError):
                    hf(BATCH, **kwargs, return_tensors="pt")
                with pytest.raises(TokenizerError):
                    gpt2(BATCH, **kwargs, return_tensors="pt")
                continue
            tensors_ours = gpt2(BATCH, **kwargs, return_tensors="pt")
            tensors_theirs = hf(BATCH, **kwargs, return_tensors="pt")
            for key in ("input_ids", "attention_mask"):
                assert torch.equal(tensors_ours[key], tensors_theirs[key]), (key, kwargs)
    finally:
        gpt2.padding_side = hf.padding_side = gpt2.truncation_side = hf.truncation_side = "right"


def test_tutorial_batch_call_returns_padded_tensors(gpt2):
    texts = ["First sentence", "A second, longer sentence"]
    inputs = gpt2(texts, padding=True, truncation=True, return_tensors="pt")
    longest = len(gpt2.encode(texts[1]))
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape == (2, longest)
    assert inputs.input_ids.dtype == torch.long
    assert inputs.attention_mask.sum(dim=1).tolist() == [len(gpt2.encode(texts[0])), longest]


def test_uneven_batch_without_padding_cannot_become_a_tensor(gpt2):
    with pytest.raises(TokenizerError, match="pass padding=True"):
        gpt2(BATCH, return_tensors="pt")


def test_max_length_padding_needs_a_length(gpt2):
    with pytest.raises(TokenizerError, match="needs max_length"):
        gpt2(BATCH, padding="max_length")


def test_pad_token_option_replaces_the_default(tmp_path):
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE), pad_token="!")
    assert tokenizer.pad_token_id == 0
    tokenizer.save_pretrained(tmp_path)
    assert GPT2Tokenizer.from_pretrained(tmp_path).pad_token_id == 0


def test_out_of_range_ids_are_an_error_not_a_crash(gpt2):
    with pytest.raises(TokenizerError, match="token id 50257 is outside"):
        gpt2.decode([50257])


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerLoadError, match="does not exist"):
        GPT2Tokenizer(str(tmp_path / "nope"))


def test_folder_without_tokenizer_files_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerLoadError, match="could not load a GPT-2 tokenizer|missing or corrupt"):
        GPT2Tokenizer(str(tmp_path))


def test_corrupt_vocab_file_is_a_clear_error(tmp_path):
    shutil.copy(FIXTURE / "merges.txt", tmp_path / "merges.txt")
    (tmp_path / "vocab.json").write_text('{"!": 0, ')
    with pytest.raises(TokenizerLoadError, match="GPT-2 tokenizer"):
        GPT2Tokenizer(str(tmp_path))


def test_non_gpt2_shaped_vocabulary_falls_back_to_the_hf_corpus_path(gpt2, tmp_path):
    vocab = json.loads((FIXTURE / "vocab.json").read_text())
    vocab["Ġt"], vocab["Ġa"] = vocab["Ġa"], vocab["Ġt"]  # merge ranks no longer equal ids
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    shutil.copy(FIXTURE / "merges.txt", tmp_path / "merges.txt")
    swapped = GPT2Tokenizer(str(tmp_path))
    assert swapped.tiktoken_encoding is None
    text = "the cat at a table"
    assert swapped.encode_corpus(text).tolist() == swapped.encode(text)
