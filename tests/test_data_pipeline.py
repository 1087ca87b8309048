"""From text to training windows: sources, splits, windows, and the errors bad input gets."""

import json

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from cleangpt_core.config import GPTConfig
from cleangpt_core.data.windows import RandomWindowDataset
from cleangpt_core.model import get_model
from cleangpt_core.tokenizers import CharacterTokenizer, create_tokenizer
from cleangpt_core.utils import (
    DataError,
    TokenBlockDataset,
    load_and_prepare_data,
    load_text_documents,
    prepare_causal_lm_dataset,
    tinyshakespeare_split,
    tinyshakespeare_text,
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))


def targets_of(dataset: TokenBlockDataset) -> list[int]:
    """Absolute positions of the tokens each window scores (labels are shifted inside the model)."""
    positions = []
    for index in range(len(dataset)):
        start = int(dataset.starts[index])
        labels = dataset[index]["labels"]
        positions += [start + j for j in range(1, len(labels)) if labels[j] != -100]
    return positions


@settings(max_examples=80, deadline=None)
@given(length=st.integers(min_value=2, max_value=300), block_size=st.integers(min_value=2, max_value=40))
def test_every_token_but_the_first_is_a_target_exactly_once(length, block_size):
    if length < block_size:
        return
    dataset = TokenBlockDataset(np.arange(length, dtype=np.uint16), block_size)
    assert sorted(targets_of(dataset)) == list(range(1, length))
    assert dataset.num_targets == length - 1


@settings(max_examples=80, deadline=None)
@given(length=st.integers(min_value=3, max_value=300), block_size=st.integers(min_value=2, max_value=40))
def test_with_a_final_label_every_token_but_the_first_is_still_a_target_exactly_once(length, block_size):
    if length <= block_size:
        return
    dataset = TokenBlockDataset(np.arange(length, dtype=np.uint16), block_size, final_label=True)
    assert sorted(targets_of(dataset)) == list(range(1, length))
    assert all(len(dataset[i]["input_ids"]) == block_size for i in range(len(dataset)))


def test_a_final_label_reaches_the_token_after_each_window():
    dataset = TokenBlockDataset(np.arange(10, dtype=np.uint16), 4, final_label=True)
    assert [dataset[i]["input_ids"].tolist() for i in range(len(dataset))] == [[0, 1, 2, 3], [4, 5, 6, 7], [5, 6, 7, 8]]
    assert [dataset[i]["labels"].tolist() for i in range(len(dataset))] == [
        [0, 1, 2, 3, 4],
        [4, 5, 6, 7, 8],
        [5, -100, -100, -100, 9],
    ]
    random_windows = RandomWindowDataset(np.arange(10, dtype=np.uint16), 4, final_label=True)
    assert len(random_windows) == 6
    assert random_windows[5]["input_ids"].tolist() == [5, 6, 7, 8]
    assert random_windows[5]["labels"].tolist() == [5, 6, 7, 8, 9]


def test_training_trains_the_last_position_of_a_learned_position_model():
    """Without a final label, the last position never gets a target and its learned embedding no gradient:
    generation past the context, which always predicts from that position, then produces noise."""
    model = get_model("Vanilla", config=GPTConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=16, block_size=4))
    loader = DataLoader(RandomWindowDataset(np.arange(40, dtype=np.uint16) % 11, 4, final_label=True), batch_size=8)
    batch = next(iter(loader))
    model(**batch)["loss"].backward()
    assert model.transformer.wpe.weight.grad[3].abs().sum() > 0


def test_consecutive_windows_overlap_by_one_token():
    dataset = TokenBlockDataset(np.arange(10, dtype=np.uint16), 4)
    windows = [dataset[i]["input_ids"].tolist() for i in range(len(dataset))]
    assert windows == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert all(torch.equal(dataset[i]["input_ids"], dataset[i]["labels"]) for i in range(3))


def test_leftover_tail_gets_an_end_aligned_window_with_scored_labels_masked():
    dataset = TokenBlockDataset(np.arange(9, dtype=np.uint16), 4)
    assert dataset[2]["input_ids"].tolist() == [5, 6, 7, 8]
    assert dataset[2]["labels"].tolist() == [5, -100, 7, 8]


def test_corpus_shorter_than_one_block_is_a_clear_error():
    with pytest.raises(DataError, match="has 3 tokens, fewer than one block of 8"):
        prepare_causal_lm_dataset(["abc"], CharacterTokenizer(), block_size=8, batch_size=2)


def test_empty_corpus_is_a_clear_error():
    with pytest.raises(DataError, match="texts is empty"):
        prepare_causal_lm_dataset(["", ""], CharacterTokenizer(), block_size=8, batch_size=2)


def test_unfitted_character_tokenizer_is_fitted_on_the_texts_as_in_the_tutorial():
    tokenizer = create_tokenizer("character")
    texts = ["Example text 1", "Example text 2"]
    loader = prepare_causal_lm_dataset(texts=texts, tokenizer=tokenizer, block_size=8, batch_size=3)
    assert tokenizer.is_fitted and tokenizer.vocab_size == len(set("".join(texts))) + 2
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].shape == (3, 8) and batch["input_ids"].dtype == torch.long
    assert batch["labels"].dtype == torch.long


def test_documents_are_separated_by_the_eos_token():
    tokenizer = CharacterTokenizer().fit("ab")
    loader = prepare_causal_lm_dataset(["ab", "ba"], tokenizer, block_size=5, batch_size=1, shuffle=False)
    assert loader.dataset.tokens.tolist() == [0, 1, tokenizer.eos_token_id, 1, 0]


def test_shuffling_is_repeatable_with_a_seed():
    text = tinyshakespeare_text()[:5000]

    def first_batch(seed):
        loader = prepare_causal_lm_dataset(text, CharacterTokenizer(), block_size=16, batch_size=4, seed=seed)
        return next(iter(loader))["input_ids"]

    assert torch.equal(first_batch(1), first_batch(1))
    assert not torch.equal(first_batch(1), first_batch(2))


def test_tinyshakespeare_splits_like_nanogpt():
    train, validation = tinyshakespeare_split("train"), tinyshakespeare_split("validation")
    assert (len(train), len(validation)) == (1_003_854, 111_540)
    assert train + validation == tinyshakespeare_text()


def test_embedded_corpus_loads_with_a_character_tokenizer_fitted_on_train_for_both_splits():
    train_loader, tokenizer = load_and_prepare_data("tinyshakespeare", max_seq_length=64, batch_size=4)
    assert tokenizer.vocab_size == 67
    assert train_loader.dataset.num_targets == 1_003_853
    fresh = CharacterTokenizer()
    val_loader, same = load_and_prepare_data("tinyshakespeare", tokenizer=fresh, split="validation", batch_size=4)
    assert same is fresh and fresh.get_vocab() == tokenizer.get_vocab()
    assert val_loader.dataset.num_targets == 111_539
    assert next(iter(val_loader))["input_ids"].shape == (4, 128)


def test_local_text_file_gives_a_deterministic_tail_validation_split(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcdefghij" * 10)
    train = load_text_documents(str(path), split="train")
    validation = load_text_documents(str(path), split="validation")
    assert train == ["abcdefghij" * 9] and validation == ["abcdefghij"]


def test_jsonl_json_and_folders_load_their_text_field(tmp_path):
    rows = [{"text": f"document {i}", "id": i} for i in range(20)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "b.json").write_text(json.dumps([{"body": "json body"}]))
    docs = load_text_documents(str(tmp_path / "data" / "a.jsonl"))
    assert docs == [f"document {i}" for i in range(18)]  # the last 10% of documents is validation
    assert load_text_documents(str(tmp_path / "data"), split="val") == ["document 18", "document 19"]
    # A single document is split by characters instead: its first 90% is train.
    assert load_text_documents(str(tmp_path / "b.json"), text_field="body") == ["json bod"]
    with pytest.raises(DataError, match=r"has no column 'text'; its columns are \['body'\]"):
        load_text_documents(str(tmp_path / "b.json"))


def test_already_loaded_datasets_and_max_samples(tmp_path):
    dataset = datasets.Dataset.from_dict({"text": ["one", "", "two", "three"]})
    assert load_text_documents(dataset) == ["one", "two", "three"]
    assert load_text_documents(datasets.DatasetDict({"validation": dataset}), split="validation", max_samples=3) == [
        "one",
        "two",
    ]
    loader, tokenizer = load_and_prepare_data(dataset, max_seq_length=3, batch_size=2)
    assert tokenizer.decode(loader.dataset.tokens) == "one<eos>two<eos>three"


def test_non_utf8_file_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid UTF-8 \(byte 0xe9 at offset 3\); re-encode it"):
        load_and_prepare_data(str(path))


def test_missing_file_and_unknown_split_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_text_documents(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="split 'test' is not available here"):
        load_text_documents("tinyshakespeare", split="test")


def test_hub_dataset_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match=r"could not load dataset 'wikitext' \(config 'wikitext-2-raw-v1'\).*hub"):
        load_and_prepare_data("wikitext", "wikitext-2-raw-v1", tokenizer=CharacterTokenizer())
