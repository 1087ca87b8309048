"""`cleangpt inspect`: the JSON it writes and prints, the pictures, and its one-line errors."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.inspection import inspect_text
from cleangpt_core.inspection.plots import attention_figure, logit_lens_figure, token_label, token_losses_figure
from cleangpt_core.model import get_model, load_model, save_model
from cleangpt_core.tokenizers import CharacterTokenizer, from_pretrained

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect") / "run"
    tokenizer = CharacterTokenizer(vocab=list("abcdefgh \n\t"))
    torch.manual_seed(0)
    save_model(get_model("Llama", vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=16), root)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def _inspect(*args):
    return CliRunner().invoke(cli, ["inspect", *map(str, args)])


def test_inspect_writes_the_json_and_a_picture_of_each_view(run_dir, tmp_path):
    out = tmp_path / "out"
    result = _inspect(run_dir, "--prompt", "abc deaf", "--out", out)
    assert result.exit_code == 0, result.output
    written = json.loads((out / "inspection.json").read_text())
    expected = inspect_text(load_model(run_dir), from_pretrained(run_dir / "tokenizer"), "abc deaf")
    assert written == json.loads(json.dumps(expected))
    pictures = {"tokens.png", "logit_lens.png", "attention_h_0_attn.png", "attention_h_1_attn.png"}
    assert pictures <= {path.name for path in out.iterdir()}
    assert all((out / name).read_bytes().startswith(PNG_MAGIC) for name in pictures)
    assert f"mean loss {expected['mean_loss']}" in result.output


def test_inspect_json_prints_only_the_json(run_dir):
    result = _inspect(run_dir, "--prompt", "abc", "--json", "--top-k", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [token["text"] for token in data["tokens"]] == ["a", "b", "c"]
    assert all(len(token["top"]) == 2 for token in data["tokens"][1:])


def test_inspect_refuses_a_prompt_longer_than_the_context_and_a_full_folder(run_dir, tmp_path):
    result = _inspect(run_dir, "--prompt", "a" * 17, "--json")
    assert result.exit_code == 1
    assert "the prompt is 17 tokens; this model reads at most 16" in result.output
    (tmp_path / "kept.txt").write_text("mine")
    result = _inspect(run_dir, "--prompt", "abc", "--out", tmp_path)
    assert result.exit_code == 2 and "is not empty" in result.output
    assert [path.name for path in tmp_path.iterdir()] == ["kept.txt"]


# -- the pictures: colour bars, visible whitespace -------------------------------------------------------------


def _colour_bar_labels(figure) -> list[str]:
    return [axes.get_ylabel() for axes in figure.axes if axes.get_label() == "<colorbar>"]


def _tick_labels(axes) -> list[str]:
    return [label.get_text() for label in axes.get_xticklabels()]


@pytest.fixture(scope="module")
def inspection(run_dir):
    return inspect_text(load_model(run_dir), from_pretrained(run_dir / "tokenizer"), "ab cd\nef\tg")


def test_whitespace_tokens_get_visible_labels():
    assert [token_label(text) for text in (" ", "\n", "\t", "", "a b", "\x00")] == ["␣", "⏎", "⇥", "∅", "a␣b", "\\x00"]


def test_every_picture_has_a_colour_bar_and_visible_labels_for_spaces(inspection):
    expected = ["a", "b", "␣", "c", "d", "⏎", "e", "f", "⇥", "g"]
    tokens = token_losses_figure(inspection)
    assert _colour_bar_labels(tokens) == ["probability of the token"]
    assert _tick_labels(tokens.axes[0]) == expected
    lens = logit_lens_figure(inspection)
    assert _colour_bar_labels(lens) == ["probability"]
    attention = attention_figure(inspection, "h.0.attn")
    assert _colour_bar_labels(attention) == ["attention weight"]  # one for all the heads
    heads = [axes for axes in attention.axes if axes.get_label() != "<colorbar>"]
    assert len(heads) == 2 and all(_tick_labels(axes) == expected for axes in heads)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of a glyph its font lacks, drawing a box instead
        for figure in (tokens, lens, attention):
            figure.canvas.draw()


def test_tokens_are_coloured_by_their_probability(inspection):
    import matplotlib

    bars = token_losses_figure(inspection).axes[0].patches
    colours = matplotlib.colormaps["viridis"]
    for bar, token in zip(bars[1:], inspection["tokens"][1:], strict=True):
        assert bar.get_facecolor() == pytest.approx(colours(math.exp(token["logprob"])))


def test_the_help_says_what_each_key_of_the_json_holds():
    help_text = CliRunner().invoke(cli, ["inspect", "--help"]).output
    assert all(key in help_text for key in ("mean_loss", "tokens", "next", "logit_lens", "attention"))
    assert "without_attention  attention parts that report no weights" in help_text
