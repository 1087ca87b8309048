"""muP's two checks (Yang et al. 2022, "Tensor Programs V"), written to benchmarks/results/.

1. `coord`: the coordinate check. Vanilla, 2 layers, 4 heads, widths 64 to 512, trained a few AdamW (and Muon)
   steps on one batch; the RMS of the embedding, attention, MLP and logits outputs after each step, under
   `standard` and `mup` (base width 64). Writes mup_coord_check.{md,png}.
2. `transfer`: learning-rate transfer on character-level Tiny Shakespeare. Vanilla, 2 layers, 4 heads, context
   64, widths 64 and 256 (muP base width 64), a log2 grid of learning rates; the validation loss of each run,
   the best rate per width, and how far it moved from width 64 to 256, under `mup` and `standard`, for AdamW
   and Muon (Muon's rate and its AdamW rate for embeddings, head and gains move together on the grid).
   Writes mup_transfer.{md,png}. At width 64 = the base width the two parametrizations are the same model
   (tests/test_mup.py checks the losses are identical), so width 64 is trained once per rate.

Losses are deterministic (fixed seeds, fixed batches), so no lock is needed:

    python benchmarks/bench_mup.py coord
    python benchmarks/bench_mup.py transfer
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cleangpt_core.data.loading import tinyshakespeare_split
from cleangpt_core.inspection.coordinate_check import COORDINATE_PARTS, coordinate_check
from cleangpt_core.model import get_model
from cleangpt_core.tokenizers import create_tokenizer
from cleangpt_core.trainers import get_optimizer, get_schedule

RESULTS = Path(__file__).resolve().parent / "results"
BASE_WIDTH = 64
SHAPE = {"n_layer": 2, "n_head": 4}
OPTIMIZERS = ("adamw", "muon")


def optimizer_options(optimizer: str, scale: float) -> dict[str, float]:
    """The options of one grid point: AdamW's lr, or Muon's lr and its AdamW lr, both times `scale`."""
    if optimizer == "adamw":
        return {"lr": 4e-3 * scale}
    return {"lr": 0.02 * scale, "adamw_lr": 3e-3 * scale}


def plot(path: Path, draw: Callable[..., None], panels: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, panels, figsize=(3.2 * panels, 6), squeeze=False)
    draw(axes)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- the coordinate check -------------------------------------------------------------------------------------


def run_coord(args: argparse.Namespace) -> None:
    widths = [64, 128, 256, 512]
    results = {}
    for optimizer in OPTIMIZERS:
        for parametrization in ("standard", "mup"):

            def build(width: int, parametrization: str = parametrization) -> torch.nn.Module:
                return get_model(
                    "Vanilla", vocab_size=64, **SHAPE, n_embd=width, block_size=args.length,
                    parametrization=parametrization, mup_base_width=BASE_WIDTH,
                )  # fmt: skip

            options = optimizer_options(optimizer, 2.5 if optimizer == "adamw" else 1.0)
            results[optimizer, parametrization] = coordinate_check(
                build, lambda model, o=optimizer, opts=options: get_optimizer(o, model, **opts), widths,
                steps=args.steps, batch_size=args.batch, length=args.length,
            )  # fmt: skip
            print(f"{optimizer} {parametrization}: done", flush=True)

    lines = [
        "# muP coordinate check",
        "",
        f"Command: `python benchmarks/bench_mup.py coord --steps {args.steps} --batch {args.batch} "
        f"--length {args.length}`",
        "",
        f"Vanilla, {SHAPE['n_layer']} layers, {SHAPE['n_head']} heads (so the head width grows with the width), "
        f"vocabulary 64, one batch of {args.batch} x {args.length} random tokens, seed 0; muP base width "
        f"{BASE_WIDTH}. AdamW at lr {optimizer_options('adamw', 2.5)['lr']:g}; Muon at lr "
        f"{optimizer_options('muon', 1.0)['lr']:g} (AdamW {optimizer_options('muon', 1.0)['adamw_lr']:g} for "
        f"embeddings, head and gains). RMS of each part's output after {args.steps} steps "
        "(attention and MLP: mean over the blocks); `spread` is the largest over the smallest across widths. "
        "Made by `cleangpt_core.inspection.coordinate_check`, which tests/test_mup.py runs too (it asserts spread "
        "<= 2 under mup, growth > 2 under standard for attention, MLP and logits).",
        "",
        "| optimizer | parametrization | part | " + " | ".join(f"width {w}" for w in widths) + " | spread |",
        "|---|---|---|" + "---|" * len(widths) + "---|",
    ]
    for (optimizer, parametrization), check in results.items():
        for part in COORDINATE_PARTS:
            values = " | ".join(f"{check.rms[part][w][-1]:.4g}" for w in widths)
            lines.append(f"| {optimizer} | {parametrization} | {part} | {values} | {check.spread(part):.2f} |")
    (RESULTS / "mup_coord_check.md").write_text("\n".join(lines) + "\n")

    import matplotlib.ticker

    def draw(axes) -> None:
        for row, optimizer in enumerate(OPTIMIZERS):
            for column, part in enumerate(COORDINATE_PARTS):
                axis = axes[row][column]
                for parametrization, style in (("standard", "--"), ("mup", "-")):
                    check = results[optimizer, parametrization]
                    for step in range(args.steps + 1):
                        values = [check.rms[part][w][step] for w in widths]
                        label = f"{parametrization} t={step}" if column == 0 else None
                        axis.plot(widths, values, style, marker="o", color=f"C{step}", label=label)
                axis.set(xscale="log", yscale="log", title=f"{optimizer}: {part}", xlabel="width")
                axis.set_xticks(widths, [str(w) for w in widths])
                axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # the widths alone, no 2x10^2
        axes[0][0].set_ylabel("RMS of output")
        axes[1][0].set_ylabel("RMS of output")
        axes[0][0].legend(fontsize=6)

    plot(RESULTS / "mup_coord_check.png", draw, len(COORDINATE_PARTS), "coordinate check: dashed standard, solid muP")


# --- learning-rate transfer -----------------------------------------------------------------------------------


class Corpus:
    """Tiny Shakespeare as character ids, with fixed training batches and a fixed validation set."""

    def __init__(self, block: int, batch: int, steps: int, eval_batches: int) -> None:
        train_text, val_text = tinyshakespeare_split("train"), tinyshakespeare_split("val")
        tokenizer = create_tokenizer("character").fit(train_text + val_text)
        self.vocab_size = tokenizer.vocab_size
        train = torch.tensor(tokenizer.encode(train_text), dtype=torch.long)
        val = torch.tensor(tokenizer.encode(val_text), dtype=torch.long)
        generator = torch.Generator().manual_seed(1234)
        starts = torch.randint(0, train.numel() - block - 1, (steps, batch), generator=generator)
        self.batches = [torch.stack([train[s : s + block + 1] for s in row.tolist()]) for row in starts]
        # the validation split in consecutive windows, the first eval_batches x batch of them
        windows = (val.numel() - 1) // block
        count = min(windows, eval_batches * batch)
        self.val = torch.stack([val[i * block : i * block + block + 1] for i in range(count)]).split(batch)


def train_once(corpus: Corpus, width: int, parametrization: str, optimizer: str, scale: float, args) -> float:
    """The final validation loss of one run (nan if it diverged)."""
    torch.manual_seed(0)
    model = get_model(
        "Vanilla", vocab_size=corpus.vocab_size, **SHAPE, n_embd=width, block_size=args.block,
        parametrization=parametrization, mup_base_width=BASE_WIDTH,
    )  # fmt: skip
    optim = get_optimizer(optimizer, model, **optimizer_options(optimizer, scale))
    schedule = get_schedule("cosine", warmup_steps=args.steps // 10)(optim, args.steps)
    model.train()
    for tokens in corpus.batches:
        loss = model(tokens[:, :-1], labels=tokens)["loss"]
        if not torch.isfinite(loss):
            return float("nan")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        schedule.step()
    model.eval()
    with torch.no_grad():
        losses = [model(tokens[:, :-1], labels=tokens)["loss"].item() for tokens in corpus.val]
    return sum(losses) / len(losses)


def best_exponent(losses: dict[int, float]) -> int:
    finite = {k: v for k, v in losses.items() if v == v}
    return min(finite, key=finite.get)


_CORPUS: Corpus | None = None


def _start_worker(args: argparse.Namespace) -> None:
    global _CORPUS
    torch.set_num_threads(1)  # one thread per worker: on a shared 2-core machine more threads only contend
    _CORPUS = Corpus(args.block, args.batch, args.steps, args.eval_batches)


def _train_job(job: tuple[int, str, str, int, argparse.Namespace]) -> float:
    width, parametrization, optimizer, exponent, args = job
    loss = train_once(_CORPUS, width, parametrization, optimizer, 2.0**exponent, args)
    print(f"{optimizer} width {width} {parametrization} 2^{exponent}: {loss:.4f}", flush=True)
    return loss


def run_transfer(args: argparse.Namespace) -> None:
    started = time.time()
    corpus = Corpus(args.block, args.batch, args.steps, args.eval_batches)
    exponents = list(range(args.low, args.high + 1))
    wide = args.wide
    # width 64 is the base width, where the parametrizations are one model: one run serves both ("both")
    keys = [(BASE_WIDTH, "both"), (wide, "standard"), (wide, "mup")]
    jobs = [
        (width, "standard" if parametrization == "both" else parametrization, optimizer, exponent, args)
        for optimizer in OPTIMIZERS
        for exponent in exponents
        for width, parametrization in keys
    ]
    # the widest runs first, so the workers finish together
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0])
    with multiprocessing.get_context("spawn").Pool(args.workers, _start_worker, (args,)) as pool:
        results = dict(zip(order, pool.map(_train_job, [jobs[i] for i in order], chunksize=1), strict=True))
    # losses[optimizer][(width, parametrization)][exponent]
    losses: dict[str, dict[tuple[int, str], dict[int, float]]] = {o: {key: {} for key in keys} for o in OPTIMIZERS}
    index = 0
    for optimizer in OPTIMIZERS:
        for exponent in exponents:
            for key in keys:
                losses[optimizer][key][exponent] = results[index]
                index += 1
    minutes = (time.time() - started) / 60

    command = (
        f"python benchmarks/bench_mup.py transfer --steps {args.steps} --batch {args.batch} --block {args.block} "
        f"--wide {wide} --low {args.low} --high {args.high} --eval-batches {args.eval_batches} --workers {args.workers}"
    )
    lines = [
        "# muP learning-rate transfer",
        "",
        f"Command: `{command}` ({minutes:.1f} min on this 2-core machine; load average at the end: "
        f"{Path('/proc/loadavg').read_text().split()[:3]}). Losses are deterministic.",
        "",
        f"Character-level Tiny Shakespeare, Vanilla with {SHAPE['n_layer']} layers and {SHAPE['n_head']} heads, "
        f"context {args.block}, batch {args.batch}, {args.steps} steps (cosine schedule, warmup {args.steps // 10}, "
        f"clip 1.0), seed 0; validation loss over {sum(len(b) for b in corpus.val)} windows of the validation "
        f"split. Learning rate = base x 2^k: AdamW base 4e-3; Muon base 0.02 with AdamW 3e-3 for embeddings, head "
        f"and gains (adjust_lr='original'). muP base width {BASE_WIDTH}, so at width {BASE_WIDTH} the two "
        "parametrizations are the same model and one run serves both.",
        "",
    ]
    record = {}
    for optimizer in OPTIMIZERS:
        table = losses[optimizer]
        base_best = best_exponent(table[BASE_WIDTH, "both"])
        lines += [
            f"## {optimizer}",
            "",
            "| k | lr | width 64 | width " + f"{wide} standard | width {wide} mup |",
            "|---|---|---|---|---|",
        ]
        for exponent in exponents:
            lr = optimizer_options(optimizer, 2.0**exponent)["lr"]
            row = [f"{table[key][exponent]:.4f}" for key in table]
            lines.append(f"| {exponent} | {lr:.3g} | " + " | ".join(row) + " |")
        lines.append("")
        for parametrization in ("standard", "mup"):
            best = best_exponent(table[wide, parametrization])
            shift = best - base_best
            record[f"{optimizer}_{parametrization}"] = {"best_64": base_best, f"best_{wide}": best, "shift": shift}
            verdict = "within one grid step" if abs(shift) <= 1 else "more than one grid step"
            lines.append(
                f"- {parametrization}: best k at width 64 is {base_best}, at width {wide} {best}: shift {shift:+d} "
                f"({verdict})"
            )
        lines.append("")
    (RESULTS / "mup_transfer.md").write_text("\n".join(lines))
    (RESULTS / "mup_transfer.json").write_text(json.dumps({"command": command, "losses": {
        optimizer: {f"{w}_{p}": v for (w, p), v in table.items()} for optimizer, table in losses.items()
    }, "best": record}, indent=2) + "\n")  # fmt: skip

    def draw(axes) -> None:
        for column, optimizer in enumerate(OPTIMIZERS):
            for row, parametrization in enumerate(("standard", "mup")):
                axis = axes[row][column]
                for key, color in (((BASE_WIDTH, "both"), "C0"), ((wide, parametrization), "C1")):
                    values = losses[optimizer][key]
                    axis.plot(exponents, [values[k] for k in exponents], marker="o", color=color,
                              label=f"width {key[0]}")  # fmt: skip
                    axis.axvline(best_exponent(values), color=color, linestyle=":")
                axis.set(title=f"{optimizer}, {parametrization}", xlabel="log2 lr multiplier k", ylabel="val loss")
                axis.legend(fontsize=7)

    plot(RESULTS / "mup_transfer.png", draw, len(OPTIMIZERS), "learning-rate transfer, width 64 -> " + str(wide))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    coord = commands.add_parser("coord", help="the coordinate check")
    coord.add_argument("--steps", type=int, default=4)
    coord.add_argument("--batch", type=int, default=4)
    coord.add_argument("--length", type=int, default=16)
    transfer = commands.add_parser("transfer", help="learning-rate transfer from width 64")
    transfer.add_argument("--steps", type=int, default=200)
    transfer.add_argument("--batch", type=int, default=8)
    transfer.add_argument("--block", type=int, default=64)
    transfer.add_argument("--wide", type=int, default=256)
    transfer.add_argument("--low", type=int, default=-2, help="lowest k of the grid base x 2^k")
    transfer.add_argument("--high", type=int, default=4, help="highest k")
    transfer.add_argument("--eval-batches", type=int, default=20)
    transfer.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    torch.set_num_threads(1)  # on a shared 2-core machine more threads only contend
    {"coord": run_coord, "transfer": run_transfer}[args.command](args)


if __name__ == "__main__":
    main()
