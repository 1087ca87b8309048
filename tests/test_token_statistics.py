"""Token usage statistics, plots, and reduced vocabularies (the tutorial's token analysis section)."""

import json
from pathlib import Path

import pytest

from cleangpt_core.tokenizers import CharacterTokenizer, ReducedVocabTokenizer, create_tokenizer, from_pretrained
from cleangpt_core.utils import DataError, tinyshakespeare_split
from cleangpt_core.utils.token_statistics import TokenUsageAnalyzer

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def gpt2():
    return create_tokenizer("gpt2", pretrained_model_name_or_path=str(FIXTURE))


def test_statistics_of_a_small_corpus_are_exact():
    analyzer = TokenUsageAnalyzer(CharacterTokenizer().fit("abc"))
    results = analyzer.analyze_texts(["aab", "ba", "a"])
    assert results["total_tokens"] == 6 and results["unique_tokens"] == 2
    assert results["vocab_size"] == 5 and results["vocab_coverage"] == pytest.approx(2 / 5)
    assert results["avg_sequence_length"] == pytest.approx(2.0)
    assert results["most_common_tokens"] == [("a", 4), ("b", 2)]


def test_max_samples_limits_the_texts_and_an_unfitted_tokenizer_is_fitted_first():
    tokenizer = CharacterTokenizer()
    results = TokenUsageAnalyzer(tokenizer).analyze_texts(["xy", "zzz"], max_samples=1)
    assert tokenizer.is_fitted and results["total_tokens"] == 2 and results["num_texts"] == 1


def test_no_text_and_no_analysis_are_clear_errors(tmp_path):
    analyzer = TokenUsageAnalyzer(CharacterTokenizer().fit("a"))
    with pytest.raises(DataError, match="got no text"):
        analyzer.analyze_texts(["", ""])
    with pytest.raises(DataError, match="call analyze_texts"):
        analyzer.plot_coverage_curve(tmp_path / "c.png")


def test_gpt2_statistics_on_tinyshakespeare(gpt2):
    results = TokenUsageAnalyzer(gpt2).analyze_texts(tinyshakespeare_split("train"))
    assert results["total_tokens"] == 301_966  # as in shared/data/README.md
    assert results["most_common_tokens"][0] == ("\n", 35_521)
    assert (" the", 4_888) in results["most_common_tokens"][:10]


def test_plots_are_written_as_png_files(tmp_path, gpt2):
    analyzer = TokenUsageAnalyzer(gpt2)
    analyzer.analyze_texts(["To be, or not to be, that is the question.", "Whether 'tis nobler in the mind"])
    distribution = analyzer.plot_token_distribution(top_n=10, path=tmp_path / "plots" / "dist.png")
    curve = analyzer.plot_coverage_curve(path=tmp_path / "curve.png")
    assert distribution.read_bytes()[:8] == PNG_MAGIC and curve.read_bytes()[:8] == PNG_MAGIC


def test_kept_ids_are_the_fewest_that_reach_the_coverage():
    analyzer = TokenUsageAnalyzer(CharacterTokenizer().fit("abcd"))
    analyzer.analyze_texts(["a" * 60 + "b" * 30 + "c" * 9 + "d"])
    tokenizer = analyzer.tokenizer
    assert analyzer.kept_token_ids(0.6) == tokenizer.encode("a")
    assert analyzer.kept_token_ids(0.9) == tokenizer.encode("ab")
    assert analyzer.kept_token_ids(0.95) == tokenizer.encode("abc")
    assert analyzer.kept_token_ids(1.0) == tokenizer.encode("abcd")
    with pytest.raises(DataError, match="coverage must be in"):
        analyzer.kept_token_ids(1.5)


def test_tutorial_reduced_vocab_becomes_a_character_tokenizer(tmp_path):
    analyzer = TokenUsageAnalyzer(create_tokenizer("character"))
    analyzer.analyze_texts(tinyshakespeare_split("validation").split("\n\n"))
    reduced_vocab = analyzer.create_reduced_vocab(coverage=0.95)
    (tmp_path / "reduced_vocab.json").write_text(json.dumps(reduced_vocab))

    specialized = CharacterTokenizer(vocab=json.loads((tmp_path / "reduced_vocab.json").read_text()), unk_policy="unk")
    specialized.save_pretrained(tmp_path / "specialized_tokenizer")
    assert specialized.vocab_size == len(reduced_vocab) + 3 < analyzer.tokenizer.vocab_size
    assert specialized.encode(" e")[:2] == [reduced_vocab[" "], reduced_vocab["e"]]  # most frequent first
    assert specialized.decode(specialized.encode("Zounds")) == "<unk>ounds"


def test_reduced_gpt2_tokenizer_has_a_smaller_id_space_and_survives_saving(tmp_path, gpt2):
    analyzer = TokenUsageAnalyzer(gpt2)
    analyzer.analyze_texts(tinyshakespeare_split("validation"))
    reduced = analyzer.create_reduced_tokenizer(coverage=0.9)
    assert isinstance(reduced, ReducedVocabTokenizer) and reduced.vocab_size < 5_000
    text = "To be, or not to be"
    assert reduced.decode(reduced.encode(text)) == text
    assert reduced.encode(" photosynthesis")[-1] == reduced.unk_token_id
    assert all(0 <= i < reduced.vocab_size for i in reduced.encode_corpus(tinyshakespeare_split("train")[:20_000]))
    reduced.save_pretrained(tmp_path / "reduced")
    assert from_pretrained(tmp_path / "reduced").encode(text) == reduced.encode(text)
