"""How a tokenizer uses its vocabulary on a corpus, and a smaller vocabulary that covers most of it.

Counts come from `encode_corpus` and `np.bincount` (no Python loop per token). Plots are drawn with
matplotlib's object API on an Agg canvas, so they work headless and leave pyplot's global state alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cleangpt_core.errors import DataError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer
from cleangpt_core.tokenizers.reduced_tokenizer import ReducedVocabTokenizer


class TokenUsageAnalyzer:
    """Token statistics of texts under one tokenizer; `analyze_texts` first, then plots and reduced vocabularies."""

    def __init__(self, tokenizer: BaseTokenizer) -> None:
        self.tokenizer = tokenizer
        self.counts: np.ndarray | None = None  # occurrences of each id in the analysed texts
        self.num_texts = 0

    def analyze_texts(
        self, texts: str | Sequence[str], max_samples: int | None = None, top_n: int = 100
    ) -> dict[str, Any]:
        """Count tokens over `texts` (the first `max_samples` of them).

        Returns total_tokens, unique_tokens, vocab_size, vocab_coverage (share of the vocabulary used),
        avg_sequence_length (tokens per text), num_texts and most_common_tokens: (token text, count) pairs.
        An unfitted character tokenizer is fitted on the texts first.
        """
        documents = [texts] if isinstance(texts, str) else list(texts)
        if max_samples is not None:
            documents = documents[:max_samples]
        documents = [d for d in documents if d]
        if not documents:
            raise DataError("analyze_texts got no text: give at least one non-empty string")
        if getattr(self.tokenizer, "is_fitted", True) is False:
            self.tokenizer.fit(documents)
        vocab_size = self.tokenizer.vocab_size
        counts = np.zeros(vocab_size, dtype=np.int64)
        for document in documents:
            counts += np.bincount(self.tokenizer.encode_corpus(document), minlength=vocab_size)[:vocab_size]
        self.counts, self.num_texts = counts, len(documents)
        total, unique = int(counts.sum()), int(np.count_nonzero(counts))
        return {
            "total_tokens": total,
            "unique_tokens": unique,
            "vocab_size": vocab_size,
            "vocab_coverage": unique / vocab_size,
            "avg_sequence_length": total / len(documents),
            "num_texts": len(documents),
            "most_common_tokens": [
                (self.tokenizer.token_display(i), int(counts[i])) for i in self._ids_by_frequency()[:top_n]
            ],
        }

    def _require_counts(self) -> np.ndarray:
        if self.counts is None:
            raise DataError("no statistics yet: call analyze_texts(texts) first")
        return self.counts

    def _ids_by_frequency(self) -> np.ndarray:
        """Ids that occur, most frequent first (ties by id, so results are deterministic)."""
        counts = self._require_counts()
        used = np.flatnonzero(counts)
        return used[np.lexsort((used, -counts[used]))]

    def coverage_curve(self) -> np.ndarray:
        """Share of all tokens covered by the k most frequent ids, for k = 1..unique_tokens."""
        counts = self._require_counts()
        ordered = counts[self._ids_by_frequency()]
        return np.cumsum(ordered) / ordered.sum()

    def kept_token_ids(self, coverage: float = 0.95) -> list[int]:
        """The fewest most-frequent ids whose occurrences reach `coverage` of all tokens."""
        if not 0.0 < coverage <= 1.0:
            raise DataError(f"coverage must be in (0, 1], got {coverage}")
        needed = int(np.searchsorted(self.coverage_curve(), coverage - 1e-12)) + 1
        return self._ids_by_frequency()[:needed].tolist()

    def create_reduced_vocab(self, coverage: float = 0.95) -> dict[str, int]:
        """``{token: new id}`` for the tokens covering `coverage` of the corpus, most frequent first.

        JSON-ready; for a character tokenizer it is a valid ``CharacterTokenizer(vocab=...)`` (use
        ``unk_policy="unk"`` so the dropped characters become <unk>). For any tokenizer,
        `create_reduced_tokenizer` gives a working tokenizer with the smaller id space.
        """
        kept = self.kept_token_ids(coverage)
        tokens = self.tokenizer.convert_ids_to_tokens(kept)
        return {
            token if isinstance(token, str) else self.tokenizer.token_display(i): new_id
            for new_id, (i, token) in enumerate(zip(kept, tokens, strict=True))
        }

    def create_reduced_tokenizer(self, coverage: float = 0.95) -> ReducedVocabTokenizer:
        """This tokenizer cut to the ids covering `coverage` of the corpus; other ids encode as <unk>."""
        return ReducedVocabTokenizer(self.tokenizer, self.kept_token_ids(coverage))

    def plot_token_distribution(self, top_n: int = 100, path: str | Path = "token_distribution.png") -> Path:
        """Bar chart of the `top_n` most frequent tokens (log counts); returns the PNG's path."""
        counts = self._require_counts()
        ids = self._ids_by_frequency()[:top_n]
        figure = Figure(figsize=(max(8.0, len(ids) * 0.12), 4.5), layout="constrained")
        axes = figure.add_subplot()
        axes.bar(np.arange(len(ids)), counts[ids], color="tab:blue")
        axes.set_yscale("log")
        axes.set_xticks(
            np.arange(len(ids)), [repr(self.tokenizer.token_display(i))[1:-1] for i in ids], rotation=90, fontsize=6
        )
        axes.set_xlabel("token (most frequent first)")
        axes.set_ylabel("occurrences (log scale)")
        axes.set_title(f"Top {len(ids)} tokens of {int(counts.sum()):,} ({type(self.tokenizer).__name__})")
        return _save(figure, path)

    def plot_coverage_curve(self, path: str | Path = "coverage_curve.png") -> Path:
        """Share of all tokens covered by the k most frequent token types; returns the PNG's path."""
        curve = self.coverage_curve()
        ranks = np.arange(1, len(curve) + 1)
        figure = Figure(figsize=(7.0, 4.5), layout="constrained")
        axes = figure.add_subplot()
        axes.plot(ranks, curve, color="tab:blue")
        for level, color in ((0.9, "tab:green"), (0.95, "tab:orange"), (0.99, "tab:red")):
            needed = int(np.searchsorted(curve, level - 1e-12)) + 1
            axes.axhline(level, color=color, linestyle=":", linewidth=1)
            axes.plot([needed], [level], "o", color=color, label=f"{level:.0%}: {needed:,} tokens")
        axes.set_xscale("log")
        axes.set_xlabel("token types kept (most frequent first)")
        axes.set_ylabel("share of corpus tokens covered")
        axes.set_title(f"Vocabulary coverage ({len(curve):,} of {self.tokenizer.vocab_size:,} ids used)")
        axes.legend(loc="lower right")
        return _save(figure, path)


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120)
    return path
