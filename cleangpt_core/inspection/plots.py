"""PNG pictures of an inspection (`analysis.inspect_ids`'s result): token losses, the logit lens, attention maps.

Every picture has a colour bar saying what its colours mean, and tokens are labelled so that each is visible:
a space is '␣', a line break '⏎', a tab '⇥' (as editors show them), other control characters are escaped and
an empty token is '∅'. matplotlib draws off-screen (the Agg backend), so this works on a server with no display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# What a token's whitespace is drawn as; DejaVu Sans, matplotlib's default font, has each of these glyphs.
VISIBLE_WHITESPACE = {" ": "␣", "\n": "⏎", "\t": "⇥"}
EMPTY_TOKEN = "∅"
PROBABILITY_COLOURS = "viridis"
ATTENTION_COLOURS = "Blues"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def token_label(text: str) -> str:
    """A token's text as a visible label: whitespace as symbols, other unprintable characters escaped."""
    if not text:
        return EMPTY_TOKEN
    return "".join(VISIBLE_WHITESPACE.get(c) or (c if c.isprintable() else repr(c)[1:-1]) for c in text)


def _labels(inspection: dict[str, Any]) -> list[str]:
    return [token_label(token["text"]) for token in inspection["tokens"]]


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def token_losses_figure(inspection: dict[str, Any]) -> Any:
    """A bar per token: its loss given the tokens before it, coloured by the probability the model gave it (the
    first token has neither)."""
    plt = _pyplot()
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    labels = _labels(inspection)
    tokens = inspection["tokens"]
    colours = colormaps[PROBABILITY_COLOURS]
    bars = [colours(math.exp(t["logprob"])) if t["logprob"] is not None else "lightgrey" for t in tokens]
    figure, axes = plt.subplots(figsize=(max(4.5, 0.35 * len(labels) + 1.5), 3.0), layout="constrained")
    axes.bar(range(len(labels)), [token["loss"] or 0.0 for token in tokens], color=bars)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_ylabel("loss (nats)")
    axes.set_title(f"per-token loss (mean {inspection['mean_loss']})")
    scale = plt.cm.ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colours)
    figure.colorbar(scale, ax=axes, label="probability of the token")
    return figure


def logit_lens_figure(inspection: dict[str, Any]) -> Any:
    """Layers down, positions across: each cell the layer's top next-token guess, shaded by its probability."""
    plt = _pyplot()
    lens = inspection["logit_lens"]
    labels = _labels(inspection)
    probs = [[math.exp(top["logprob"]) for top in layer["top"]] for layer in lens]
    figure, axes = plt.subplots(
        figsize=(max(4.0, 0.6 * len(labels)), max(2.5, 0.4 * len(lens) + 1)), layout="constrained"
    )
    image = axes.imshow(probs, aspect="auto", cmap=PROBABILITY_COLOURS, vmin=0.0, vmax=1.0)
    for row, layer in enumerate(lens):
        for column, top in enumerate(layer["top"]):
            axes.text(column, row, token_label(top["text"]), ha="center", va="center", fontsize=6, color="white")
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_yticks(range(len(lens)), [f"{layer['layer']} ({layer['loss']})" for layer in lens], fontsize=7)
    axes.set_title("logit lens: top next token per layer (loss per layer)")
    figure.colorbar(image, ax=axes, label="probability")
    return figure


def attention_figure(inspection: dict[str, Any], name: str) -> Any:
    """One attention part's heads side by side (queries down, keys across), one colour bar for them all."""
    plt = _pyplot()
    heads = inspection["attention"][name]
    labels = _labels(inspection)
    figure, axes = plt.subplots(
        1, len(heads), figsize=(3.2 * len(heads) + 1.0, 3.4), squeeze=False, layout="constrained"
    )
    image = None
    for head, (axis, weights) in enumerate(zip(axes[0], heads, strict=True)):
        image = axis.imshow(weights, cmap=ATTENTION_COLOURS, vmin=0.0, vmax=1.0)
        axis.set_title(f"{name} head {head}", fontsize=8)
        axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        axis.set_yticks(range(len(labels)), labels, fontsize=6)
        axis.set_xlabel("key", fontsize=7)
    axes[0][0].set_ylabel("query", fontsize=7)
    figure.colorbar(image, ax=list(axes[0]), label="attention weight")
    return figure


def plot_token_losses(inspection: dict[str, Any], path: Path) -> Path:
    """`token_losses_figure` as a PNG at `path`."""
    return _save(_pyplot(), token_losses_figure(inspection), path)


def plot_logit_lens(inspection: dict[str, Any], path: Path) -> Path:
    """`logit_lens_figure` as a PNG at `path`."""
    return _save(_pyplot(), logit_lens_figure(inspection), path)


def plot_attention(inspection: dict[str, Any], name: str, path: Path) -> Path:
    """`attention_figure` of the part `name` as a PNG at `path`."""
    return _save(_pyplot(), attention_figure(inspection, name), path)


def write_plots(inspection: dict[str, Any], folder: Path) -> list[Path]:
    """Every picture of `inspection` into `folder`: tokens.png, logit_lens.png, attention_<part>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_token_losses(inspection, folder / "tokens.png"),
        plot_logit_lens(inspection, folder / "logit_lens.png"),
    ]
    for name in inspection["attention"]:
        paths.append(plot_attention(inspection, name, folder / f"attention_{name.replace('.', '_')}.png"))
    return paths
