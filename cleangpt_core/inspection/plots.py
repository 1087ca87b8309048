"""PNG pictures of an inspection (`analysis.inspect_ids`'s result): token losses, the logit lens, attention maps.

matplotlib draws off-screen (the Agg backend), so this works on a server with no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _labels(inspection: dict[str, Any]) -> list[str]:
    return [repr(token["text"])[1:-1] for token in inspection["tokens"]]


def plot_token_losses(inspection: dict[str, Any], path: Path) -> Path:
    """A bar per token: its loss given the tokens before it (the first token has none)."""
    plt = _pyplot()
    labels = _labels(inspection)
    losses = [token["loss"] or 0.0 for token in inspection["tokens"]]
    figure, axes = plt.subplots(figsize=(max(4.0, 0.35 * len(labels)), 3.0))
    axes.bar(range(len(labels)), losses, color="tab:red")
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_ylabel("loss (nats)")
    axes.set_title(f"per-token loss (mean {inspection['mean_loss']})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_logit_lens(inspection: dict[str, Any], path: Path) -> Path:
    """Layers down, positions across: each cell the layer's top next-token guess, shaded by its probability."""
    import math

    plt = _pyplot()
    lens = inspection["logit_lens"]
    labels = _labels(inspection)
    probs = [[math.exp(top["logprob"]) for top in layer["top"]] for layer in lens]
    figure, axes = plt.subplots(figsize=(max(4.0, 0.6 * len(labels)), max(2.5, 0.4 * len(lens) + 1)))
    image = axes.imshow(probs, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    for row, layer in enumerate(lens):
        for column, top in enumerate(layer["top"]):
            axes.text(column, row, repr(top["text"])[1:-1], ha="center", va="center", fontsize=6, color="white")
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_yticks(range(len(lens)), [f"{layer['layer']} ({layer['loss']})" for layer in lens], fontsize=7)
    axes.set_title("logit lens: top next token per layer (loss per layer)")
    figure.colorbar(image, ax=axes, label="probability")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_attention(inspection: dict[str, Any], name: str, path: Path) -> Path:
    """One attention part's heads side by side: queries down, keys across."""
    plt = _pyplot()
    heads = inspection["attention"][name]
    labels = _labels(inspection)
    figure, axes = plt.subplots(1, len(heads), figsize=(3.2 * len(heads), 3.4), squeeze=False)
    for head, (axis, weights) in enumerate(zip(axes[0], heads, strict=True)):
        axis.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0)
        axis.set_title(f"{name} head {head}", fontsize=8)
        axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        axis.set_yticks(range(len(labels)), labels, fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


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
