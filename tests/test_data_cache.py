"""The on-disk token cache: reused on the second run, invalidated by a changed corpus or tokenizer."""

from pathlib import Path

import numpy as np
import pytest

from cleangpt_core.data.token_cache import cached_token_array, default_cache_dir
from cleangpt_core.tokenizers import CharacterTokenizer, UnknownTokenError, create_tokenizer
from cleangpt_core.utils import load_and_prepare_data, load_corpus_tokens, tokenize_documents

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"


class CountingCharacterTokenizer(CharacterTokenizer):
    """A real character tokenizer that records how often it tokenizes a corpus."""

    calls = 0

    def encode_corpus(self, text):
        type(self).calls += 1
        return super().encode_corpus(text)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "cache"))
    CountingCharacterTokenizer.calls = 0
    return tmp_path / "cache"


def entries(cache: Path) -> list[Path]:
    return sorted((cache / "tokens").glob("*.bin"))


def test_cache_dir_comes_from_the_environment(isolated_cache):
    assert default_cache_dir() == isolated_cache


def test_second_run_on_tinyshakespeare_reads_the_cache_without_tokenizing(isolated_cache):
    tokenizer = CountingCharacterTokenizer()
    first = load_corpus_tokens("tinyshakespeare", tokenizer)
    assert CountingCharacterTokenizer.calls == 1 and len(entries(isolated_cache)) == 1
    mtime = entries(isolated_cache)[0].stat().st_mtime_ns

    second = load_corpus_tokens("tinyshakespeare", tokenizer)
    assert CountingCharacterTokenizer.calls == 1  # no tokenizing the second time
    assert entries(isolated_cache)[0].stat().st_mtime_ns == mtime
    assert isinstance(second, np.memmap) and second.dtype == np.uint16
    assert np.array_equal(first, second) and second.size == 1_003_854


def test_a_fresh_process_with_an_equal_tokenizer_also_hits_the_cache():
    load_and_prepare_data("tinyshakespeare", tokenizer=CountingCharacterTokenizer())
    load_and_prepare_data("tinyshakespeare", tokenizer=CountingCharacterTokenizer())  # fitted anew, same vocab
    assert CountingCharacterTokenizer.calls == 1


def test_a_changed_corpus_misses_the_cache(tmp_path, isolated_cache):
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be " * 20)
    tokenizer = CountingCharacterTokenizer().fit("abcdefghijklmnopqrstuvwxyz ")
    load_corpus_tokens(str(path), tokenizer)
    path.write_text("to be or not to be? " * 20)
    with pytest.raises(UnknownTokenError, match=r"'\?'"):  # changed: tokenized again, not read back
        load_corpus_tokens(str(path), tokenizer)
    path.write_text("to be or not to bee " * 20)
    load_corpus_tokens(str(path), tokenizer)
    assert CountingCharacterTokenizer.calls == 3 and len(entries(isolated_cache)) == 2


def test_a_changed_tokenizer_misses_the_cache(isolated_cache):
    text = ["the quick brown fox"]
    base = CountingCharacterTokenizer().fit("the quick brown fox")
    cached_token_array(text, base)
    cached_token_array(text, CountingCharacterTokenizer(unk_policy="unk").fit("the quick brown fox"))
    cached_token_array(text, CountingCharacterTokenizer().fit("the quick brown fox!"))
    gpt2 = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    from_gpt2 = cached_token_array(text, gpt2)
    assert CountingCharacterTokenizer.calls == 3 and len(entries(isolated_cache)) == 4
    assert from_gpt2.tolist() == gpt2.encode("the quick brown fox")


def test_a_damaged_entry_is_rebuilt_not_trusted(isolated_cache):
    tokenizer = CountingCharacterTokenizer().fit("abc")
    expected = tokenize_documents(["abcabc"], tokenizer)
    cached_token_array(["abcabc"], tokenizer)
    entries(isolated_cache)[0].write_bytes(b"\x00")  # truncated
    again = cached_token_array(["abcabc"], tokenizer)
    assert np.array_equal(again, expected) and CountingCharacterTokenizer.calls == 3


def test_large_vocabularies_fall_back_to_uint32(isolated_cache):
    gpt2 = create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))
    assert gpt2.corpus_dtype == np.uint16  # 50,257 ids fit in uint16
    assert CharacterTokenizer(vocab=[chr(0x4E00 + i) for i in range(70_000)]).corpus_dtype == np.uint32
