"""muP's checks (Yang et al. 2022, "Tensor Programs V"), written to benchmarks/results/.

1. `coord`: the coordinate check. Vanilla and Llama, 2 layers, 4 heads, widths 64 to 1024, trained 20 AdamW (and
   Muon) steps on character-level Tiny Shakespeare, 3 seeds; the RMS of every part's output after each step,
   under `standard` and `mup` (base width 64), and the gradients' scale per role at initialisation. Writes
   mup_coord_check.{md,png,json}. `rules`: the same check of AdamW under muP with the weight decay and epsilon
   unscaled (round 1), scaled (round 2), and scaled with zero-initialised queries. Writes mup_rules.md.
2. `transfer`: learning-rate transfer on character-level Tiny Shakespeare. Vanilla, 2 layers, 4 heads, context
   64, widths 64 and 256 (muP base width 64), a log2 grid of learning rates; the validation loss of each run,
   the best rate per width, and how far it moved from width 64 to 256, under `mup` and `standard`, for AdamW
   and Muon (Muon's rate and its AdamW rate for embeddings, head and gains move together on the grid).
   Writes mup_transfer.{md,png}. At width 64 = the base width the two parametrizations are the same model
   (tests/test_mup.py checks the losses are identical), so width 64 is trained once per rate.
3. `width`: does the wider model train better under muP? Width 64 against 256 with AdamW, each at its best
   rate, over 3 seeds, at 200 steps and 1000; standard at width 256 and muP with round 1's rules beside.
   Writes mup_width.{md,png,json}.

Losses are deterministic (fixed seeds, fixed batches); the runs are long, so run them under the shared lock:

    flock -s /tmp/cleangpt-bench.lock python benchmarks/bench_mup.py coord
    flock -s /tmp/cleangpt-bench.lock python benchmarks/bench_mup.py rules
    flock -s /tmp/cleangpt-bench.lock python benchmarks/bench_mup.py width
    flock -s /tmp/cleangpt-bench.lock python benchmarks/bench_mup.py transfer
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cleangpt_core.data.loading import tinyshakespeare_split
from cleangpt_core.inspection.coordinate_check import coordinate_check
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


def plot(
    path: Path, draw: Callable[..., None], panels: int, title: str, rows: int = 2, dpi: int = 110, width: float = 3.2
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, panels, figsize=(width * panels, 3 * rows + 0.4), squeeze=False)
    draw(axes)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


# --- the coordinate check -------------------------------------------------------------------------------------

COORD_WIDTHS = [64, 128, 256, 512, 1024]
COORD_PRESETS = ("Vanilla", "Llama")
COORD_ADAMW_K = 1  # the best AdamW rate at width 64 in mup_transfer.md (8e-3); Muon's was k = 0 (0.02, 3e-3)


class TextBatches:
    """Character-level Tiny Shakespeare: per seed and step, `batch` windows of `length` + 1 tokens."""

    def __init__(self, batch: int, length: int) -> None:
        text = tinyshakespeare_split("train")
        tokenizer = create_tokenizer("character").fit(text + tinyshakespeare_split("val"))
        self.vocab_size = tokenizer.vocab_size
        self.ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        self.batch, self.length = batch, length

    def __call__(self, seed: int, step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed * 100_003 + step)
        starts = torch.randint(0, self.ids.numel() - self.length - 1, (self.batch,), generator=generator)
        return torch.stack([self.ids[s : s + self.length + 1] for s in starts.tolist()])


def coord_options(optimizer: str) -> dict[str, float]:
    return optimizer_options(optimizer, 2.0**COORD_ADAMW_K if optimizer == "adamw" else 1.0)


def _coord_job(job: tuple[str, str, str, argparse.Namespace]):
    preset, optimizer, parametrization, args = job
    torch.set_num_threads(1)
    text = TextBatches(args.batch, args.length)

    def build(width: int) -> torch.nn.Module:
        return get_model(
            preset, vocab_size=text.vocab_size, **SHAPE, n_embd=width, block_size=args.length,
            parametrization=parametrization, mup_base_width=BASE_WIDTH,
        )  # fmt: skip

    started = time.time()
    check = coordinate_check(
        build, lambda model: get_optimizer(optimizer, model, **coord_options(optimizer)), args.widths,
        steps=args.steps, seeds=args.seeds, batches=text,
    )  # fmt: skip
    print(f"{preset} {optimizer} {parametrization}: {time.time() - started:.0f} s", flush=True)
    return check


def gradient_scales(widths: list[int], args: argparse.Namespace) -> dict[str, dict[int, float]]:
    """The RMS of each parameter role's gradient (and of the query and key rows of c_attn) at initialisation,
    under mup, Vanilla, averaged over the seeds: how the gradients Adam's epsilon competes with scale."""
    from cleangpt_core.model.parameter_roles import parameter_roles

    text = TextBatches(args.batch, args.length)
    scales: dict[str, dict[int, list[float]]] = {}
    for width in widths:
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = get_model(
                "Vanilla", vocab_size=text.vocab_size, **SHAPE, n_embd=width, block_size=args.length,
                parametrization="mup", mup_base_width=BASE_WIDTH,
            )  # fmt: skip
            tokens = text(seed, 0)
            model(tokens[:, :-1], labels=tokens)["loss"].backward()
            roles = parameter_roles(model)
            groups = {"embeddings": roles.embeddings, "gains": roles.gains, "hidden matrices": roles.matrices}
            qk = [block.attn.c_attn.weight.grad[: 2 * width] for block in model.transformer.h]
            for name, grads in [*((n, [p.grad for p in ps]) for n, ps in groups.items()), ("query and key rows", qk)]:
                rms = (sum(g.pow(2).sum() for g in grads) / sum(g.numel() for g in grads)).sqrt().item()
                scales.setdefault(name, {}).setdefault(width, []).append(rms)
    return {name: {w: statistics.fmean(v) for w, v in per.items()} for name, per in scales.items()}


def _rounded(value: object) -> object:
    """`value` with every float to 4 significant digits (a record to read, not to compute with)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def run_coord(args: argparse.Namespace) -> None:
    started = time.time()
    widths = args.widths
    jobs = [
        (preset, optimizer, parametrization, args)
        for preset in COORD_PRESETS
        for optimizer in OPTIMIZERS
        for parametrization in ("standard", "mup")
    ]
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][1] != "muon")  # Muon's slow steps first
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        done = dict(zip(order, pool.map(_coord_job, [jobs[i] for i in order], chunksize=1), strict=True))
    results = {jobs[i][:3]: done[i] for i in range(len(jobs))}
    scales = gradient_scales(widths, args)
    minutes = (time.time() - started) / 60
    load = Path("/proc/loadavg").read_text().split()[:3]

    command = (
        f"python benchmarks/bench_mup.py coord --steps {args.steps} --seeds {args.seeds} --batch {args.batch} "
        f"--length {args.length} --widths {','.join(map(str, widths))} --workers {args.workers}"
    )
    adamw, muon = coord_options("adamw"), coord_options("muon")
    width_heads = " | ".join(f"width {w}" for w in widths)
    lines = [
        "# muP coordinate check",
        "",
        f"Command: `{command}` ({minutes:.1f} min on this 2-core machine; load average at the end: {load}).",
        "",
        f"Vanilla and Llama, {SHAPE['n_layer']} layers, {SHAPE['n_head']} heads (so the head width grows with the "
        f"width), trained {args.steps} steps on character-level Tiny Shakespeare (a fresh batch of {args.batch} x "
        f"{args.length} characters each step, the same batches at every width), seeds 0 to {args.seeds - 1}; muP "
        f"base width {BASE_WIDTH}. AdamW at lr {adamw['lr']:g} (the best rate at width 64 in mup_transfer.md), "
        f"betas (0.9, 0.99), eps 1e-8, weight decay 0.1; Muon at lr {muon['lr']:g} (AdamW {muon['adamw_lr']:g} "
        "for embeddings, head and gains); constant rate, no clipping. Each cell is the RMS of the part's output "
        f"after {args.steps} steps, the mean over the seeds (a part matched in every block: the mean over the "
        "blocks). `spread` is the largest over the smallest across widths at that step; `worst spread` the "
        f"largest spread over steps 1 to {args.steps}; `seeds` the largest over the smallest across the seeds at "
        f"width {widths[-1]}, the noise a spread stands beside. Made by `cleangpt_core.inspection.coordinate_check` "
        "(tests/test_mup.py runs a shorter one). `mup_coord_check.json` holds every step's RMS for every seed, "
        "and the gradient scales.",
        "",
        "Parts: embedding `wte`; position `wpe`'s output, the stream entering the blocks (learned positions added "
        "in Vanilla, unchanged by Llama's rotary); norm `h.*.ln_1`; qkv `h.*.attn.c_attn`; attention `h.*.attn`; "
        "mlp hidden `h.*.mlp.c_fc`; mlp `h.*.mlp`; block `h.*` (the residual stream after each block); final norm "
        "`ln_f`; logits `lm_head` (after muP's output multiplier).",
        "",
    ]
    for preset in COORD_PRESETS:
        for optimizer in OPTIMIZERS:
            lines += [
                f"## {preset}, {optimizer}",
                "",
                f"| parametrization | part | {width_heads} | spread | worst spread | seeds |",
                "|---|---|" + "---|" * len(widths) + "---|---|---|",
            ]
            for parametrization in ("standard", "mup"):
                check = results[preset, optimizer, parametrization]
                for part in check.rms:
                    values = " | ".join(f"{check.rms[part][w][-1]:.4g}" for w in widths)
                    worst = max(check.spread(part, step) for step in range(1, args.steps + 1))
                    spread = check.spread(part)
                    flag = "**" if parametrization == "mup" and spread > 2 else ""
                    lines.append(
                        f"| {parametrization} | {part} | {values} | {flag}{spread:.2f}{flag} | {worst:.2f} "
                        f"| {check.seed_spread(part, widths[-1]):.2f} |"
                    )
            lines.append("")
    lines += [
        "## Gradient scales at initialisation (Vanilla, mup)",
        "",
        "The RMS of each role's gradient on the first batch, mean over the seeds: what Adam's epsilon (1e-8) is "
        "added to. Under muP every role's gradient shrinks as 1/m (the output multiplier scales the backward "
        "pass), the query and key rows faster while attention is near uniform (docs/mup.md).",
        "",
        f"| role | {width_heads} | width {widths[0]} / width {widths[-1]} |",
        "|---|" + "---|" * len(widths) + "---|",
    ]
    for name, per in scales.items():
        values = " | ".join(f"{per[w]:.3g}" for w in widths)
        lines.append(f"| {name} | {values} | {per[widths[0]] / per[widths[-1]]:.1f} |")
    (RESULTS / "mup_coord_check.md").write_text("\n".join(lines) + "\n")
    # per preset, optimizer and parametrization: part -> width -> per seed, the RMS at every step (4 digits)
    rms = {" ".join(key): _rounded(check.rms_per_seed) for key, check in results.items()}
    record = {"command": command, "rms_per_seed": rms, "gradient_scales": scales}
    (RESULTS / "mup_coord_check.json").write_text(json.dumps(record) + "\n")

    plot_coord(results, widths, args.steps)


def plot_coord(results: dict, widths: list[int], steps: int) -> None:
    """mup_coord_check.png: per preset and optimizer (rows) and part (columns), the RMS against width at a few
    steps, standard dashed and muP solid."""
    import matplotlib.ticker

    parts = list(results["Vanilla", "adamw", "mup"].rms)
    rows = [(preset, optimizer) for preset in COORD_PRESETS for optimizer in OPTIMIZERS]
    marked = sorted({0, steps // 4, steps // 2, steps})

    def draw(axes) -> None:
        for row, (preset, optimizer) in enumerate(rows):
            for column, part in enumerate(parts):
                axis = axes[row][column]
                for parametrization, style in (("standard", "--"), ("mup", "-")):
                    check = results[preset, optimizer, parametrization]
                    if part not in check.rms:
                        continue
                    for shade, step in enumerate(marked):
                        values = [check.rms[part][w][step] for w in widths]
                        label = f"{parametrization} t={step}" if (row, column) == (0, 0) else None
                        axis.plot(widths, values, style, marker="o", markersize=3, color=f"C{shade}", label=label)
                axis.set(xscale="log", yscale="log", title=f"{preset} {optimizer}: {part}")
                axis.title.set_fontsize(8)
                axis.set_xticks(widths, [str(w) for w in widths], fontsize=6)
                axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                axis.tick_params(axis="y", which="both", labelsize=5)
        axes[0][0].legend(fontsize=5)

    title = "coordinate check: RMS of each part's output against width, dashed standard, solid muP"
    plot(RESULTS / "mup_coord_check.png", draw, len(parts), title, rows=len(rows), dpi=70)


RULES = {
    "round 1": "weight decay and epsilon as given (the rules before round 2)",
    "round 2": "weight decay x m on the hidden matrices, epsilon / m on every group (this release)",
    "zero query": "round 2, and the query projection (its rows of c_attn, and their biases) initialised to zero",
}


def zero_queries(model: torch.nn.Module) -> None:
    """Zero the query rows of every block's c_attn (TP5's zero-initialised query: uniform attention at init)."""
    width = model.config.n_embd
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight[:width].zero_()
            if block.attn.c_attn.bias is not None:
                block.attn.c_attn.bias[:width].zero_()


def _rules_job(job: tuple[str, str, argparse.Namespace]):
    preset, rules, args = job
    torch.set_num_threads(1)
    text = TextBatches(args.batch, args.length)

    def build(width: int) -> torch.nn.Module:
        model = get_model(
            preset, vocab_size=text.vocab_size, **SHAPE, n_embd=width, block_size=args.length,
            parametrization="mup", mup_base_width=BASE_WIDTH,
        )  # fmt: skip
        if rules == "zero query":
            zero_queries(model)
        return model

    def optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
        built = get_optimizer("adamw", model, **coord_options("adamw"))
        if rules == "round 1":
            unscaled_weight_decay_and_eps(built, weight_decay=0.1, eps=1e-8)
        return built

    started = time.time()
    check = coordinate_check(build, optimizer, args.widths, steps=args.steps, seeds=args.seeds, batches=text)
    print(f"{preset} {rules}: {time.time() - started:.0f} s", flush=True)
    return check


def run_rules(args: argparse.Namespace) -> None:
    """The coordinate check of AdamW under muP with round 1's rules (weight decay and epsilon unscaled), round
    2's (weight decay x m on the hidden matrices, epsilon / m everywhere), and round 2's with zero queries."""
    started = time.time()
    jobs = [(preset, rules, args) for preset in COORD_PRESETS for rules in RULES]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = dict(zip([job[:2] for job in jobs], pool.map(_rules_job, jobs, chunksize=1), strict=True))
    minutes = (time.time() - started) / 60
    load = Path("/proc/loadavg").read_text().split()[:3]
    widths = args.widths
    command = (
        f"python benchmarks/bench_mup.py rules --steps {args.steps} --seeds {args.seeds} --batch {args.batch} "
        f"--length {args.length} --widths {','.join(map(str, widths))} --workers {args.workers}"
    )
    middle = args.steps // 2
    lines = [
        "# muP's weight decay, epsilon and query initialisation: the coordinate check of each",
        "",
        f"Command: `{command}` ({minutes:.1f} min on this 2-core machine; load average at the end: {load}).",
        "",
        f"As mup_coord_check.md (AdamW at lr {coord_options('adamw')['lr']:g}, eps 1e-8, weight decay 0.1, "
        f"{args.steps} steps of {args.batch} x {args.length} characters, seeds 0 to {args.seeds - 1}), muP only, "
        "under three variants: "
        + "; ".join(f"*{name}*: {what}" for name, what in RULES.items())
        + f". `w{widths[-1]}/w{widths[0]}` is the RMS at the widest width over that at the base width after "
        f"{middle} and {args.steps} steps (1: the same size); `worst` is the largest spread (largest over "
        f"smallest across all widths) at any step from 1 to {args.steps}; `seeds` the largest over the smallest "
        f"across the seeds at width {widths[-1]} after {args.steps} steps.",
        "",
    ]
    heads = [f"{name}: {what}" for name in RULES for what in (f"step {middle}", f"step {args.steps}", "worst", "seeds")]
    for preset in COORD_PRESETS:
        lines += [f"## {preset}", "", "| part | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for part in results[preset, "round 2"].rms:
            cells = []
            for name in RULES:
                check = results[preset, name]
                cells += [check.rms[part][widths[-1]][step] / check.rms[part][widths[0]][step]
                          for step in (middle, args.steps)]  # fmt: skip
                cells += [max(check.spread(part, step) for step in range(1, args.steps + 1))]
                cells += [check.seed_spread(part, widths[-1])]
            lines.append(f"| {part} | " + " | ".join(f"{value:.2f}" for value in cells) + " |")
        lines.append("")
    (RESULTS / "mup_rules.md").write_text("\n".join(lines))


# --- learning-rate transfer -----------------------------------------------------------------------------------


class Corpus:
    """Tiny Shakespeare as character ids: training batches drawn per seed, and a fixed validation set."""

    def __init__(self, block: int, batch: int, eval_batches: int) -> None:
        train_text, val_text = tinyshakespeare_split("train"), tinyshakespeare_split("val")
        tokenizer = create_tokenizer("character").fit(train_text + val_text)
        self.vocab_size = tokenizer.vocab_size
        self.train = torch.tensor(tokenizer.encode(train_text), dtype=torch.long)
        val = torch.tensor(tokenizer.encode(val_text), dtype=torch.long)
        self.block, self.batch = block, batch
        # the validation split in consecutive windows, the first eval_batches x batch of them
        windows = (val.numel() - 1) // block
        count = min(windows, eval_batches * batch)
        self.val = torch.stack([val[i * block : i * block + block + 1] for i in range(count)]).split(batch)

    def batches(self, steps: int, seed: int) -> list[torch.Tensor]:
        """`steps` training batches in the order seed `seed` draws them (seed 0: the order of the first record)."""
        generator = torch.Generator().manual_seed(1234 + seed)
        starts = torch.randint(0, self.train.numel() - self.block - 1, (steps, self.batch), generator=generator)
        return [torch.stack([self.train[s : s + self.block + 1] for s in row.tolist()]) for row in starts]


def unscaled_weight_decay_and_eps(optimizer: torch.optim.Optimizer, weight_decay: float, eps: float) -> None:
    """Undo muP round 2 on an AdamW: every decayed group back at `weight_decay`, every group at `eps` (the
    rules before it, to measure what the scaling changes)."""
    for group in optimizer.param_groups:
        group["eps"] = eps
        if group["weight_decay"]:
            group["weight_decay"] = weight_decay


def validation_loss(model: torch.nn.Module, corpus: Corpus) -> float:
    model.eval()
    with torch.no_grad():
        losses = [model(tokens[:, :-1], labels=tokens)["loss"].item() for tokens in corpus.val]
    model.train()
    return sum(losses) / len(losses)


def train_once(
    corpus: Corpus, width: int, parametrization: str, optimizer: str, scale: float, steps: int, *,
    seed: int = 0, eval_every: int = 0, unscaled: bool = False, standard_attention: bool = False,
) -> tuple[float, list[tuple[int, float]]]:  # fmt: skip
    """The final validation loss of one run (nan if it diverged) and its validation curve every `eval_every`
    steps (none with 0). `unscaled`: muP's weight decay and epsilon as before round 2 (AdamW only);
    `standard_attention`: muP with the attention scale 1/sqrt(d_head) at every width (its base head width set
    to the model's own)."""
    torch.manual_seed(seed)
    head_dim = width // SHAPE["n_head"] if standard_attention and parametrization == "mup" else None
    model = get_model(
        "Vanilla", vocab_size=corpus.vocab_size, **SHAPE, n_embd=width, block_size=corpus.block,
        parametrization=parametrization, mup_base_width=BASE_WIDTH, mup_base_head_dim=head_dim,
    )  # fmt: skip
    optim = get_optimizer(optimizer, model, **optimizer_options(optimizer, scale))
    if unscaled:
        unscaled_weight_decay_and_eps(optim, weight_decay=0.1, eps=1e-8)  # AdamWConfig's defaults
    schedule = get_schedule("cosine", warmup_steps=steps // 10)(optim, steps)
    model.train()
    curve = []
    for step, tokens in enumerate(corpus.batches(steps, seed), start=1):
        loss = model(tokens[:, :-1], labels=tokens)["loss"]
        if not torch.isfinite(loss):
            return float("nan"), curve
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        schedule.step()
        if eval_every and step % eval_every == 0 and step < steps:
            curve.append((step, validation_loss(model, corpus)))
    final = validation_loss(model, corpus)
    return final, [*curve, (steps, final)]


def best_exponent(losses: dict[int, float]) -> int:
    finite = {k: v for k, v in losses.items() if v == v}
    return min(finite, key=finite.get)


_CORPUS: Corpus | None = None


def _start_worker(args: argparse.Namespace) -> None:
    global _CORPUS
    torch.set_num_threads(1)  # one thread per worker: on a shared 2-core machine more threads only contend
    _CORPUS = Corpus(args.block, args.batch, args.eval_batches)


def _train_job(job: tuple[int, str, str, int, argparse.Namespace]) -> float:
    width, parametrization, optimizer, exponent, args = job
    loss, _ = train_once(_CORPUS, width, parametrization, optimizer, 2.0**exponent, args.steps)
    print(f"{optimizer} width {width} {parametrization} 2^{exponent}: {loss:.4f}", flush=True)
    return loss


def run_transfer(args: argparse.Namespace) -> None:
    started = time.time()
    corpus = Corpus(args.block, args.batch, args.eval_batches)
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


# --- the width question -----------------------------------------------------------------------------------------


def _width_job(job: tuple[int, str, int, int, int, bool, argparse.Namespace]) -> tuple[float, list]:
    width, parametrization, exponent, steps, seed, unscaled, args = job
    loss, curve = train_once(_CORPUS, width, parametrization, "adamw", 2.0**exponent, steps, seed=seed,
                             eval_every=args.eval_every, unscaled=unscaled,
                             standard_attention=args.standard_attention)  # fmt: skip
    rules = " (round-1 wd/eps)" if unscaled else ""
    print(f"width {width} {parametrization}{rules} 2^{exponent} {steps} steps seed {seed}: {loss:.4f}", flush=True)
    return loss, curve


def run_width(args: argparse.Namespace) -> None:
    """Does width 256 under muP train better than width 64 (AdamW), over seeds, at 200 steps and longer?"""
    from cleangpt_core.experiments.verdicts import family, welch

    started = time.time()
    seeds = range(args.seeds)
    # (width, parametrization, k, steps, unscaled): muP at the base and wide widths over the rates near the
    # best, each budget; standard at the wide width at its own best rates; muP's round-1 rules at the wide width
    settings = [(w, "mup", k, n, False) for n in args.budgets for w in (BASE_WIDTH, args.wide) for k in args.ks]
    settings += [(args.wide, "standard", k, n, False) for n in args.budgets for k in args.standard_ks]
    if args.round1:
        settings += [(args.wide, "mup", k, args.budgets[0], True) for k in args.ks]
    jobs = [(*setting[:4], seed, setting[4], args) for setting in settings for seed in seeds]
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0] * jobs[i][3])  # the longest runs first
    with multiprocessing.get_context("spawn").Pool(args.workers, _start_worker, (args,)) as pool:
        done = dict(zip(order, pool.map(_width_job, [jobs[i] for i in order], chunksize=1), strict=True))
    runs: dict[tuple, list[tuple[float, list]]] = {}
    for index, job in enumerate(jobs):
        runs.setdefault((job[0], job[1], job[2], job[3], job[5]), []).append(done[index])
    minutes = (time.time() - started) / 60
    load = Path("/proc/loadavg").read_text().split()[:3]

    def name(key: tuple) -> str:
        width, parametrization, exponent, steps, unscaled = key
        rules = ", round-1 wd/eps" if unscaled else ""
        return f"width {width} {parametrization}{rules}, lr {4e-3 * 2**exponent:g}, {steps} steps"

    def losses(key: tuple) -> list[float]:
        return [loss for loss, _ in runs[key]]

    command = (
        f"python benchmarks/bench_mup.py width --wide {args.wide} --ks={','.join(map(str, args.ks))} "
        f"--standard-ks={','.join(map(str, args.standard_ks))} --budgets={','.join(map(str, args.budgets))} "
        f"--seeds {args.seeds} --eval-every {args.eval_every} --workers {args.workers}"
        + ("" if args.round1 else " --no-round1")
        + (" --standard-attention" if args.standard_attention else "")
        + (f" --out {args.out}" if args.out != "mup_width" else "")
    )
    attention = (
        " muP's attention scale here is standard's, 1/sqrt(d_head), at every width (mup_base_head_dim = the "
        "model's own head width), not sqrt(d0)/d_head."
        if args.standard_attention else ""
    )
    lines = [
        f"# muP: does the wider model train better? (AdamW, {args.seeds} seeds)",
        "",
        f"Command: `{command}` ({minutes:.1f} min on this 2-core machine; load average at the end: {load}).",
        "",
        f"Character-level Tiny Shakespeare, Vanilla with {SHAPE['n_layer']} layers and {SHAPE['n_head']} heads, "
        f"context {args.block}, batch {args.batch}, AdamW (betas 0.9/0.99, eps 1e-8, weight decay 0.1), cosine "
        f"schedule with warmup a tenth of the run, clip 1.0, as in mup_transfer.md; seeds {', '.join(map(str, seeds))}"
        " (a seed sets the initialisation and the batches). Validation loss over "
        f"{sum(len(b) for b in _validation_windows(args))} windows of the validation split. muP base width "
        f"{BASE_WIDTH}; muP with this release's rules unless the row says round-1 (weight decay and epsilon "
        f"unscaled, as before).{attention}",
        "",
        "| run | val loss (mean ± std over seeds) | per seed |",
        "|---|---|---|",
    ]
    for key in runs:
        values = losses(key)
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        lines.append(f"| {name(key)} | {statistics.fmean(values):.4f} ± {std:.4f} | "
                     + ", ".join(f"{v:.4f}" for v in values) + " |")  # fmt: skip
    lines += [
        "",
        f"## Width {args.wide} against width {BASE_WIDTH}, each at its best rate",
        "",
        f"Δ = mean loss at width {args.wide} minus at width {BASE_WIDTH} (negative: the wider model is better), "
        "with Welch's 95 % interval over the seeds (`cleangpt_core.experiments.verdicts.welch`).",
        "",
        "| budget | comparison | Δ | 95 % interval | reading |",
        "|---|---|---|---|---|",
    ]
    record: dict[str, object] = {"command": command, "runs": [
        {"width": key[0], "parametrization": key[1], "lr": 4e-3 * 2 ** key[2], "steps": key[3], "round_1_rules": key[4],
         "per_seed": [{"val_loss": loss, "curve": curve} for loss, curve in runs[key]]}
        for key in runs
    ]}  # fmt: skip
    for steps in args.budgets:
        def best(width: int, parametrization: str, unscaled: bool = False, steps: int = steps) -> tuple:
            keys = [key for key in runs if key[0] == width and key[1] == parametrization and key[3] == steps
                    and key[4] == unscaled]  # fmt: skip
            return min(keys, key=lambda key: statistics.fmean(losses(key)))

        base = best(BASE_WIDTH, "mup")
        pairs = [(best(args.wide, "mup"), base), (best(args.wide, "standard"), base)]
        if steps == args.budgets[0] and args.round1:
            pairs.append((best(args.wide, "mup", True), base))
        for wide_key, base_key in pairs:
            found = welch(losses(wide_key), losses(base_key))
            [(_, verdict)] = family([found])
            reading = {"helps": "wider better", "hurts": "wider worse", "within noise": "not told apart"}
            lines.append(
                f"| {steps} | {name(wide_key)} vs {name(base_key)} | {found.delta:+.4f} | "
                f"[{found.low:+.4f}, {found.high:+.4f}] | {reading[verdict]} |"
            )
    lines.append("")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines))
    (RESULTS / f"{args.out}.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_width(runs, args.budgets, args.wide, args.seeds, RESULTS / f"{args.out}.png")


def plot_width(
    runs: dict[tuple, list[tuple[float, list]]], budgets: list[int], wide: int, seeds: int, path: Path
) -> None:
    """mup_width.png: per budget, the validation curves (mean and min-max over seeds) of width 64 under muP and
    the wide width under muP and standard, each at its best rate."""

    def mean_loss(key: tuple) -> float:
        return statistics.fmean(loss for loss, _ in runs[key])

    def draw(axes) -> None:
        for column, steps in enumerate(budgets):
            axis = axes[0][column]
            for color, (width, parametrization) in enumerate(((BASE_WIDTH, "mup"), (wide, "mup"), (wide, "standard"))):
                keys = [k for k in runs if k[0] == width and k[1] == parametrization and k[3] == steps and not k[4]]
                key = min(keys, key=mean_loss)
                curves = [curve for _, curve in runs[key]]
                xs = [step for step, _ in curves[0]]
                mean = [statistics.fmean(c[i][1] for c in curves) for i in range(len(xs))]
                label = f"width {width} {parametrization}, lr {4e-3 * 2 ** key[2]:g}"
                axis.plot(xs, mean, marker="o", markersize=3, color=f"C{color}", label=label)
                axis.fill_between(xs, [min(c[i][1] for c in curves) for i in range(len(xs))],
                                  [max(c[i][1] for c in curves) for i in range(len(xs))], color=f"C{color}",
                                  alpha=0.2)  # fmt: skip
            axis.set(title=f"{steps} steps", xlabel="step", ylabel="validation loss")
            axis.legend(fontsize=7)

    title = f"width {BASE_WIDTH} vs {wide}, each at its best rate: mean of {seeds} seeds, min-max band"
    plot(path, draw, len(budgets), title, rows=1, width=5)


def _validation_windows(args: argparse.Namespace) -> tuple:
    return _CORPUS.val if _CORPUS is not None else Corpus(args.block, args.batch, args.eval_batches).val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    coord = commands.add_parser("coord", help="the coordinate check")
    coord.add_argument("--steps", type=int, default=20)
    coord.add_argument("--seeds", type=int, default=3)
    coord.add_argument("--batch", type=int, default=8)
    coord.add_argument("--length", type=int, default=32)
    coord.add_argument("--widths", type=lambda text: [int(w) for w in text.split(",")], default=COORD_WIDTHS)
    coord.add_argument("--workers", type=int, default=2, help="checks in parallel, one thread each")
    rules = commands.add_parser("rules", help="the coordinate check under muP's AdamW rules, before and after")
    for option, default in (("--steps", 20), ("--seeds", 3), ("--batch", 8), ("--length", 32), ("--workers", 2)):
        rules.add_argument(option, type=int, default=default)
    rules.add_argument("--widths", type=lambda text: [int(w) for w in text.split(",")], default=COORD_WIDTHS)
    transfer = commands.add_parser("transfer", help="learning-rate transfer from width 64")
    transfer.add_argument("--steps", type=int, default=200)
    transfer.add_argument("--batch", type=int, default=8)
    transfer.add_argument("--block", type=int, default=64)
    transfer.add_argument("--wide", type=int, default=256)
    transfer.add_argument("--low", type=int, default=-2, help="lowest k of the grid base x 2^k")
    transfer.add_argument("--high", type=int, default=4, help="highest k")
    transfer.add_argument("--eval-batches", type=int, default=20)
    transfer.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    width = commands.add_parser("width", help="width 64 against a wider model under muP, over seeds and budgets")
    integers = lambda text: [int(value) for value in text.split(",")]  # noqa: E731
    width.add_argument("--wide", type=int, default=256)
    width.add_argument("--ks", type=integers, default=[0, 1], help="muP's rates, AdamW 4e-3 x 2^k")
    width.add_argument("--standard-ks", type=integers, default=[-1, 0], help="standard's rates at the wide width")
    width.add_argument("--budgets", type=integers, default=[200, 1000], help="steps per run, one set per budget")
    width.add_argument("--seeds", type=int, default=3)
    width.add_argument("--batch", type=int, default=8)
    width.add_argument("--block", type=int, default=64)
    width.add_argument("--eval-batches", type=int, default=20)
    width.add_argument("--eval-every", type=int, default=100, help="steps between validation points of a curve")
    width.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    width.add_argument("--no-round1", dest="round1", action="store_false", help="leave out round 1's rules")
    width.add_argument("--standard-attention", action="store_true", help="muP with 1/sqrt(d_head) attention")
    width.add_argument("--out", default="mup_width", help="the results' file name, without extension")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    torch.set_num_threads(1)  # on a shared 2-core machine more threads only contend
    {"coord": run_coord, "rules": run_rules, "transfer": run_transfer, "width": run_width}[args.command](args)


if __name__ == "__main__":
    main()
